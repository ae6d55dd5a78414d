"""The same store, ingest and ask path against a real PostgreSQL server (the throwaway server
of tests/conftest.py, from Debian's postgresql package)."""

import pytest

from ingest.build import delete_documents, ingest_paths
from tests.conftest import SAMPLE

pytestmark = pytest.mark.postgres


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
