"""Ask page: a streamed answer, numbered citations that open the source passage with the
quoted span highlighted, verdict badges per claim (when the grounding check ran), a plain
abstention state and the latency of each stage."""

from __future__ import annotations

import re

import streamlit as st

from ui.client import ApiError, highlight

api = st.session_state["api"]
collection = st.session_state["collection"]

st.title("Ask")
st.caption(f"Answers come only from collection **{collection}**, with citations; "
           "when the documents don't hold the answer, it says so.")

with st.form("ask"):
    question = st.text_input("Question", key="question", placeholder="e.g. Who designed the Harbor Point Lighthouse?")
    asked = st.form_submit_button("Ask", type="primary")


def passage_for(answer: dict, chunk_id: int) -> dict | None:
    for p in answer.get("context", []):
        if p["chunk_id"] == chunk_id:
            return p
    try:  # a citation outside the context the API sent: fetch it, scoped to this collection
        return api.get(f"/v1/collections/{answer['collection']}/chunks/{chunk_id}")
    except ApiError:
        return None


def show_answer(answer: dict) -> None:
    if answer["abstained"]:
        st.warning(f"**No answer.** {answer['text']}", icon=":material/help:")
        st.caption("Nothing in the retrieved passages supports an answer, so none is given.")
    else:
        # Markers [n] become superscript badges; the text itself is escaped by markdown rules.
        text = re.sub(r"\[(\d+)\]", r" **[\1]**", answer["text"])
        st.markdown(f'<div id="answer-text">\n\n{text}\n\n</div>', unsafe_allow_html=True)
    verdicts = answer.get("verdicts") or []
    if verdicts:
        st.subheader("Grounding check")
        for v in verdicts:
            badge = ":green-badge[✔ supported]" if v["supported"] else ":red-badge[✘ unsupported]"
            st.markdown(f"{badge} {v['claim']}  \n:gray[score {v['score']:.2f}"
                        + (f", evidence chunk {v['evidence_chunk_id']}" if v.get("evidence_chunk_id") is not None else "")
                        + "]")
    if answer["citations"]:
        st.subheader("Sources")
        for c in answer["citations"]:
            p = passage_for(answer, c["chunk_id"])
            title = (p or {}).get("title") or c["source"].rsplit("/", 1)[-1]
            with st.expander(f"[{c['marker']}] {title} — {c['source'].rsplit('/', 1)[-1]}"):
                if p:
                    st.markdown(f'<div class="passage">{highlight(p["text"], c["quote"])}</div>',
                                unsafe_allow_html=True)
                else:
                    st.markdown(f"> {c['quote']}")
                st.caption(f"{c['source']} · chunk {c['chunk_id']}")
    elif not answer["abstained"]:
        st.info("The answer carries no citation.")
    timings = {k.removesuffix("_s"): v for k, v in (answer.get("timings") or {}).items()}
    if timings:
        st.subheader("Latency")
        cols = st.columns(len(timings))
        for col, (k, v) in zip(cols, timings.items()):
            col.metric(k, f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s")
        st.caption(f"model: {answer.get('model', '?')}")
    with st.expander(f"Retrieved passages ({len(answer.get('context', []))})"):
        for i, p in enumerate(answer.get("context", []), 1):
            st.markdown(f"**{i}. {p['title'] or p['source']}** · score {p['score']:.3f} · {p['stage']}")
            st.text(p["text"][:600])


if asked and question.strip():
    answer = None
    box = st.empty()
    pieces: list[str] = []
    try:
        with st.spinner("Retrieving and answering…"):
            for event, data in api.ask_stream(question, collection):
                if event == "token":
                    pieces.append(data["text"])
                    box.markdown("".join(pieces) + " ▌")
                elif event == "answer":
                    answer = data["answer"]
                elif event == "error":
                    st.error(data["detail"])
    except ApiError as e:
        st.error(e.detail)
    except Exception as e:  # noqa: BLE001 - a lost connection is shown, not raised
        st.error(f"the API did not answer: {type(e).__name__}: {e}")
    box.empty()  # the checked answer replaces the raw stream
    if answer is not None:
        st.session_state["last_answer"] = answer
elif asked:
    st.error("Type a question first.")

if st.session_state.get("last_answer"):
    show_answer(st.session_state["last_answer"])
