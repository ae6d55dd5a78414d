"""Ask page: a streamed draft, then the checked answer with numbered citations that open the
source passage with the quoted sentence highlighted (a low-confidence answer marked as such,
with its reason and the sentence it comes from); or, when no answer is given, the reason in
plain words and, where the system withheld one, what it found and why it was not sure. The
page never shows a draft or a check result that contradicts what it finally says."""

from __future__ import annotations

import html
import re

import streamlit as st

from ui.client import ApiError, highlight

api = st.session_state["api"]
collection = st.session_state["collection"]

# Who wrote an answer, explained once, in words (Answer.model names the model).
MODELS = {"extractive-reader": "the reading model, which copies the answer out of a passage",
          "qwen": "the language model (Qwen2.5-Coder 0.5B), which writes a short answer from the passages",
          "smollm2": "the small language model (SmolLM2 135M), which writes a short answer from the passages",
          "scripted": "the stand-in model (test mode: no real model is loaded)"}
STAGES = {"retrieve_s": "search", "generate_s": "answer", "verify_s": "check", "total_s": "total"}

st.title("Ask")
st.caption(f"Answers come only from the documents of collection **{collection}**, with their sources; "
           "when the documents don't hold the answer, it says so.")

with st.form("ask"):
    question = st.text_input("Question", key="question", placeholder="e.g. Who designed the Harbor Point Lighthouse?")
    asked = st.form_submit_button("Ask", type="primary")


def model_words(model: str) -> str:
    return next((words for key, words in MODELS.items() if model.lower().startswith(key)), model)


def passage_for(answer: dict, chunk_id: int) -> dict | None:
    for p in answer.get("context", []):
        if p["chunk_id"] == chunk_id:
            return p
    try:  # a citation outside the context the API sent: fetch it, scoped to this collection
        return api.get(f"/v1/collections/{answer['collection']}/chunks/{chunk_id}")
    except ApiError:
        return None


def name_of(p: dict | None, source: str = "") -> str:
    """A passage as a reader knows it: its document's title and file name."""
    if not p:
        return source
    title, src = (p.get("title") or "").strip(), p.get("source") or source
    return f"{title} ({src})" if title and title != src else src


def show_sources(answer: dict, citations: list[dict]) -> None:
    for c in citations:
        p = passage_for(answer, c["chunk_id"])
        with st.expander(f"[{c['marker']}] {name_of(p, c['source'])}"):
            if p:
                st.markdown(f'<div class="passage">{highlight(p["text"], c["quote"])}</div>', unsafe_allow_html=True)
            else:
                st.markdown(f"> {c['quote']}")


def show_checks(answer: dict) -> None:
    """Each claim and the passage that supports it, in words (no raw scores)."""
    for v in answer.get("verdicts") or []:
        p = passage_for(answer, v["evidence_chunk_id"]) if v.get("evidence_chunk_id") is not None else None
        where = f" by {name_of(p)}" if p else ""
        if v["supported"]:
            st.markdown(f":green-badge[✔ supported] “{v['claim']}”{where}")
        else:
            st.markdown(f":red-badge[✘ not supported] “{v['claim']}” is not backed by the passages")


def show_answer(answer: dict) -> None:
    trace = answer.get("trace") or {}
    if answer["abstained"]:
        reason = trace.get("abstain_reason") or "The documents do not contain the answer."
        st.warning(f"**No answer.** {reason}", icon=":material/help:")
        withheld = re.sub(r"\s*\[\d+(?:\s*,\s*\d+)*\]", "", trace.get("withheld_answer") or "").strip()
        if withheld:
            cites = trace.get("withheld_citations") or []
            where = f" in {name_of(passage_for(answer, cites[0]['chunk_id']), cites[0]['source'])}" if cites else ""
            st.markdown(f'<div id="withheld">What it found{html.escape(where)}: <b>{html.escape(withheld)}</b> '
                        "— not given, because it was not sure of it.</div>", unsafe_allow_html=True)
            show_sources(answer, cites)
            with st.expander("How the found answer was checked"):
                show_checks(answer)
    else:
        # Markers [n] become bold badges; the text itself is escaped by markdown rules.
        text = re.sub(r"\[(\d+)\]", r" **[\1]**", answer["text"])
        st.markdown(f'<div id="answer-text">\n\n{text}\n\n</div>', unsafe_allow_html=True)
        if answer.get("level") == "caveat":
            quote = answer["citations"][0]["quote"] if answer["citations"] else ""
            st.warning(f"**Low confidence.** {trace.get('caveat', '')}"
                       + (f"\n\nThe sentence it comes from: “{quote}”" if quote else ""), icon=":material/info:")
        st.caption(f"Answered by {model_words(answer.get('model', ''))}.")
        if answer["citations"]:
            st.subheader("Sources")
            show_sources(answer, answer["citations"])
        else:
            st.info("The answer carries no citation.")
        if answer.get("verdicts"):
            st.subheader("Checked against the sources")
            show_checks(answer)
    timings = answer.get("timings") or {}
    parts = [f"{word} {timings[k]:.1f} s" for k, word in STAGES.items() if k in timings]
    if parts:
        st.caption("Time: " + " · ".join(parts))
    with st.expander(f"Passages read ({len(answer.get('context', []))})"):
        for i, p in enumerate(answer.get("context", []), 1):
            st.markdown(f"**{i}. {name_of(p)}**")
            st.text(p["text"][:600])


if asked and question.strip():
    answer = None
    box = st.empty()
    pieces: list[str] = []
    try:
        with st.spinner("Searching the documents and answering…"):
            for event, data in api.ask_stream(question, collection):
                if event == "token":
                    pieces.append(data["text"])
                    box.caption("Draft, being checked: " + "".join(pieces) + " ▌")
                elif event == "answer":
                    answer = data["answer"]
                elif event == "error":
                    st.error(data["detail"])
    except ApiError as e:
        st.error(e.detail)
    except Exception as e:  # noqa: BLE001 - a lost connection is shown, not raised
        st.error(f"the service did not answer: {type(e).__name__}")
    box.empty()  # the checked answer replaces the draft
    if answer is not None:
        st.session_state["last_answer"] = answer
elif asked:
    st.error("Type a question first.")

if st.session_state.get("last_answer"):
    show_answer(st.session_state["last_answer"])
