"""REST API: auth (401/403), collection isolation, limits, ask/search, SSE streaming, metrics."""

from __future__ import annotations

import pytest
from api_helpers import ADMIN, bearer, make_app, seeded_app, sse_events

QUESTION = "Who designed the Harbor Point Lighthouse?"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    for client, keys, _tmp in seeded_app(tmp_path_factory, "api", max_question_chars=200):
        yield client, keys


def test_healthz_needs_no_key(api):
    client, _ = api
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["backend"] == "fake"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_their_assets_from_the_api_itself(api, page):
    import re

    client, _ = api
    html = client.get(page).text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert urls and not [u for u in urls if u.startswith(("http://", "https://", "//"))]  # no CDN
    for u in urls:
        if u.endswith((".js", ".css")):
            r = client.get(u)
            assert r.status_code == 200 and len(r.content) > 10_000, u


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_missing_or_wrong_key_is_401(api, headers):
    client, _ = api
    r = client.post("/v1/ask", json={"question": QUESTION, "collection": "alpha"}, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "key" in r.json()["detail"]


def test_keys_are_stored_hashed(api):
    from sqlalchemy import select

    from rag.api.auth import ApiKeyRow

    client, keys = api
    with client.app.state.rag.svc.store.transaction() as s:
        hashes = list(s.scalars(select(ApiKeyRow.key_hash)))
    assert hashes and all(k not in hashes for k in keys.values())


def test_ask_returns_cited_answer(api):
    client, keys = api
    r = client.post("/v1/ask", json={"question": QUESTION, "collection": "alpha"}, headers=bearer(keys["alpha_reader"]))
    assert r.status_code == 200, r.text
    d = r.json()
    assert not d["abstained"] and d["level"] == "answered" and d["answer"] == d["text"] and d["citations"]
    assert all(c["source"].endswith("lighthouse.txt") for c in d["citations"])
    assert {"retrieve_s", "total_s"} <= set(d["timings"])
    assert "verdicts" in d


def test_responses_name_files_never_server_paths(api):
    from conftest import SAMPLE

    client, keys = api
    h = bearer(keys["alpha_reader"])
    responses = [client.post("/v1/ask", json={"question": QUESTION, "collection": "alpha"}, headers=h),
                 client.post("/v1/search", json={"question": QUESTION, "collection": "alpha"}, headers=h),
                 client.get("/v1/collections/alpha/documents", headers=h)]
    for r in responses:
        assert r.status_code == 200 and str(SAMPLE) not in r.text, r.text[:300]
    assert [c["source"] for c in responses[0].json()["citations"]] == ["lighthouse.txt"]


def test_wrong_collection_is_403_everywhere(api):
    client, keys = api
    h = bearer(keys["alpha_reader"])
    assert client.post("/v1/ask", json={"question": "Zephyr code?", "collection": "beta"}, headers=h).status_code == 403
    assert client.post("/v1/search", json={"question": "Zephyr code?", "collection": "beta"}, headers=h).status_code == 403
    assert client.get("/v1/collections/beta/documents", headers=h).status_code == 403
    r = client.post("/v1/chat/completions", headers=h,
                    json={"model": "beta", "messages": [{"role": "user", "content": "Zephyr code?"}]})
    assert r.status_code == 403 and r.json()["error"]["code"] == 403
    # read is not write
    files = {"files": ("a.txt", b"some text", "text/plain")}
    assert client.post("/v1/collections/alpha/documents", files=files, headers=h).status_code == 403
    assert client.get("/v1/keys", headers=h).status_code == 403


def test_no_passage_crosses_collections(api):
    """Even the admin, asking alpha about beta's secret, gets only alpha passages."""
    client, keys = api
    for key in (ADMIN, keys["alpha_reader"]):
        q = "What is the secret launch code of Project Zephyr at the lighthouse?"
        s = client.post("/v1/search", json={"question": q, "collection": "alpha", "k": 10}, headers=bearer(key)).json()
        a = client.post("/v1/ask", json={"question": q, "collection": "alpha"}, headers=bearer(key)).json()
        body = str(s) + str(a)
        assert s["hits"], "alpha should still return its own passages"
        assert "Zephyr island" not in body and "7421" not in body and "zephyr.txt" not in body
    # and the beta key sees its secret only in beta
    b = client.post("/v1/search", json={"question": "Zephyr launch code", "collection": "beta"},
                    headers=bearer(keys["beta_writer"])).json()
    assert any("7421" in h["text"] for h in b["hits"])


def test_chunk_endpoint_is_scoped(api):
    client, keys = api
    beta_hit = client.post("/v1/search", json={"question": "Zephyr launch code", "collection": "beta"},
                           headers=bearer(ADMIN)).json()["hits"][0]
    r = client.get(f"/v1/collections/alpha/chunks/{beta_hit['chunk_id']}", headers=bearer(keys["alpha_reader"]))
    assert r.status_code == 404


def test_collections_lists_only_readable(api):
    client, keys = api
    names = [c["name"] for c in client.get("/v1/collections", headers=bearer(keys["alpha_reader"])).json()["collections"]]
    assert names == ["alpha"]
    names = [m["id"] for m in client.get("/v1/models", headers=bearer(ADMIN)).json()["data"]]
    assert names == ["alpha", "beta"]


def test_question_limits(api):
    client, keys = api
    h = bearer(keys["alpha_reader"])
    r = client.post("/v1/ask", json={"question": "x" * 201, "collection": "alpha"}, headers=h)
    assert r.status_code == 400 and "at most 200 characters" in r.json()["detail"]
    r = client.post("/v1/ask", json={"question": "   ", "collection": "alpha"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "question"]
    # the schema says what the service enforces, with this app's limit
    question = client.get("/openapi.json").json()["components"]["schemas"]["AskRequest"]["properties"]["question"]
    assert question["maxLength"] == 200 and question["minLength"] == 1
    assert client.post("/v1/ask", json={"question": "hi", "collection": "nope"}, headers=bearer(ADMIN)).status_code == 404
    assert client.post("/v1/ask", json={"collection": "alpha"}, headers=h).status_code == 422


def test_ask_stream_sends_tokens_then_answer(api):
    client, keys = api
    with client.stream("POST", "/v1/ask?stream=true", json={"question": QUESTION, "collection": "alpha"},
                       headers=bearer(keys["alpha_reader"])) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.read().decode())
    kinds = [e for e, _ in events]
    assert kinds.count("token") >= 2 and kinds[-1] == "answer"
    final = events[-1][1]["answer"]
    assert final["citations"] and not final["abstained"]
    streamed = "".join(d["text"] for e, d in events if e == "token")
    assert streamed.strip() == final["text"].strip()


def test_stream_errors_before_streaming_keep_their_status(api):
    client, keys = api
    r = client.post("/v1/ask?stream=true", json={"question": QUESTION, "collection": "beta"},
                    headers=bearer(keys["alpha_reader"]))
    assert r.status_code == 403


def test_abstention_is_plain(api):
    client, keys = api
    d = client.post("/v1/ask", json={"question": "Qwxyz plorbing frimble?", "collection": "alpha"},
                    headers=bearer(keys["alpha_reader"])).json()
    assert d["abstained"] and d["level"] == "abstained" and d["citations"] == []


def test_metrics_count_requests_stages_and_abstentions(api):
    client, keys = api
    client.post("/v1/ask", json={"question": "Qwxyz plorbing frimble?", "collection": "alpha"},
                headers=bearer(keys["alpha_reader"]))
    text = client.get("/metrics").text
    assert 'rag_http_requests_total{method="POST",route="/v1/ask",status="200"}' in text
    assert 'rag_stage_seconds_count{stage="retrieve"}' in text
    assert 'rag_abstentions_total{collection="alpha"}' in text


def test_rate_limit_per_key(tmp_path):
    client = make_app(tmp_path, rate_limit_per_minute=3)
    try:
        codes = [client.get("/v1/collections", headers=bearer(ADMIN)).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        r = client.get("/v1/collections", headers=bearer(ADMIN))
        assert "rate limit" in r.json()["detail"] and r.headers["retry-after"]
    finally:
        client.__exit__(None, None, None)


def test_rate_limiter_refills_and_is_shared_through_the_database(tmp_path):
    from rag.api.auth import RateLimiter, RateLimitError
    from rag.store.metadata import Store

    now = [1000.0]
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    rl, other_process = (RateLimiter(Store(url), 60, clock=lambda: now[0]) for _ in range(2))  # one a second
    for i in range(60):
        (rl if i % 2 else other_process).check("k")  # two API processes draw on one allowance
    for limiter in (rl, other_process):
        with pytest.raises(RateLimitError) as e:
            limiter.check("k")
        assert e.value.retry_after == 1
    rl.check("other")  # buckets are per key
    now[0] += 1.0
    other_process.check("k")
    with pytest.raises(RateLimitError):
        rl.check("k")


def test_key_management(api):
    client, keys = api
    h = bearer(ADMIN)
    # rights the schema does not allow are refused by its validation (422)
    r = client.post("/v1/keys", json={"name": "tmp", "rights": {"alpha": "admin"}}, headers=h)
    assert r.status_code == 422
    r = client.post("/v1/keys", json={"name": "tmp", "rights": {"../x": "read"}}, headers=h)
    assert r.status_code == 422
    key = client.post("/v1/keys", json={"name": "tmp", "rights": {"*": "read"}}, headers=h).json()["key"]
    assert client.post("/v1/keys", json={"name": "tmp"}, headers=h).status_code == 409  # the name is taken
    assert client.get("/v1/collections/beta/documents", headers=bearer(key)).status_code == 200
    assert client.delete("/v1/keys/tmp", headers=h).status_code == 200
    assert client.get("/v1/collections/beta/documents", headers=bearer(key)).status_code == 401


def test_concurrent_requests_match_serial_answers(api):
    """Requests run in the thread pool at once; shared parts (index cache, decoder) must not mix them up."""
    from concurrent.futures import ThreadPoolExecutor

    client, keys = api
    questions = [QUESTION, "What is the largest planet in the Solar System?", "Where did tea drinking begin?",
                 "How tall is the Harbor Point Lighthouse tower?"] * 2

    def ask(q):
        r = client.post("/v1/ask", json={"question": q, "collection": "alpha"}, headers=bearer(keys["alpha_reader"]))
        assert r.status_code == 200, r.text
        return r.json()["text"], [c["chunk_id"] for c in r.json()["citations"]]

    serial = [ask(q) for q in questions[:4]]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(ask, questions))
    assert parallel == serial * 2
