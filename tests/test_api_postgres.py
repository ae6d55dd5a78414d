"""The API on PostgreSQL, as docker-compose runs it: keys, rights, ingest and a cited answer
against a throwaway server started in a temporary folder (skips without the server binaries)."""

from __future__ import annotations

import functools
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from api_helpers import bearer, make_app, seed

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_url():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    bindir = os.path.dirname(found[-1])
    root = Path(tempfile.mkdtemp(prefix="rag-apipg-"))  # the server refuses root-only folders
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True)
    run(as_user + [f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "rag", "--no-sync"])
    run(as_user + [f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                   f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    try:
        yield f"postgresql+psycopg://rag@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


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
