"""The API's contract, checked by schemathesis against its own OpenAPI schema: every operation,
with and without a key, every check (schemathesis.toml names the one check two upload operations
skip, and why), stateful links included. It runs the documented command against `rag serve`
on the fake backend and fails on any finding (docs/reliability.md has the long run)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import REPO, SAMPLE

KEY = "contract-admin-key"
EXAMPLES = os.environ.get("RAG_CONTRACT_EXAMPLES", "15")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("contract")
    env = {**os.environ, "RAG_BACKEND": "fake", "RAG_DATA_DIR": str(data), "RAG_ADMIN_KEY": KEY,
           "RAG_RATE_LIMIT_PER_MINUTE": "1000000"}
    subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(SAMPLE)], env=env, check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("auth", [True, False], ids=["with a key", "without"])
def test_schemathesis_finds_no_contract_failure(server, auth):
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    if exe is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")
    cmd = [exe, "run", f"{server}/openapi.json", "--max-examples", EXAMPLES, "--generation-deterministic",
           "--workers", "1", "--request-timeout", "30"]
    if auth:
        cmd += ["-H", f"Authorization: Bearer {KEY}"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "passed" in run.stdout and "failures" not in run.stdout.split("Test cases:")[-1]
