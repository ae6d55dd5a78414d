"""Documents page: upload several files with an ingest progress bar, list and delete the
documents of a collection. Writing needs a key with the write right on the collection."""

from __future__ import annotations

import time

import streamlit as st

from ui.client import ApiError

api = st.session_state["api"]
SUFFIXES = ["txt", "md", "markdown", "rst", "html", "htm", "pdf", "docx", "jsonl"]

st.title("Documents")
known = st.session_state.get("collections", [])
collection = st.text_input("Collection (type a new name to create one)", st.session_state["collection"])
right = "write" if st.session_state.get("admin") else st.session_state.get("rights", {}).get(collection)
st.caption(f"your right on **{collection}**: {right or 'none'}")


def watch(job: dict) -> dict:
    """Poll a job until it ends, drawing its progress."""
    bar = st.progress(0.0, text="queued")
    while True:
        done, total = job.get("done", 0), job.get("total", 0) or 1
        eta = f", about {job['eta_s']:.0f}s left" if job.get("eta_s") else ""
        bar.progress(min(done / total, 1.0), text=f"{job['stage']}: {done}/{total} files{eta}")
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.5)
        job = api.get(f"/v1/jobs/{job['id']}")


with st.form("upload", clear_on_submit=True):
    files = st.file_uploader("Add files", type=SUFFIXES, accept_multiple_files=True)
    go = st.form_submit_button("Upload and ingest", type="primary", disabled=right != "write")
if go and files:
    try:
        r = api.post(f"/v1/collections/{collection}/documents",
                     files=[("files", (f.name, f.getvalue(), f.type or "application/octet-stream")) for f in files])
        job = watch(r["job"])
        res = job.get("result", {})
        if job["status"] == "done":
            st.success(f"{res.get('added', 0)} added, {res.get('replaced', 0)} replaced, "
                       f"{res.get('unchanged', 0)} unchanged, {res.get('chunks', 0)} chunks")
        else:
            st.error("ingest failed")
        for e in job.get("errors", []):
            st.warning(f"{e['path'] or 'job'}: {e['reason']}")
    except ApiError as e:
        st.error(e.detail)

try:
    docs = api.get(f"/v1/collections/{collection}/documents")["documents"] if collection in known or right else []
except ApiError as e:
    st.info(e.detail)
    docs = []
st.subheader(f"{len(docs)} documents in {collection}")
if docs:
    st.dataframe([{"name": d["name"], "title": d["title"], "characters": d["chars"], "id": d["id"][:12],
                   "added": (d["created_at"] or "")[:19]} for d in docs], hide_index=True, width="stretch")
    with st.form("delete"):
        pick = st.selectbox("Document", docs, format_func=lambda d: f"{d['name']} ({d['id'][:12]})")
        if st.form_submit_button("Delete", disabled=right != "write"):
            try:
                gone = api.delete(f"/v1/collections/{collection}/documents/{pick['id']}")["deleted"]
                st.success(f"deleted {', '.join(g.rsplit('/', 1)[-1] for g in gone)}")
                st.rerun()
            except ApiError as e:
                st.error(e.detail)
