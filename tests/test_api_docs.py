"""REST API documents and jobs: upload (several files), ingest job progress, list/get/delete,
upload limits (size 413, type 415, names that would escape the data folder 400)."""

from __future__ import annotations

import pytest
from api_helpers import ADMIN, bearer, seeded_app


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    yield from seeded_app(tmp_path_factory, "apidocs", max_upload_mb=0.01, max_upload_files=3)


def wait(client, job_id, key):
    client.app.state.rag.jobs.wait(job_id, timeout=120)
    return client.get(f"/v1/jobs/{job_id}", headers=bearer(key)).json()


def test_upload_ingest_list_get_delete(api):
    client, keys, _ = api
    h = bearer(keys["beta_writer"])
    files = [("files", ("otters.md", b"# Otters\n\nSea otters hold hands while sleeping so they do not drift apart.",
                        "text/markdown")),
             ("files", ("bees.txt", "Honey bees dance to tell nest mates where flowers are. 꿀벌".encode(), "text/plain"))]
    r = client.post("/v1/collections/beta/documents", files=files, headers=h)
    assert r.status_code == 202, r.text
    assert sorted(r.json()["files"]) == ["bees.txt", "otters.md"]
    job = wait(client, r.json()["job"]["id"], keys["beta_writer"])
    assert job["status"] == "done" and job["done"] == job["total"] == 2 and job["errors"] == []
    assert job["result"]["added"] == 2

    docs = client.get("/v1/collections/beta/documents", headers=h).json()["documents"]
    names = {d["name"]: d for d in docs}
    assert {"otters.md", "bees.txt", "zephyr.txt"} <= set(names)
    got = client.get(f"/v1/collections/beta/documents/{names['otters.md']['id'][:12]}", headers=h).json()
    assert "Sea otters hold hands" in got["text"]

    a = client.post("/v1/ask", json={"question": "Why do sea otters hold hands?", "collection": "beta"}, headers=h).json()
    assert any(c["source"].endswith("otters.md") for c in a["citations"])

    r = client.delete(f"/v1/collections/beta/documents/{names['otters.md']['id']}", headers=h)
    assert r.status_code == 200 and r.json()["deleted"][0].endswith("otters.md")
    left = [d["name"] for d in client.get("/v1/collections/beta/documents", headers=h).json()["documents"]]
    assert "otters.md" not in left and "bees.txt" in left
    hits = client.post("/v1/search", json={"question": "sea otters sleeping", "collection": "beta", "k": 10},
                       headers=h).json()["hits"]
    assert not any("otters" in x["text"].lower() for x in hits)
    assert client.get(f"/v1/collections/beta/documents/{names['otters.md']['id']}", headers=h).status_code == 404


def test_a_rejected_upload_is_reported_by_name_and_not_kept(api):
    client, keys, tmp = api
    h = bearer(keys["beta_writer"])
    junk = ("files", ("junk.pdf", bytes(range(256)) * 4, "application/pdf"))  # not a PDF, whatever its name
    r = client.post("/v1/collections/beta/documents", files=[junk], headers=h)
    job = wait(client, r.json()["job"]["id"], keys["beta_writer"])
    assert job["status"] == "failed" and job["result"]["rejected"] == ["junk.pdf"]
    err = next(e for e in job["errors"] if e["path"] == "junk.pdf")
    assert err["reason"] and str(tmp) not in err["reason"]  # no server path
    assert not list((tmp / "var" / "uploads").rglob("junk.pdf"))
    # one good file beside a bad one: the good one is ingested, the job is done, the bad one reported
    good = ("files", ("newts.txt", b"Newts regrow lost limbs within weeks.", "text/plain"))
    r = client.post("/v1/collections/beta/documents", files=[good, junk], headers=h)
    job = wait(client, r.json()["job"]["id"], keys["beta_writer"])
    assert job["status"] == "done" and job["result"]["added"] == 1 and job["result"]["rejected"] == ["junk.pdf"]
    assert not list((tmp / "var" / "uploads").rglob("junk.pdf"))


