"""Ingest and evaluation on a Ray cluster started by the tests (a head and a worker node, one
CPU each, on this machine): the same index, rows and records as the local run, and a worker
lost mid-ingest never leaves half an index committed.

Each test's body runs in a fresh process, which joins Ray: the test runner never does, so
however a Ray driver ends (Ray's core may end its process when it loses its cluster), the
suite runs on and reports the failure."""

from __future__ import annotations

import json
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import ray  # the cluster extra (pip install -e ".[cluster]"; `make test` installs it)
from ray import cluster_utils
from sqlalchemy import select

from rag.config import Settings

SAMPLE = Path(__file__).resolve().parents[1] / "rag" / "data" / "sample"


def on_a_cluster(body, tmp_path: Path) -> None:
    """Run `body(cluster, worker_node, tmp_path)` in a fresh process that starts the cluster and
    joins it; its assertion errors are raised here."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_with_cluster, body, tmp_path).result(timeout=900)


def _with_cluster(body, tmp_path: Path) -> None:
    """In the fresh process: a head and a worker node, one CPU each; the code under test joins
    it as the driver."""
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    try:
        body(c, worker, tmp_path)
    finally:
        ray.shutdown()
        c.shutdown()


def fake(tmp: Path, name: str) -> Settings:
    return Settings(data_dir=tmp / name, backend="fake", chunk_size=300, chunk_overlap=50)


def state(settings: Settings, collection: str = "default") -> dict:
    """Everything an ingest commits: rows, index version, and the bytes of each index file."""
    from rag.pipeline import RagService
    from rag.store.collection import version_dir
    from rag.store.metadata import ChunkRow, DocumentRow

    svc = RagService(settings)
    with svc.store.transaction() as s:
        col = svc.store.collection(s, collection)
        docs = sorted((d.source.replace(str(SAMPLE), ""), d.doc_hash) for d in
                      s.scalars(select(DocumentRow).where(DocumentRow.collection_id == col.id)))
        chunks = [(c.id, c.text, c.start, c.end, c.ordinal) for c in
                  s.scalars(select(ChunkRow).where(ChunkRow.collection_id == col.id).order_by(ChunkRow.id))]
        version = col.index_version
    folder = version_dir(settings.data_dir, collection, version)
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return {"docs": docs, "chunks": chunks, "version": version, "files": files}


def ingest(settings: Settings, paths: list[Path], ray_address: str | None, collection: str = "default"):
    from ingest.build import ingest_paths
    from rag.pipeline import RagService

    svc = RagService(settings)
    return ingest_paths(settings, svc.store, svc.embedder(), paths, collection, progress=False, ray=ray_address)


def test_ingest_on_ray_commits_what_a_local_ingest_commits(tmp_path):
    on_a_cluster(ingest_matches_local, tmp_path)


def ingest_matches_local(c, _worker, tmp_path):
    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"\x00\x01")
    local = ingest(fake(tmp_path, "local"), [SAMPLE, bad], None)
    distributed = ingest(fake(tmp_path, "ray"), [SAMPLE, bad], c.address)
    assert distributed.added == local.added and distributed.chunks == local.chunks > 0
    assert [e.reason for e in distributed.errors] == [e.reason for e in local.errors] != []
    expected = state(fake(tmp_path, "local"))
    assert state(fake(tmp_path, "ray")) == expected
    # a second run plans on the committed rows as locally: nothing new, no new version
    again = ingest(fake(tmp_path, "ray"), [SAMPLE], c.address)
    assert again.unchanged == local.added and again.index_version == 0
    assert state(fake(tmp_path, "ray"))["version"] == expected["version"]


def test_eval_on_ray_writes_the_records_of_a_local_run(tmp_path):
    on_a_cluster(eval_matches_local, tmp_path)


def eval_matches_local(c, _worker, tmp_path):
    from types import SimpleNamespace

    from evals import qa

    data = tmp_path / "qa-set"
    data.mkdir()
    corpus = [{"doc_id": f"d{i}", "title": t, "text": x} for i, (t, x) in enumerate([
        ("Otters", "Sea otters hold hands while they sleep so they do not drift apart."),
        ("Bees", "Honey bees dance to show the other bees where the flowers are."),
        ("Lighthouse", "The Harbor Point Lighthouse was automated in 1962.")])]
    items = [{"qid": "q1", "question": "Why do sea otters hold hands?", "answers": ["so they do not drift apart"],
              "answerable": True, "doc_id": "d0"},
             {"qid": "q2", "question": "What do honey bees dance to show?", "answers": ["where the flowers are"],
              "answerable": True, "doc_id": "d1"},
             {"qid": "q3", "question": "When was the lighthouse automated?", "answers": ["1962"],
              "answerable": True, "doc_id": "d2"},
             {"qid": "q4", "question": "What colour is the zorblax?", "answers": [], "answerable": False, "doc_id": "d1"}]
    (data / "corpus.jsonl").write_text("\n".join(json.dumps(x) for x in corpus))
    (data / "qa.jsonl").write_text("\n".join(json.dumps(x) for x in items))

    def run(name: str, address: str | None):
        out = tmp_path / f"out-{name}"
        metrics = qa.run(fake(tmp_path, name), SimpleNamespace(data=str(data), out=str(out), limit=None, ray=address))
        records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
        for r in records:  # the seconds each took are the only difference allowed
            r["scores"].pop("latency_s")
            r["outputs"].pop("timings", None)
        return {k: v for k, v in metrics.items() if "latency" not in k}, records

    local_metrics, local_records = run("local", None)
    ray_metrics, ray_records = run("ray", c.address)
    assert [r["id"] for r in ray_records] == ["q1", "q2", "q3", "q4"]  # the items' order
    assert ray_records == local_records and ray_metrics == local_metrics


def test_a_worker_lost_mid_ingest_never_commits_half_an_index(tmp_path):
    """The worker node dies once the embedders have started: Ray retries on the head node and
    the ingest commits the whole set, or it fails and the collection is as it was. Never a part."""
    on_a_cluster(lose_a_worker_mid_ingest, tmp_path)


def lose_a_worker_mid_ingest(c, worker, tmp_path):
    from ingest.build import ingest_paths
    from rag.pipeline import RagService

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(400):  # enough batches that the embedders are still busy when the node goes
        (corpus / f"doc{i:03d}.txt").write_text(f"Document {i}. " + " ".join(f"word{i}x{j}" for j in range(120)))
    before = ingest(fake(tmp_path, "ray"), [SAMPLE], None)  # the state a failed ingest must leave
    ingest(fake(tmp_path, "local"), [SAMPLE], None)
    full = ingest(fake(tmp_path, "local"), [corpus], None)
    embedding, outcome = threading.Event(), {}

    def run():
        svc = RagService(fake(tmp_path, "ray"))
        try:
            outcome["report"] = ingest_paths(svc.settings, svc.store, svc.embedder(), [corpus], "default",
                                             progress=False, ray=c.address,
                                             on_progress=lambda stage, done, total: stage == "embedding" and embedding.set())
        except Exception as e:  # noqa: BLE001 - either outcome is allowed; half a commit is not
            outcome["error"] = e

    t = threading.Thread(target=run)
    t.start()
    assert embedding.wait(timeout=120)
    c.remove_node(worker)
    assert t.is_alive()  # the node went while the ingest was still running
    t.join(timeout=300)
    assert not t.is_alive()
    after = state(fake(tmp_path, "ray"))
    if "error" in outcome:
        assert after["version"] == before.index_version and len(after["docs"]) == len(before.added)
    else:
        assert outcome["report"].chunks == full.chunks
        assert after == state(fake(tmp_path, "local"))
