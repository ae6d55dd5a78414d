"""Shared set-up for the API tests: one fake-backed app with two collections and scoped keys.

`alpha` holds the sample corpus; `beta` holds one secret document whose words ("Zephyr",
"7421") appear nowhere in alpha, so any leak across collections is visible in a response."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SAMPLE

SECRET = "The secret launch code of Project Zephyr is 7421. The lighthouse keeper of Zephyr island guards it."
ADMIN = "test-admin-key"


def make_app(tmp: Path, **overrides):
    from fastapi.testclient import TestClient

    from rag.api.app import create_app
    from rag.config import Settings

    settings = Settings(data_dir=tmp / "var", backend="fake", chunk_size=300, chunk_overlap=50, admin_key=ADMIN,
                        **overrides)
    client = TestClient(create_app(settings))
    client.__enter__()  # runs the lifespan: the service is built once here
    return client


def seeded_app(tmp_path_factory, name: str, **overrides):
    """Generator for a module fixture: a seeded app, its keys and its folder; closed afterwards."""
    tmp = tmp_path_factory.mktemp(name)
    client = make_app(tmp, **{"rate_limit_per_minute": 1000, **overrides})
    try:
        yield client, seed(client, tmp), tmp
    finally:
        client.__exit__(None, None, None)


def seed(client, tmp: Path) -> dict[str, str]:
    """Ingest alpha and beta through the service and create keys; returns name -> key."""
    from ingest.build import ingest_paths

    svc = client.app.state.rag.svc
    ingest_paths(svc.settings, svc.store, svc.embedder(), [SAMPLE], "alpha", progress=False)
    secret = tmp / "zephyr.txt"
    secret.write_text(SECRET, encoding="utf-8")
    ingest_paths(svc.settings, svc.store, svc.embedder(), [secret], "beta", progress=False)
    keys = {"admin": ADMIN}
    for name, rights in {"alpha_reader": {"alpha": "read"}, "beta_writer": {"beta": "write"},
                         "alpha_writer": {"alpha": "write"}}.items():
        r = client.post("/v1/keys", json={"name": name, "rights": rights}, headers=bearer(ADMIN))
        assert r.status_code == 201, r.text
        keys[name] = r.json()["key"]
    return keys


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sse_events(text: str) -> list[tuple[str, dict]]:
    """Parse a server-sent-event body into (event, data) pairs."""
    out = []
    for block in text.strip().split("\n\n"):
        event, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            out.append((event, json.loads("\n".join(data)) if data[0] != "[DONE]" else {"done": True}))
    return out
