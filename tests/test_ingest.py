"""Ingest bookkeeping: dedup, replacement, deletion, collection isolation and crash safety."""

import os
import subprocess
import sys
import textwrap

import pytest

from ingest.build import delete_documents, ingest_paths
from rag.errors import InputError, NotFoundError


def ingest(service, paths, collection="default"):
    return ingest_paths(service.settings, service.store, service.embedder(), paths, collection, progress=False)


def chunk_count(service, collection="default"):
    col = service.store.get_collection(collection)
    idx = service.indexes.get(col)
    return len(idx.dense), len(idx.lexical)


def test_reingest_is_a_noop_and_edit_replaces(service, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("The red fox jumps. " * 30)
    r1 = ingest(service, [f])
    assert len(r1.added) == 1 and r1.chunks > 1
    before = chunk_count(service)
    r2 = ingest(service, [f])
    assert r2.unchanged == [str(f.resolve())] and r2.chunks == 0 and r2.index_version == 0
    assert chunk_count(service) == before
    f.write_text("The blue whale sings. " * 10)
    r3 = ingest(service, [f])
    assert r3.replaced == [str(f.resolve())]
    dense, lexical = chunk_count(service)
    assert dense == lexical == r3.chunks
    hits = service.search("red fox", "default", 5)
    assert all("fox" not in h.chunk.text for h in hits)


def test_duplicate_text_under_another_name_is_skipped(service, tmp_path):
    (tmp_path / "a.txt").write_text("Same words here.")
    (tmp_path / "b.txt").write_text("Same words here.")
    r = ingest(service, [tmp_path])
    assert len(r.added) == 1 and len(r.duplicates) == 1


def test_delete_removes_from_every_index_and_the_database(sample_service):
    svc = sample_service
    assert any("Lighthouse" in h.chunk.text for h in svc.search("Harbor Point Lighthouse keeper", "default", 3))
    removed = delete_documents(svc.settings, svc.store, "lighthouse.txt", "default") if False else None
    src = next(d.source for d in svc.store.documents("default") if d.source.endswith("lighthouse.txt"))
    removed = delete_documents(svc.settings, svc.store, src, "default")
    assert removed == [src]
    assert all(d.source != src for d in svc.store.documents("default"))
    assert all(h.chunk.source != src for h in svc.search("Harbor Point Lighthouse keeper", "default", 10))
    dense, lexical = chunk_count(svc)
    assert dense == lexical
    with pytest.raises(NotFoundError):
        delete_documents(svc.settings, svc.store, src, "default")


def test_delete_by_hash_prefix(sample_service):
    svc = sample_service
    doc = svc.store.documents("default")[0]
    assert delete_documents(svc.settings, svc.store, doc.doc_hash[:12], "default") == [doc.source]


def test_collections_are_isolated(service, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "secret.txt").write_text("The vault code of project Falcon is 4417.")
    (tmp_path / "b" / "public.txt").write_text("The cafeteria opens at noon.")
    ingest(service, [tmp_path / "a"], "alpha")
    ingest(service, [tmp_path / "b"], "beta")
    hits = service.search("vault code project Falcon", "beta", 10)
    assert hits and all("Falcon" not in h.chunk.text for h in hits)
    # even a chunk id from another collection is never returned
    alpha_ids = [h.chunk.id for h in service.search("vault code Falcon", "alpha", 5)]
    assert service.store.chunks("beta", alpha_ids) == {}


def test_bad_collection_name_and_empty_input(service, tmp_path):
    with pytest.raises(InputError):
        ingest(service, [tmp_path], "../escape")
    with pytest.raises(InputError):
        ingest(service, [])


def test_crash_before_commit_keeps_previous_state(service, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("Version one about apples. " * 20)
    ingest(service, [f])
    before_docs = [d.doc_hash for d in service.store.documents("default")]
    before = chunk_count(service)
    f.write_text("Version two about pears. " * 20)

    def boom():
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        ingest_paths(service.settings, service.store, service.embedder(), [f], "default", progress=False,
                     before_commit=boom)
    assert [d.doc_hash for d in service.store.documents("default")] == before_docs
    assert chunk_count(service) == before
    assert "apples" in service.search("apples", "default", 1)[0].chunk.text
    # the next ingest sweeps the orphan version folder and succeeds
    ingest(service, [f])
    versions = sorted(p.name for p in (service.settings.data_dir / "collections" / "default").glob("v*"))
    assert len(versions) == 1


def test_killed_process_mid_ingest_leaves_previous_state(service, tmp_path):
    """SIGKILL at the worst moment (new index files written, database not yet committed)."""
    f = tmp_path / "a.txt"
    f.write_text("Version one about apples. " * 20)
    ingest(service, [f])
    before = chunk_count(service)
    f.write_text("Version two about pears. " * 20)
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from rag.config import Settings
        from rag.pipeline import RagService
        from ingest.build import ingest_paths
        s = Settings(data_dir=Path({str(service.settings.data_dir)!r}), backend="fake", chunk_size=300, chunk_overlap=50)
        svc = RagService(s)
        ingest_paths(s, svc.store, svc.embedder(), [Path({str(f)!r})], "default", progress=False,
                     before_commit=lambda: os.kill(os.getpid(), signal.SIGKILL))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), capture_output=True)
    assert proc.returncode == -9
    from rag.pipeline import RagService

    fresh = RagService(service.settings)
    assert chunk_count(fresh) == before
    assert "apples" in fresh.search("apples", "default", 1)[0].chunk.text


def test_progress_callback_reports_each_stage(service):
    from tests.conftest import SAMPLE

    seen = []
    ingest_paths(service.settings, service.store, service.embedder(), [SAMPLE], "default", progress=False,
                 on_progress=lambda stage, done, total: seen.append((stage, done, total)))
    stages = [s for s, _, _ in seen]
    assert stages[0] == "loading" and stages[-1] == "indexing" and "embedding" in stages
    embedding = [(d, t) for s, d, t in seen if s == "embedding"]
    assert embedding[-1][0] == embedding[-1][1] > 0


def test_embedding_in_length_order_keeps_each_text_its_own_vector():
    import numpy as np

    from ingest.build import embed_with_progress
    from rag.models.embed import HashEmbedder

    emb = HashEmbedder()
    texts = ["a much longer text about lighthouses and keepers", "short", "mid length text", "tiny"]
    got = embed_with_progress(emb, texts, batch=2, progress=False)
    assert np.allclose(got, emb.embed_passages(texts))
