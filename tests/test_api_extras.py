"""REST API graph and evaluation routes: scoped, degrading with clear statuses, and a small
QA evaluation run end to end as a job (fake backend)."""

from __future__ import annotations

import json

import pytest
from api_helpers import ADMIN, bearer, seeded_app


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    for client, keys, _tmp in seeded_app(tmp_path_factory, "apiextras"):
        yield client, keys


def test_graph_routes(api):
    client, keys = api
    pytest.importorskip("rag.store.graph")
    r = client.get("/v1/collections/alpha/graph", headers=bearer(keys["alpha_reader"]))
    assert r.status_code == 200 and "nodes" in r.json()["stats"]
    assert client.get("/v1/collections/beta/graph", headers=bearer(keys["alpha_reader"])).status_code == 403
    r = client.get("/v1/collections/alpha/graph", params={"entity": "Qwxyz Nonexistent"}, headers=bearer(ADMIN))
    assert r.status_code == 404
    top = client.get("/v1/collections/alpha/graph", headers=bearer(ADMIN)).json()["stats"]["top_degree"]
    if top:  # extraction ran at ingest: the best-connected entity has a drawable neighbourhood
        g = client.get("/v1/collections/alpha/graph", params={"entity": top[0][0]}, headers=bearer(ADMIN)).json()
        ids = {n["id"] for n in g["nodes"]}
        assert any(n["hop"] == 0 for n in g["nodes"]) and all({e["source"], e["target"]} <= ids for e in g["edges"])
    g = client.get("/v1/collections/alpha/graph", params={"entity": "Margaret Ellison"}, headers=bearer(ADMIN)).json()
    designed = [e for e in g["edges"] if "designed by" in e["relations"]]
    assert designed and designed[0]["subjects"]["designed by"] == "harbor point lighthouse"
    assert all(d["source"] == "lighthouse.txt" for d in g["documents"].values())


def test_eval_job(api, tmp_path):
    client, keys = api
    corpus = [{"doc_id": "d1", "title": "Otters", "text": "Sea otters hold hands while they sleep so they do not drift apart."},
              {"doc_id": "d2", "title": "Bees", "text": "Honey bees dance to show where flowers are."}]
    qa = [{"qid": "q1", "question": "Why do sea otters hold hands?", "answers": ["so they do not drift apart"],
           "answerable": True, "doc_id": "d1"},
          {"qid": "q2", "question": "What colour is the zorblax?", "answers": [], "answerable": False, "doc_id": "d2"}]
    files = [("files", ("corpus.jsonl", "\n".join(json.dumps(x) for x in corpus).encode(), "application/json")),
             ("files", ("qa.jsonl", "\n".join(json.dumps(x) for x in qa).encode(), "application/json"))]
    assert client.post("/v1/evals", files=files, data={"mode": "qa"},
                       headers=bearer(keys["alpha_writer"])).status_code == 403
    assert client.post("/v1/evals", files=files, data={"mode": "nope"}, headers=bearer(ADMIN)).status_code == 422
    r = client.post("/v1/evals", files=files, data={"mode": "qa"}, headers=bearer(ADMIN))
    assert r.status_code == 202, r.text
    eval_id, job = r.json()["eval_id"], r.json()["job"]
    assert job["total"] == 2
    client.app.state.rag.jobs.wait(job["id"], timeout=120)
    job = client.get(f"/v1/jobs/{job['id']}", headers=bearer(ADMIN)).json()
    assert job["status"] == "done", job
    rep = client.get(f"/v1/evals/{eval_id}", headers=bearer(ADMIN)).json()
    assert rep["metrics"]["n"] == 2 and "metrics.json" in rep["files"]
    # the corpus was ingested for the run only: no collection of it is left for anyone to see
    names = [c["name"] for c in client.get("/v1/collections", headers=bearer(ADMIN)).json()["collections"]]
    assert names and not [n for n in names if n.startswith("eval-")]
    f = client.get(f"/v1/evals/{eval_id}/files/metrics.json", headers=bearer(ADMIN))
    assert f.status_code == 200 and f.json()["n"] == 2
    assert client.get(f"/v1/evals/{eval_id}/files/..%2F..%2Frag.db", headers=bearer(ADMIN)).status_code in (400, 404)
