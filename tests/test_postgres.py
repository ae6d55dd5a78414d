"""The same store, ingest and ask path against a real PostgreSQL server, started here in a
temporary folder (the server binaries come from Debian's postgresql package)."""

import functools
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ingest.build import delete_documents, ingest_paths
from tests.conftest import SAMPLE

pytestmark = pytest.mark.postgres


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url():
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    # not under pytest's tmp folder: its parents are private to root, and the server can't run as root
    root = Path(tempfile.mkdtemp(prefix="rag-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    # initdb refuses to run as root: run the server as the postgres system user then
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True)
    run(as_user + [f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "rag", "--no-sync"])
    run(as_user + [f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                   f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    try:
        yield f"postgresql+psycopg://rag@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_ingest_ask_delete_on_postgres(pg_url, tmp_path):
    from rag.config import Settings
    from rag.pipeline import RagService

    settings = Settings(data_dir=tmp_path / "var", backend="fake", database_url=pg_url)
    svc = RagService(settings)
    assert svc.store.engine.dialect.name == "postgresql"
    report = ingest_paths(settings, svc.store, svc.embedder(), [SAMPLE], "pg", progress=False)
    assert len(report.added) == 5
    again = ingest_paths(settings, svc.store, svc.embedder(), [SAMPLE], "pg", progress=False)
    assert len(again.unchanged) == 5 and again.chunks == 0
    a = svc.ask("How many steps lead to the lantern room of the lighthouse?", "pg")
    assert "142" in a.text and a.citations
    src = a.citations[0].source
    assert delete_documents(settings, svc.store, src, "pg") == [src]
    assert all(d.source != src for d in svc.store.documents("pg"))
    time.sleep(0)  # keep the server fixture alive until here
