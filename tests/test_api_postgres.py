"""The API on PostgreSQL, as docker-compose runs it: keys, rights, ingest and a cited answer
against a throwaway server started in a temporary folder (skips without the server binaries)."""

from __future__ import annotations


import pytest
from api_helpers import bearer, make_app, seed

pytestmark = pytest.mark.postgres


def test_api_on_postgres(pg_url, tmp_path):
    client = make_app(tmp_path, database_url=pg_url, rate_limit_per_minute=1000)
    try:
        keys = seed(client, tmp_path)
        h = bearer(keys["alpha_reader"])
        a = client.post("/v1/ask", json={"question": "Who designed the Harbor Point Lighthouse?", "collection": "alpha"},
                        headers=h).json()
        assert a["citations"] and a["citations"][0]["source"].endswith("lighthouse.txt")
        assert client.post("/v1/search", json={"question": "Zephyr", "collection": "beta"}, headers=h).status_code == 403
        assert client.get("/v1/collections", headers=bearer("nope")).status_code == 401
    finally:
        client.__exit__(None, None, None)
