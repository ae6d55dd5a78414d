"""`rag bench --scale-out`: ingest and evaluation throughput on one process and on Ray with 1
and 2 workers (a Ray cluster of this machine's cores, started per configuration), the per-item
cost Ray adds, and a paper estimate for 10 and 100 workers from those measured costs.

Workloads (medians over repeats, fresh data folder each time, actors' model loading included,
as a user's run pays it):
- ingest: dev SQuAD paragraphs as one JSONL file, embedded by e5 (the default embedder);
- evaluation: `rag eval qa --retrieval-only` over dev SQuAD questions (each actor holds the
  embedder and the collection's indexes);
- overhead: the same two with the fake backend (models cost ~nothing), Ray minus local, per item.
Writes OUT/benchmarks-scale-out.json and OUT/benchmarks-scale-out.md."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from evals.bench import corpus_texts, cpu_description, write
from rag.config import Settings

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev" / "squad2"


def _corpus(folder: Path, n: int) -> Path:
    f = folder / "corpus.jsonl"
    with open(f, "w") as out:
        for i, t in enumerate(corpus_texts(n)):
            out.write(json.dumps({"doc_id": f"d{i}", "title": "", "text": t}) + "\n")
    return f


def _cluster(workers: int | None) -> bool:
    """A Ray cluster of `workers` CPUs started in this process (none for the local runs)."""
    import ray

    ray.shutdown()
    if workers:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return bool(workers)


def ingest_once(settings: Settings, n: int, workers: int | None) -> tuple[float, int]:
    from ingest.build import ingest_paths
    from rag.pipeline import RagService

    with tempfile.TemporaryDirectory() as tmp:
        f = _corpus(Path(tmp), n)
        s = settings.model_copy(update={"data_dir": Path(tmp) / "var", "model_dir": settings.models_path})
        svc = RagService(s)
        on_ray = _cluster(workers)
        t0 = time.perf_counter()
        rep = ingest_paths(s, svc.store, svc.embedder(), [f], "bench", progress=False,
                           ray="auto" if on_ray else None)
        return time.perf_counter() - t0, rep.chunks


def eval_once(settings: Settings, n: int, workers: int | None) -> tuple[float, int]:
    """settings.data_dir holds the dev corpus already ingested (qa.run's own ingest then finds
    nothing new): the clock measures the questions."""
    from evals import qa

    with tempfile.TemporaryDirectory() as tmp:
        on_ray = _cluster(workers)
        args = SimpleNamespace(data=str(SQUAD), out=str(Path(tmp) / "out"), limit=n, retrieval_only=True,
                               ray="auto" if on_ray else None)
        t0 = time.perf_counter()
        m = qa.run(settings, args)
        return time.perf_counter() - t0, m["n"]


def with_corpus(settings: Settings, folder: Path) -> Settings:
    """Settings on `folder` with the dev SQuAD corpus ingested there."""
    from evals import qa

    s = settings.model_copy(update={"data_dir": folder, "model_dir": settings.models_path})
    qa.prepare(s, SQUAD)
    return s


def measure(fn, settings: Settings, n: int, repeats: int) -> list[dict]:
    rows = []
    for label, workers, threads in (("one process, 2 threads", None, 2), ("one process, 1 thread", None, 1),
                                    ("Ray, 1 worker", 1, 1), ("Ray, 2 workers", 2, 1)):
        s = settings.model_copy(update={"threads": threads})
        runs = [fn(s, n, workers) for _ in range(repeats)]
        med = statistics.median(t for t, _ in runs)
        rows.append({"setup": label, "items": runs[0][1], "median_s": med, "items_per_s": runs[0][1] / med})
    import ray

    ray.shutdown()
    return rows


def run(settings: Settings, args) -> dict:
    repeats = 2 if args.quick else max(1, min(args.repeats, 3))
    n_chunks, n_questions = (64, 40) if args.quick else (384, 200)
    result = {"command": "rag bench --scale-out", "cpu": cpu_description(), "repeats": repeats}
    from rag.models.embed import make_embedder

    make_embedder("e5", 1, cache_dir=settings.models_path).embed_passages(["warm up"])  # exported once, not timed
    result["ingest"] = measure(ingest_once, settings, n_chunks, repeats)
    fake = settings.model_copy(update={"backend": "fake", "embedder": "hash"})
    with tempfile.TemporaryDirectory() as real_dir, tempfile.TemporaryDirectory() as fake_dir:
        result["eval"] = measure(eval_once, with_corpus(settings, Path(real_dir)), n_questions, repeats)
        fake_eval = with_corpus(fake, Path(fake_dir))
        overhead = {}
        for kind, fn, s, n in (("ingest", ingest_once, fake, n_chunks), ("eval", eval_once, fake_eval, n_questions)):
            rows = measure(fn, s, n, repeats)
            local, one = rows[1]["median_s"], rows[2]["median_s"]
            overhead[kind] = {"local_s": local, "ray_1_worker_s": one, "items": rows[0]["items"],
                              "added_ms_per_item": 1000 * (one - local) / rows[0]["items"]}
    result["overhead"] = overhead
    result["estimate"] = estimate(result)
    return write(Path(args.out), "benchmarks-scale-out", result, render)


def estimate(result: dict) -> dict:
    """Steady items/s at 10 and 100 workers on paper, from this run's costs:
    - Ray's own cost: the fake-backend Ray 1-worker run less the fake-backend local run
      (actors started, items scheduled; counted here as paid once per run, an overestimate);
    - a worker's rate: its items over the real Ray 1-worker time less Ray's own cost;
    - the driver's serial cost per item, which no worker count divides: for ingest the plan,
      the index build and the commit (the fake-backend local run per item, an upper bound);
      for evaluation the dispatch of each item and the writing of its record (Ray's added cost
      per item with the fake models, an upper bound);
    rate(w) = 1 / (1 / (w * worker rate) + driver cost)."""
    out = {}
    for kind in ("ingest", "eval"):
        one = next(r for r in result[kind] if r["setup"] == "Ray, 1 worker")
        o = result["overhead"][kind]
        startup = o["ray_1_worker_s"] - o["local_s"]
        driver = o["local_s"] / o["items"] if kind == "ingest" else o["added_ms_per_item"] / 1000
        worker = one["items"] / max(one["median_s"] - startup, 1e-9)
        out[kind] = {"startup_s": startup, "per_worker_items_per_s": worker, "driver_ms_per_item": 1000 * driver,
                     **{f"{w}_workers_items_per_s": 1 / (1 / (w * worker) + driver) for w in (10, 100)}}
    return out


def render(r: dict) -> str:
    lines = [f"CPU: {r['cpu']}; medians of {r['repeats']} runs, each in a fresh data folder, model loading "
             "included.", "", "| workload | setup | items | median s | items/s |", "|---|---|---|---|---|"]
    for kind, unit in (("ingest", "chunks (e5)"), ("eval", "questions (retrieval only)")):
        for row in r[kind]:
            lines.append(f"| {kind} | {row['setup']} | {row['items']} {unit} | {row['median_s']:.1f} | "
                         f"{row['items_per_s']:.1f} |")
    lines += ["", "| Ray's own cost (fake models) | one process, 1 thread | Ray, 1 worker | added per item |",
              "|---|---|---|---|"]
    for kind, o in r["overhead"].items():
        lines.append(f"| {kind}, {o['items']} items | {o['local_s']:.2f} s | {o['ray_1_worker_s']:.2f} s | "
                     f"{o['added_ms_per_item']:.1f} ms |")
    lines += ["", "| on paper (steady state) | one worker | driver, serial | Ray's start-up per run | 10 workers | "
              "100 workers |", "|---|---|---|---|---|---|"]
    for kind, e in r["estimate"].items():
        lines.append(f"| {kind} | {e['per_worker_items_per_s']:.1f}/s | {e['driver_ms_per_item']:.1f} ms/item | "
                     f"{e['startup_s']:.1f} s | {e['10_workers_items_per_s']:.0f}/s | {e['100_workers_items_per_s']:.0f}/s |")
    return "\n".join(lines) + "\n"
