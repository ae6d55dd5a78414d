"""Shared fixtures. Tests run offline: any attempt to open a non-loopback socket fails loudly."""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests that load a real decoder share one converted copy instead of re-converting the GGUF
# (about a minute) in every temporary data folder.
os.environ.setdefault("RAG_MODEL_DIR", str(Path(__file__).resolve().parents[1] / "var" / "models"))

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "rag" / "data" / "sample"
SHARED_DATA = REPO.parent / "shared" / "data"

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1", "") or host.startswith(("/", "\0"))):
        raise RuntimeError(f"tests are offline: refused connection to {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture
def settings(tmp_path):
    """Settings on a fresh data folder with every model replaced by its deterministic fake."""
    from rag.config import Settings

    return Settings(data_dir=tmp_path / "var", backend="fake", chunk_size=300, chunk_overlap=50)


@pytest.fixture
def service(settings):
    from rag.pipeline import RagService

    return RagService(settings)


@pytest.fixture
def sample_service(service):
    """A fake-backed service with the shipped sample corpus ingested into 'default'."""
    from ingest.build import ingest_paths

    ingest_paths(service.settings, service.store, service.embedder(), [SAMPLE], "default", progress=False)
    return service


class PgServer:
    """A throwaway PostgreSQL server (Debian's server binaries) on loopback, as user rag with
    trust auth; `url` has no database name. Not under pytest's tmp folder: its parents are
    private to root, and the server can't run as root."""

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
        self.bindir = os.path.dirname(found[-1])
        self.root = Path(tempfile.mkdtemp(prefix="rag-pg-"))
        self.data, sock = self.root / "data", self.root / "sock"
        sock.mkdir()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.root, "postgres")
            shutil.chown(sock, "postgres")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(f"{self.bindir}/initdb", "-D", str(self.data), "-A", "trust", "-U", "rag", "--no-sync")
        self.pg_ctl("start")
        self.url = f"postgresql+psycopg://rag@127.0.0.1:{port}"

    def _run(self, *cmd):
        subprocess.run(self.as_user + list(cmd), check=True, capture_output=True, text=True)

    def pg_ctl(self, action: str, *extra: str) -> None:
        self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-w", "-l", str(self.root / "log"),
                  "-o", self.options, action, *extra)

    def close(self) -> None:
        subprocess.run(self.as_user + [f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server for the whole run; yields its URL without a database
    name; `pg_url` gives each test module its own database."""
    server = PgServer()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="module")
def pg_url(pg_server, request):
    """A fresh database on the shared server for one test module."""
    from sqlalchemy import create_engine, text

    name = "t_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1]).lower()
    engine = create_engine(f"{pg_server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{pg_server}/{name}"