def test_read_key_cannot_delete_and_cross_collection_doc_is_hidden(api):
    client, keys, _ = api
    alpha_docs = client.get("/v1/collections/alpha/documents", headers=bearer(ADMIN)).json()["documents"]
    doc = alpha_docs[0]["id"]
    assert client.delete(f"/v1/collections/alpha/documents/{doc}", headers=bearer(keys["alpha_reader"])).status_code == 403
    # beta's writer names an alpha document through beta: not found, not deleted
    assert client.delete(f"/v1/collections/beta/documents/{doc}", headers=bearer(keys["beta_writer"])).status_code == 404
    assert client.get(f"/v1/collections/alpha/documents/{doc}", headers=bearer(ADMIN)).status_code == 200


@pytest.mark.parametrize("name", ["../../evil.txt", "..\\evil.txt", "/etc/passwd.txt", ".hidden.txt", "a/b.txt"])
def test_upload_names_cannot_escape(api, name):
    client, keys, tmp = api
    r = client.post("/v1/collections/alpha/documents", files={"files": (name, b"text", "text/plain")},
                    headers=bearer(keys["alpha_writer"]))
    assert r.status_code in (400, 422), r.text
    assert not (tmp / "var" / "evil.txt").exists() and not (tmp / "evil.txt").exists()
    written = [p for p in (tmp / "var").rglob("*") if p.is_file() and "evil" in p.name]
    assert written == []


def test_upload_limits(api):
    client, keys, tmp = api
    h = bearer(keys["alpha_writer"])
    r = client.post("/v1/collections/alpha/documents", files={"files": ("big.txt", b"a " * 10_000, "text/plain")}, headers=h)
    assert r.status_code == 413 and "RAG_MAX_UPLOAD_MB" in r.json()["detail"]
    assert not list((tmp / "var" / "uploads").rglob("big.txt*")) and not list((tmp / "var" / "uploads").rglob(".big*"))
    r = client.post("/v1/collections/alpha/documents", files={"files": ("x.exe", b"MZ", "application/octet-stream")}, headers=h)
    assert r.status_code == 415 and ".txt" in r.json()["detail"]
    many = [("files", (f"f{i}.txt", b"t", "text/plain")) for i in range(4)]
    assert client.post("/v1/collections/alpha/documents", files=many, headers=h).status_code == 413
    r = client.post("/v1/collections/bad..name/documents", files={"files": ("a.txt", b"t", "text/plain")},
                    headers=bearer(ADMIN))
    assert r.status_code == 422  # the path pattern of the schema refuses it


def test_ingest_job_reports_errors_per_file(api):
    client, keys, tmp = api
    h = bearer(keys["alpha_writer"])
    r = client.post("/v1/collections/alpha/documents", headers=h,
                    files=[("files", ("empty.md", b"   ", "text/markdown")),
                           ("files", ("whales.txt", b"Blue whales are the largest animals ever known.", "text/plain"))])
    job = wait(client, r.json()["job"]["id"], keys["alpha_writer"])
    assert job["status"] == "done" and job["result"]["added"] == 1
    assert [e["path"] for e in job["errors"]] == ["empty.md"] and "no text" in job["errors"][0]["reason"]
    # re-ingesting the upload folder through /v1/ingest: everything unchanged
    r = client.post("/v1/ingest", json={"collection": "alpha", "paths": ["whales.txt"]}, headers=h)
    job = wait(client, r.json()["job"]["id"], keys["alpha_writer"])
    assert job["result"]["unchanged"] == 1 and job["result"]["added"] == 0
    # a non-admin can't ingest server paths outside its upload folder
    r = client.post("/v1/ingest", json={"collection": "alpha", "paths": [str(tmp / "zephyr.txt")]}, headers=h)
    assert r.status_code == 400
    # other keys can't read the job
    assert client.get(f"/v1/jobs/{job['id']}", headers=bearer(keys["beta_writer"])).status_code == 403
    assert client.get("/v1/jobs/nope", headers=h).status_code == 404


def test_job_eta_math():
    from rag.api.jobs import Job

    j = Job("x", "ingest", "c", "k", status="running", done=2, total=6, started_at=__import__("time").time() - 10)
    d = j.to_dict()
    assert 19 <= d["eta_s"] <= 21 and d["done"] == 2 and d["total"] == 6
