"""`rag serve --replicas 2` over one PostgreSQL database: both replicas answer behind one
address, a collection ingested through the API is seen by every replica without a restart, keys
and the rate limit hold across them, and a job is reported by whichever replica is asked.

The command runs as its own process, as a user starts it (its Ray cluster is this machine's two
CPUs, started by that process alone): the test process never joins Ray, so however Ray ends,
the rest of the suite runs on, and a failed start shows the command's own output."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import ray  # noqa: F401 - the cluster extra (`make test` installs it)

pytestmark = pytest.mark.postgres
ADMIN = "replica-admin-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Ctrl-C (Serve shuts its replicas down, then the process's Ray cluster ends), then a kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def api(pg_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("replicas")
    port = free_port()
    env = {**os.environ, "RAG_DATA_DIR": str(folder / "var"), "RAG_DATABASE_URL": pg_url, "RAG_BACKEND": "fake",
           "RAG_CHUNK_SIZE": "300", "RAG_CHUNK_OVERLAP": "50", "RAG_ADMIN_KEY": ADMIN,
           "RAG_RATE_LIMIT_PER_MINUTE": "12",
           # Serve's proxy prefers a replica on its own node; spread the requests over both
           "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0"}
    log = folder / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--replicas", "2", "--ray", "local",
                                 "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            # up when both replicas have answered: two processes behind the one address
            instances, deadline = set(), time.monotonic() + 300
            while len(instances) < 2:
                assert proc.poll() is None, f"rag serve --replicas exited {proc.returncode}:\n{log.read_text()[-4000:]}"
                assert time.monotonic() < deadline, (f"replicas answering in 300 s: {sorted(instances)}\n"
                                                     f"{log.read_text()[-4000:]}")
                try:
                    r = client.get("/healthz", timeout=2)
                    if r.status_code == 200:
                        instances.add(r.json()["instance"])
                        continue
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            yield client
    finally:
        stop(proc)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_replicas_share_collections_keys_jobs_and_the_rate_limit(api, tmp_path):
    client = api
    instances = {client.get("/healthz").json()["instance"] for _ in range(40)}
    assert len(instances) == 2  # two processes answer behind the one address, requests spread over both

    # a key created through one replica works on every replica
    r = client.post("/v1/keys", json={"name": "writer", "rights": {"notes": "write"}}, headers=bearer(ADMIN))
    assert r.status_code == 201, r.text
    writer = r.json()["key"]

    # an ingest through whichever replica takes the upload; its job is polled on any of them
    files = {"files": ("keeper.txt", b"The last keeper of Harbor Point was Thomas Reed, who left in 1962.", "text/plain")}
    r = client.post("/v1/collections/notes/documents", files=files, headers=bearer(writer))
    assert r.status_code == 202, r.text
    job = r.json()["job"]["id"]
    for _ in range(60):  # within the writer's 12 requests a minute
        time.sleep(1.0)
        status = client.get(f"/v1/jobs/{job}", headers=bearer(writer)).json()["status"]
        if status not in ("queued", "running"):
            break
    assert status == "done"

    # every replica sees the new collection at once, without a restart
    r = client.post("/v1/keys", json={"name": "reader", "rights": {"notes": "read"}}, headers=bearer(ADMIN))
    reader = r.json()["key"]
    for _ in range(10):
        r = client.post("/v1/search", json={"question": "Who was the last keeper?", "collection": "notes"},
                        headers=bearer(reader))
        assert r.status_code == 200, r.text
        assert "Thomas Reed" in r.json()["hits"][0]["text"]

    # the rate limit is one allowance per key, whichever replica counts it: 12 a minute, not 12
    # on each replica (a new key, so no earlier request counts)
    r = client.post("/v1/keys", json={"name": "counted", "rights": {"notes": "read"}}, headers=bearer(ADMIN))
    counted = r.json()["key"]
    codes = [client.get("/v1/collections", headers=bearer(counted)).status_code for _ in range(30)]
    assert codes.count(200) == 12 and codes.count(429) == 18
