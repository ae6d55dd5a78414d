"""Faults: the API process killed (SIGKILL) in the middle of an ingest job, and two ingests into
one collection at once. After either, the collection is one committed version, whole: its
database rows and every index hold the same chunks, and a restarted service answers from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from conftest import SAMPLE

from ingest.build import ingest_paths
from rag.config import Settings
from rag.pipeline import RagService

KEY = "fault-admin-key"


def consistent(svc: RagService, collection: str) -> int:
    """Asserts rows and indexes agree; returns the number of chunks."""
    col = svc.store.get_collection(collection)
    idx = svc.indexes.get(col)
    with svc.store.transaction() as s:
        rows, _ = svc.store.chunk_tokens(s, col.id)
    assert sorted(rows) == sorted(np.asarray(idx.dense.ids()).tolist()), "dense index and rows differ"
    assert len(idx.lexical) == len(rows), "lexical index and rows differ"
    return len(rows)


def serve(data, port: int) -> subprocess.Popen:
    env = {**os.environ, "RAG_BACKEND": "fake", "RAG_DATA_DIR": str(data), "RAG_ADMIN_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("rag serve did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("delay", [0.0, 0.4, 1.0, 4.0])
def test_api_killed_mid_ingest_leaves_one_whole_version_and_keeps_uploads(tmp_path, delay):
    data = tmp_path / "var"
    settings = Settings(data_dir=data, backend="fake")
    base = RagService(settings)
    ingest_paths(settings, base.store, base.embedder(), [SAMPLE], "alpha", progress=False)
    before = consistent(base, "alpha")
    port = free_port()
    proc = serve(data, port)
    files = [("files", (f"note-{i}.txt", (f"Pier {i} has a green beacon. " * 200).encode(), "text/plain"))
             for i in range(45)]
    r = httpx.post(f"http://127.0.0.1:{port}/v1/collections/alpha/documents", files=files,
                   headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 202
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)  # whatever the job was doing
    proc.wait()
    after = RagService(settings)  # a restart
    n = consistent(after, "alpha")
    print(f"\nkilled after {delay}s: {n} chunks (before {before})")
    assert n == before or n > before  # the previous version, or the whole new one: never a mix
    uploads = data / "uploads" / "alpha"
    assert len(list(uploads.glob("note-*.txt"))) == 45  # every accepted upload survives
    assert not list(uploads.glob(".*.part"))  # no half-written file
    assert after.search("lighthouse", "alpha", 3)  # and it serves
    proc = serve(data, port)  # the API itself restarts on the same folder
    try:
        hits = httpx.post(f"http://127.0.0.1:{port}/v1/search", json={"question": "lighthouse", "collection": "alpha"},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        assert hits.status_code == 200 and hits.json()["hits"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_two_ingests_into_one_collection_at_once_both_land(tmp_path):
    settings = Settings(data_dir=tmp_path / "var", backend="fake")
    svc = RagService(settings)
    batches = []
    for b in range(2):
        folder = tmp_path / f"batch{b}"
        folder.mkdir()
        for i in range(30):
            (folder / f"b{b}-{i}.txt").write_text(f"Batch {b} note {i} about harbour number {b * 100 + i}. " * 30)
        batches.append(folder)
    errors = []

    def run(folder):
        try:
            ingest_paths(settings, svc.store, svc.embedder(), [folder], "shared", progress=False)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(f,)) for f in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    fresh = RagService(settings)
    assert len(fresh.store.documents("shared")) == 60
    consistent(fresh, "shared")
    assert fresh.store.get_collection("shared").index_version >= 2  # two commits, one after the other
