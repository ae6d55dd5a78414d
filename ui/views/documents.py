"""Documents page: upload several files into the collection chosen in the sidebar (with an
ingest progress bar and a result per file), list its documents, and delete one after a
confirmation. Writing needs a key with the write right on the collection."""

from __future__ import annotations

import time

import streamlit as st

from ui.client import ApiError

api = st.session_state["api"]
collection = st.session_state["collection"]
SUFFIXES = ["txt", "md", "markdown", "rst", "html", "htm", "pdf", "docx", "jsonl"]

st.title("Documents")
right = "write" if st.session_state.get("admin") else st.session_state.get("rights", {}).get(collection)
st.caption(f"Collection **{collection}** (choose or create one in the sidebar) · your right on it: "
           f"{right or 'none'}")

# A result shown once, after the rerun that refreshes the list (a delete's outcome).
if flash := st.session_state.pop("documents_flash", None):
    st.success(flash)


def watch(job: dict) -> dict:
    """Poll a job until it ends, drawing its progress."""
    bar = st.progress(0.0, text="queued")
    while True:
        done, total = job.get("done", 0), job.get("total", 0) or 1
        eta = f", about {job['eta_s']:.0f} s left" if job.get("eta_s") else ""
        bar.progress(min(done / total, 1.0), text=f"{job['stage']}: {done} of {job.get('total', 0)}{eta}")
        if job["status"] in ("done", "failed"):
            bar.empty()
            return job
        time.sleep(0.5)
        job = api.get(f"/v1/jobs/{job['id']}")


def report(job: dict) -> None:
    """Success only for what was ingested; every rejected file by name, with its reason."""
    res = job.get("result") or {}
    rejected = [e for e in job.get("errors", []) if e.get("path")]
    if job["status"] == "done":
        st.success(f"Ingested: {res.get('added', 0)} added, {res.get('replaced', 0)} replaced, "
                   f"{res.get('unchanged', 0)} already there ({res.get('chunks', 0)} passages).")
    else:
        st.error("Nothing was ingested.")
    for e in rejected:
        st.warning(f"**{e['path']}** was not added: {e['reason']}")
    for e in job.get("errors", []):
        if not e.get("path") and job["status"] == "done":
            st.warning(e["reason"])


with st.form("upload", clear_on_submit=True):
    files = st.file_uploader("Add files", type=SUFFIXES, accept_multiple_files=True)
    go = st.form_submit_button("Upload and ingest", type="primary", disabled=right != "write")
if go and files:
    try:
        r = api.post(f"/v1/collections/{collection}/documents",
                     files=[("files", (f.name, f.getvalue(), f.type or "application/octet-stream")) for f in files])
        report(watch(r["job"]))
    except ApiError as e:
        st.error(e.detail)

try:
    known = st.session_state.get("collections", [])
    docs = api.get(f"/v1/collections/{collection}/documents")["documents"] if collection in known or right else []
    docs.sort(key=lambda d: d.get("created_at") or "", reverse=True)  # the newest first
except ApiError as e:
    st.info(e.detail)
    docs = []
st.subheader(f"{len(docs)} documents in {collection}")
if docs:
    st.dataframe([{"name": d["name"], "title": d["title"], "characters": d["chars"],
                   "added": (d["created_at"] or "")[:16].replace("T", " ")} for d in docs],
                 hide_index=True, width="stretch")
    pick = st.selectbox("Document", docs, format_func=lambda d: f"{d['name']} — {d['title']}")
    pending = st.session_state.get("delete_pending")
    if pending is None or pending["id"] != pick["id"]:
        if st.button("Delete…", disabled=right != "write"):
            st.session_state["delete_pending"] = pick
            st.rerun()
    else:
        st.warning(f"Delete **{pick['name']}** from **{collection}**? Its passages leave the index; "
                   "this cannot be undone.")
        yes, no = st.columns(2)
        if yes.button("Delete it", type="primary"):
            st.session_state.pop("delete_pending", None)
            try:
                api.delete(f"/v1/collections/{collection}/documents/{pick['id']}")
            except ApiError as e:
                st.error(e.detail)
            else:
                st.session_state["documents_flash"] = f"Deleted {pick['name']} from {collection}."
                st.rerun()
        if no.button("Keep it"):
            st.session_state.pop("delete_pending", None)
            st.rerun()
