"""Isolation, property-tested: hypothesis draws a key (its read/write rights over three
collections), an endpoint, a target collection and a question (often naming another
collection's secret); no response of any endpoint may carry a secret word, a document id, a
chunk id or a file name of a collection the key cannot read. Also: a revoked key stops at
once, and keys are compared in constant time."""

from __future__ import annotations

import json
import re

import pytest
from api_helpers import ADMIN, bearer, make_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.build import ingest_paths

COLLECTIONS = ["red", "green", "blue"]
# Each collection's secret document: a topic word that questions use to pull retrieval towards
# it, and hidden words no question ever contains (what a leak would show), in a file of its own.
SECRETS = {c: (f"Vault{c.title()}Marker", f"Hidden{c.title()}Cipher", f"K{4000 + 7 * i}Q")
           for i, c in enumerate(COLLECTIONS)}
RIGHTS = [{}, {"red": "read"}, {"green": "write"}, {"red": "read", "blue": "write"}, {"*": "read"}]


def secret_text(c: str) -> str:
    word, hidden, code = SECRETS[c]
    return (f"The {word} archive of the {c} division holds the {hidden} and code {code}. {word} Tower "
            f"guards it, and {word} Station keeps its records.")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("isolation")
    client = make_app(tmp, rate_limit_per_minute=100000, answer_queue=100)
    svc = client.app.state.rag.svc
    leaks = {}
    for c in COLLECTIONS:
        f = tmp / f"secret-{c}.txt"
        f.write_text(secret_text(c), encoding="utf-8")
        ingest_paths(svc.settings, svc.store, svc.embedder(), [f], c, progress=False)
        docs = svc.store.documents(c)
        chunk_ids = [h.chunk.id for h in svc.search(f"{SECRETS[c][0]} archive", c, 10)]
        leaks[c] = {"words": [SECRETS[c][1], SECRETS[c][2], f"secret-{c}.txt"],
                    "doc_ids": [d.doc_hash for d in docs], "chunk_ids": chunk_ids}
    keys = {}
    for i, rights in enumerate(RIGHTS):
        r = client.post("/v1/keys", json={"name": f"k{i}", "rights": rights}, headers=bearer(ADMIN))
        keys[i] = r.json()["key"]
    yield client, keys, leaks
    client.__exit__(None, None, None)


def readable(rights: dict, c: str) -> bool:
    return c in rights or "*" in rights


def call(client, key: str, endpoint: str, target: str, question: str, leaks: dict) -> str:
    h = bearer(key)
    other = leaks[target]
    if endpoint == "ask":
        r = client.post("/v1/ask", json={"question": question, "collection": target}, headers=h)
    elif endpoint == "ask_stream":
        r = client.post("/v1/ask?stream=true", json={"question": question, "collection": target}, headers=h)
    elif endpoint == "search":
        r = client.post("/v1/search", json={"question": question, "collection": target, "k": 10}, headers=h)
    elif endpoint == "chat":
        r = client.post("/v1/chat/completions", headers=h,
                        json={"model": target, "messages": [{"role": "user", "content": question}]})
    elif endpoint == "chat_stream":
        r = client.post("/v1/chat/completions", headers=h,
                        json={"model": target, "stream": True, "messages": [{"role": "user", "content": question}]})
    elif endpoint == "documents":
        r = client.get(f"/v1/collections/{target}/documents", headers=h)
    elif endpoint == "document":
        r = client.get(f"/v1/collections/{target}/documents/{other['doc_ids'][0]}", headers=h)
    elif endpoint == "chunk":
        r = client.get(f"/v1/collections/{target}/chunks/{other['chunk_ids'][0]}", headers=h)
    elif endpoint == "graph":
        r = client.get(f"/v1/collections/{target}/graph", params={"entity": question[:40]}, headers=h)
    elif endpoint == "graph_stats":
        r = client.get(f"/v1/collections/{target}/graph", headers=h)
    elif endpoint == "models":
        r = client.get("/v1/models", headers=h)
    else:
        r = client.get("/v1/collections", headers=h)
    assert r.status_code < 500, (endpoint, r.status_code, r.text[:300])
    return r.text


ENDPOINTS = ["ask", "ask_stream", "search", "chat", "chat_stream", "documents", "document", "chunk", "graph",
             "graph_stats", "models", "collections"]


@st.composite
def requests(draw):
    key = draw(st.sampled_from(range(len(RIGHTS))))
    endpoint = draw(st.sampled_from(ENDPOINTS))
    target = draw(st.sampled_from(COLLECTIONS))
    named = draw(st.sampled_from(COLLECTIONS))  # the collection whose secret the question asks about
    word = SECRETS[named][0]
    question = draw(st.sampled_from([f"What does the {word} archive hold?", f"Which code does the {word} archive hold?",
                                     f"{word} Tower", f"Where is {word} Station?"]))
    question += draw(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=30))
    question = re.sub(r"Hidden|Cipher|K\d{4}Q|secret", "", question)  # a question never names the hidden words
    return key, endpoint, target, question.strip() or "archive"


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(requests())
def test_no_response_carries_what_the_key_cannot_read(world, req):
    """Nothing of a collection the key cannot read, and, from the passage endpoints, nothing of
    any collection but the one asked."""
    client, keys, leaks = world
    key, endpoint, target, question = req
    rights = RIGHTS[key]
    body = call(client, keys[key], endpoint, target, question, leaks)
    listing = endpoint in ("models", "collections")
    chunk_ids = {v for obj in _json_objects(body) for k, v in _walk(obj) if k in ("chunk_id", "chunks")}
    for c in COLLECTIONS:
        if readable(rights, c) and (listing or c == target):
            continue
        for word in leaks[c]["words"] + leaks[c]["doc_ids"]:
            assert word not in body, (endpoint, target, c, word, body[:400])
        assert not chunk_ids & set(leaks[c]["chunk_ids"]), (endpoint, target, c, "chunk id")
        if listing and not readable(rights, c):
            assert f'"{c}"' not in body, (endpoint, c)


def _json_objects(body: str) -> list:
    """The JSON of a response, or of each server-sent event of a stream."""
    try:
        return [json.loads(body)]
    except ValueError:
        out = []
        for m in re.finditer(r"^data: (.*)$", body, re.M):
            try:
                out.append(json.loads(m.group(1)))
            except ValueError:
                pass
        return out


def _walk(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                yield from _walk(v)
            elif isinstance(v, int):
                yield k, v
            if k == "chunks" and isinstance(v, list):
                yield from ((k, i) for i in v if isinstance(i, int))
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def test_a_revoked_key_stops_at_once(world):
    client, _, _ = world
    key = client.post("/v1/keys", json={"name": "short-lived", "rights": {"red": "read"}}, headers=bearer(ADMIN)).json()["key"]
    assert client.get("/v1/collections", headers=bearer(key)).status_code == 200
    assert client.delete("/v1/keys/short-lived", headers=bearer(ADMIN)).status_code == 200
    for path in ("/v1/collections", "/v1/models"):
        assert client.get(path, headers=bearer(key)).status_code == 401
    assert client.post("/v1/search", json={"question": "archive", "collection": "red"},
                       headers=bearer(key)).status_code == 401
