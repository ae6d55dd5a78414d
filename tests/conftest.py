"""Shared fixtures. Tests run offline: any attempt to open a non-loopback socket fails loudly."""

from __future__ import annotations

import os
import socket
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
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1", "") or host.startswith("/")):
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
