"""`rag backup` / `rag restore` (rag.cli.backup): a restored data folder gives the same
documents, the same passages and the same answers; keys still work; a damaged backup or a
non-empty target is refused. Also SQLite to PostgreSQL."""

from __future__ import annotations

import pytest
from conftest import SAMPLE

from ingest.build import ingest_paths
from rag.cli.backup import backup, restore
from rag.config import Settings
from rag.errors import InputError
from rag.pipeline import RagService

QUESTIONS = ["How tall is the Harbor Point Lighthouse?", "한라산의 높이는 얼마인가요?"]


def state(svc: RagService) -> dict:
    return {"docs": sorted(d.doc_hash for d in svc.store.documents("alpha")),
            "beta": sorted(d.doc_hash for d in svc.store.documents("beta")),
            "hits": [[(h.chunk.id, h.chunk.text) for h in svc.search(q, "alpha", 4)] for q in QUESTIONS],
            "answers": [svc.ask(q, "alpha").text for q in QUESTIONS]}


@pytest.fixture
def source(tmp_path):
    from rag.api.auth import KeyStore

    settings = Settings(data_dir=tmp_path / "var", backend="fake")
    svc = RagService(settings)
    ingest_paths(settings, svc.store, svc.embedder(), [SAMPLE], "alpha", progress=False)
    note = tmp_path / "beta.txt"
    note.write_text("The beta harbour has a red beacon.", encoding="utf-8")
    ingest_paths(settings, svc.store, svc.embedder(), [note], "beta", progress=False)
    key = KeyStore(svc.store).create("reader", {"alpha": "read"})
    return svc, key


@pytest.mark.parametrize("target_db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_restore_gives_the_same_documents_passages_answers_and_keys(source, tmp_path, request, target_db):
    from rag.api.auth import KeyStore

    svc, key = source
    before = state(svc)
    backup(svc.settings, tmp_path / "backup")
    url = request.getfixturevalue("pg_url") if target_db == "postgres" else None
    target = Settings(data_dir=tmp_path / "restored", backend="fake", database_url=url)
    restore(target, tmp_path / "backup")
    again = RagService(target)
    assert state(again) == before
    assert KeyStore(again.store).verify(key).rights == {"alpha": "read"}
    # and it keeps working: a new document gets a fresh id, not one of the restored ones
    note = tmp_path / "later.txt"
    note.write_text("A later note about the harbour.", encoding="utf-8")
    ingest_paths(target, again.store, again.embedder(), [note], "alpha", progress=False)
    assert len(again.store.documents("alpha")) == len(before["docs"]) + 1
    with pytest.raises(InputError, match="not empty"):
        restore(target, tmp_path / "backup")


def test_a_damaged_backup_is_refused_before_anything_is_written(source, tmp_path):
    svc, _ = source
    backup(svc.settings, tmp_path / "backup")
    index = next((tmp_path / "backup" / "collections" / "alpha").glob("v*/*"))
    index.write_bytes(index.read_bytes()[:-1] + b"x")
    target = Settings(data_dir=tmp_path / "restored", backend="fake")
    with pytest.raises(InputError, match="missing or altered"):
        restore(target, tmp_path / "backup")
    assert not (tmp_path / "restored" / "rag.db").exists()
    with pytest.raises(InputError, match="not empty"):
        backup(svc.settings, tmp_path / "backup")
