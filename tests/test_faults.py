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
    job = r.json()["job"]["id"]
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
        # the job record survived: done if it committed, else failed and saying why
        record = httpx.get(f"http://127.0.0.1:{port}/v1/jobs/{job}", headers={"Authorization": f"Bearer {KEY}"}).json()
        if n > before:
            assert record["status"] in ("done", "failed")  # killed after the commit, maybe before the record
        else:
            assert record["status"] == "failed" and "stopped while this job" in record["errors"][-1]["reason"]
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


@pytest.mark.postgres
def test_postgres_restarted_under_a_running_api_is_reconnected(tmp_path):
    """The database goes away and comes back; the API, never restarted, answers again (its
    pool checks a connection before use and replaces the dead ones)."""
    from api_helpers import ADMIN, bearer, make_app
    from conftest import PgServer
    from sqlalchemy import create_engine, text

    server = PgServer()
    try:
        engine = create_engine(f"{server.url}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(text('CREATE DATABASE "faults"'))
        engine.dispose()
        client = make_app(tmp_path, database_url=f"{server.url}/faults", rate_limit_per_minute=1000)
        try:
            svc = client.app.state.rag.svc
            ingest_paths(svc.settings, svc.store, svc.embedder(), [SAMPLE], "default", progress=False)
            ask = {"question": "How tall is the Harbor Point Lighthouse?"}
            assert client.post("/v1/ask", json=ask, headers=bearer(ADMIN)).status_code == 200
            server.pg_ctl("stop", "-m", "fast")
            down = client.post("/v1/search", json=ask, headers=bearer(ADMIN))
            assert down.status_code == 503 and down.headers["Retry-After"]  # retryable, with the usual shape
            assert down.json()["error"]["type"] == "DatabaseUnavailable"
            server.pg_ctl("start")
            for path in ("/v1/ask", "/v1/search"):
                r = client.post(path, json=ask, headers=bearer(ADMIN))
                assert r.status_code == 200, r.text
            assert client.get("/v1/collections", headers=bearer(ADMIN)).json()["collections"]
        finally:
            client.__exit__(None, None, None)
    finally:
        server.close()


def test_a_disk_that_fills_up_during_an_ingest_keeps_the_previous_state(tmp_path):
    """A data folder on a 3 MB file system (tmpfs; needs the right to mount, else skipped):
    a file too large for it fails with an error that says so, the collection keeps its
    previous version and no half-written one, and the service still answers."""

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small file system here (needs root or CAP_SYS_ADMIN)")
    try:
        settings = Settings(data_dir=mnt / "var", backend="fake")
        svc = RagService(settings)
        ingest_paths(settings, svc.store, svc.embedder(), [SAMPLE], "default", progress=False)
        before = consistent(svc, "default")
        big = tmp_path / "big.txt"
        big.write_text(" ".join(f"harbour{i} beacon{i * 7} pier{i * 13}" for i in range(150_000)), encoding="utf-8")
        from rag.errors import StorageFullError

        with pytest.raises(StorageFullError, match="nothing was committed"):
            ingest_paths(settings, svc.store, svc.embedder(), [big], "default", progress=False)
        assert consistent(svc, "default") == before and svc.search("lighthouse", "default", 2)  # still serving
        after = RagService(settings)  # and a fresh service on the folder sees the previous version
        assert consistent(after, "default") == before
        assert after.search("lighthouse", "default", 2)
        assert [p.name for p in (mnt / "var" / "collections" / "default").glob("v*")] == ["v000001"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
