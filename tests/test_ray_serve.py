"""`rag serve --replicas 2` on a local Ray cluster (a head and a worker node) over one
PostgreSQL database: both replicas answer behind one address, a collection ingested through
the API is seen by every replica without a restart, keys and the rate limit hold across them,
and a job is reported by whichever replica is asked."""

from __future__ import annotations

import os
import socket
import time

import httpx
import pytest
import ray  # the cluster extra (`make test` installs it)
from ray import cluster_utils

from rag.config import Settings

pytestmark = pytest.mark.postgres
ADMIN = "replica-admin-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api(pg_url, tmp_path_factory):
    from ray import serve

    from rag.api.replicas import serve_replicas

    # Serve's proxy prefers the replica on its own node while that one keeps up; spread the
    # requests so that both replicas serve them (the processes inherit this from the nodes)
    saved = os.environ.get("RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING")
    os.environ["RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"] = "0"
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    if saved is None:
        os.environ.pop("RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING")
    port = free_port()
    settings = Settings(data_dir=tmp_path_factory.mktemp("replicas") / "var", database_url=pg_url, backend="fake",
                        chunk_size=300, chunk_overlap=50, admin_key=ADMIN, rate_limit_per_minute=12)
    try:
        serve_replicas(settings, 2, "127.0.0.1", port, c.address, blocking=False)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client, settings
    finally:
        serve.shutdown()
        ray.shutdown()
        c.shutdown()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_replicas_share_collections_keys_jobs_and_the_rate_limit(api, tmp_path):
    client, settings = api
    instances = {client.get("/healthz").json()["instance"] for _ in range(40)}
    assert len(instances) == 2  # two processes answer behind the one address

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
