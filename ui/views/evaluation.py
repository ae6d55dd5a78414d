"""Evaluation page: upload a QA or hallucination data set, start a batch evaluation (admin
key), watch its progress, and view the metrics and any plots the report wrote."""

from __future__ import annotations

import time

import streamlit as st

from ui.client import ApiError

api = st.session_state["api"]

st.title("Evaluation")
if not st.session_state.get("admin"):
    st.info("Evaluations create collections of their own, so they need an admin key.")

HELP = {"qa": "corpus.jsonl ({doc_id, title, text}) and qa.jsonl ({qid, question, answers, answerable, doc_id})",
        "judge": "the hallucination JSONL (see `rag eval judge --help`)",
        "retrieval": "a BEIR folder: corpus.jsonl, queries.jsonl and qrels (tsv)",
        "sql": "the text-to-SQL JSONL (see `rag eval sql --help`)"}

with st.form("eval"):
    mode = st.selectbox("Mode", list(HELP), format_func=lambda m: f"{m}: {HELP[m]}")
    files = st.file_uploader("Data files", type=["jsonl", "json", "tsv", "csv"], accept_multiple_files=True)
    limit = st.number_input("Limit (0 = all items)", min_value=0, value=20, step=10)
    retrieval_only = st.checkbox("Retrieval only (skip generation)")
    go = st.form_submit_button("Start evaluation", type="primary")

if go and files:
    try:
        r = api.post("/v1/evals", files=[("files", (f.name, f.getvalue(), "application/json")) for f in files],
                     data={"mode": mode, "retrieval_only": str(retrieval_only).lower(),
                           **({"limit": str(int(limit))} if limit else {})})
        st.session_state["eval"] = {"id": r["eval_id"], "job": r["job"]["id"]}
    except ApiError as e:
        st.error(e.detail)

current = st.session_state.get("eval")
eval_id = st.text_input("Evaluation id", current["id"] if current else "")
if current and current["id"] == eval_id:
    try:
        job = api.get(f"/v1/jobs/{current['job']}")
        bar = st.progress(0.0, text=job["stage"])
        while job["status"] in ("queued", "running"):
            total = job["total"] or 1
            eta = f", about {job['eta_s']:.0f}s left" if job.get("eta_s") else ""
            bar.progress(min(job["done"] / total, 1.0), text=f"{job['stage']}: {job['done']}/{job['total']}{eta}")
            time.sleep(1.0)
            job = api.get(f"/v1/jobs/{current['job']}")
        bar.progress(1.0, text=f"{job['status']} in {job['elapsed_s']:.0f}s")
        for e in job.get("errors", []):
            st.error(e["reason"])
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
        numbers = {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        scores = {k: v for k, v in numbers.items() if 0 <= v <= 1}
        if scores:
            st.subheader("Scores")
            st.bar_chart(scores, horizontal=True)
        st.subheader("Metrics")
        st.dataframe([{"metric": k, "value": v} for k, v in numbers.items()], hide_index=True, width="stretch")
        with st.expander("metrics.json"):
            st.json(m)
    for name in rep.get("files", []):
        if name.endswith(".png"):
            st.image(api.get_bytes(f"/v1/evals/{eval_id}/files/{name}"), caption=name)
        elif name.endswith(".html"):
            st.download_button(f"Download {name}", api.get_bytes(f"/v1/evals/{eval_id}/files/{name}"), file_name=name)
