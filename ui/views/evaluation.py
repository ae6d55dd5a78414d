"""Evaluation page: upload a QA or hallucination data set, start a batch evaluation (admin
key), watch its progress, and read the results: the scores in words, a chart of the rates and
the run's own report with its plots. The uploaded corpus is indexed for the run only."""

from __future__ import annotations

import time

import streamlit as st
import streamlit.components.v1 as components

from ui.client import ApiError

api = st.session_state["api"]

st.title("Evaluation")
if not st.session_state.get("admin"):
    st.info("Evaluations index documents of their own for the run, so they need an admin key.")

FILES = {"qa": "questions with gold answers: corpus.jsonl (doc_id, title, text) and qa.jsonl (qid, question, "
               "answers, answerable, doc_id)",
         "judge": "hallucination labels: one JSONL file of question, knowledge, answer, hallucinated",
         "retrieval": "a retrieval benchmark: corpus.jsonl, queries.jsonl and a qrels .tsv file",
         "sql": "table questions: a JSONL file of questions with gold SQL, beside their SQLite databases"}
# Metric keys in words; a rate is a share between 0 and 1. Keys not named here (configuration
# echoes: paths, model names) stay in metrics.json.
NAMES = {"f1": "F1 of the answers (answerable questions)", "exact_match": "exact match (answerable questions)",
         "answered_unanswerable_rate": "unanswerable questions answered",
         "abstained_answerable_rate": "answerable questions left unanswered",
         "coverage": "answerable questions answered", "answer_precision": "answers that are right",
         "answer_precision_answered": "confident answers that are right",
         "answer_precision_caveat": "low-confidence answers that are right",
         "share_answered": "questions answered with confidence", "share_caveat": "questions answered with low confidence",
         "abstain_precision": "no-answers that were right", "abstain_recall": "unanswerable questions caught",
         "retrieval_recall@5": "gold passage among the 5 found", "hallucination_rate": "answers not backed by sources",
         "hallucination_rate_before_check": "drafts not backed by sources (before the check)",
         "faithfulness": "answers backed by their sources", "citation_precision": "citations that back the answer",
         "precision": "precision", "recall": "recall", "balanced_accuracy": "balanced accuracy",
         "auroc": "AUROC (ranking quality)", "ndcg@10": "nDCG@10 (ranking quality)",
         "execution_accuracy": "queries that give the gold result",
         "latency_p50_s": "time per question, median (s)", "latency_p95_s": "time per question, 95th percentile (s)",
         "n": "items evaluated", "n_answerable": "answerable questions", "n_unanswerable": "unanswerable questions",
         "n_hallucinated": "hallucinated items"}

with st.form("start-eval"):
    mode = st.selectbox("What to evaluate", list(FILES), format_func=lambda m: f"{m}: {FILES[m]}")
    files = st.file_uploader("Data files", type=["jsonl", "json", "tsv", "csv"], accept_multiple_files=True)
    limit = st.number_input("Limit (0 = all items)", min_value=0, value=20, step=10)
    retrieval_only = st.checkbox("Search only (skip answering)")
    go = st.form_submit_button("Start evaluation", type="primary")

if go and files:
    try:
        r = api.post("/v1/evals", files=[("files", (f.name, f.getvalue(), "application/json")) for f in files],
                     data={"mode": mode, "retrieval_only": str(retrieval_only).lower(),
                           **({"limit": str(int(limit))} if limit else {})})
        st.session_state["eval_run"] = {"id": r["eval_id"], "job": r["job"]["id"]}
    except ApiError as e:
        st.error(e.detail)
elif go:
    st.error("Choose the data files first.")

current = st.session_state.get("eval_run")
eval_id = st.text_input("Evaluation id", current["id"] if current else "",
                        help="Each run has an id; paste one to see an earlier run's results.")
if current and current["id"] == eval_id:
    try:
        job = api.get(f"/v1/jobs/{current['job']}")
        bar = st.progress(0.0, text=job["stage"])
        while job["status"] in ("queued", "running"):
            total = job["total"] or 1
            eta = f", about {job['eta_s']:.0f} s left" if job.get("eta_s") else ""
            bar.progress(min(job["done"] / total, 1.0), text=f"{job['stage']}: {job['done']} of {job['total']}{eta}")
            time.sleep(1.0)
            job = api.get(f"/v1/jobs/{current['job']}")
        bar.progress(1.0, text=f"{'finished' if job['status'] == 'done' else 'failed'} in {job['elapsed_s']:.0f} s")
        for e in job.get("errors", []):
            st.error(f"{e['path']}: {e['reason']}" if e.get("path") else e["reason"])
    except ApiError as e:
        st.warning(e.detail)

if eval_id:
    try:
        rep = api.get(f"/v1/evals/{eval_id}")
    except ApiError as e:
        st.warning(e.detail)
        st.stop()
    m = rep.get("metrics")
    if m:
        numbers = {k: v for k, v in m.items() if k in NAMES and isinstance(v, (int, float)) and not isinstance(v, bool)}
        rates = {NAMES[k]: v for k, v in numbers.items() if not k.startswith(("n", "latency")) and 0 <= v <= 1}
        st.subheader("Results")
        if rates:
            import altair as alt
            import pandas as pd

            data = pd.DataFrame({"measure": list(rates), "share": list(rates.values())})
            chart = alt.Chart(data).mark_bar().encode(
                x=alt.X("share:Q", scale=alt.Scale(domain=[0, 1]), title="share (0 to 1)"),
                y=alt.Y("measure:N", sort=None, title=None, axis=alt.Axis(labelLimit=0)))
            st.altair_chart(chart, width="stretch")
        st.dataframe([{"measure": NAMES[k], "value": round(v, 3) if isinstance(v, float) else v}
                      for k, v in numbers.items()], hide_index=True, width="stretch")
    for name in rep.get("files", []):
        if name.endswith(".html"):
            page = api.get_bytes(f"/v1/evals/{eval_id}/files/{name}")
            st.subheader("Report, with its plots")
            components.html(page.decode("utf-8"), height=900, scrolling=True)
            st.download_button(f"Download {name}", page, file_name=name)
        elif name.endswith(".png"):
            st.image(api.get_bytes(f"/v1/evals/{eval_id}/files/{name}"), caption=name)
