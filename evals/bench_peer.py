"""`rag bench --peer PYTHON`: ours beside the stock LangChain pipeline (../shared/peer-baseline,
run by the Python of its own virtual environment, as its README says, and left stock), on the
same corpus and questions, one after the other in the same run, reported as ratios.

Ours runs as a user would: ingest into a fresh data folder in one process; ask in another
(its peak resident memory is the serving process's), answers streamed so the first token is
timed. Corpus: dev HotpotQA (1,462 paragraphs); questions: its first N."""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rag.config import Settings
from rag.metrics import percentile

SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "data" / "dev" / "hotpotqa"
PEER = SHARED / "peer-baseline" / "langchain_rag.py"


def questions(n: int) -> list[str]:
    from rag.jsonl import read_jsonl

    return [q["question"] for q in read_jsonl(CORPUS / "qa.jsonl")][:n]


def settings(data_dir: str) -> Settings:
    """The defaults in a fresh data folder, with the prepared models of the usual one."""
    return Settings(data_dir=Path(data_dir), model_dir=Settings().models_path)


def our_ingest(data_dir: str) -> dict:
    from ingest.build import ingest_paths
    from rag.pipeline import RagService

    svc = RagService(settings(data_dir))
    svc.embedder().embed_query("warm up")  # the model loads before the clock starts, as the peer's does
    chars = sum(len(json.loads(line)["text"]) for line in open(CORPUS / "corpus.jsonl", encoding="utf-8"))
    t0 = time.perf_counter()
    report = ingest_paths(svc.settings, svc.store, svc.embedder(), [CORPUS / "corpus.jsonl"], "bench", progress=False)
    seconds = time.perf_counter() - t0
    chunks = report.chunks
    return {"ingest_s": seconds, "chunks": chunks, "chunks_per_s": chunks / seconds, "chars_per_s": chars / seconds,
            "chunk_chars": svc.settings.chunk_size}


def our_answers(data_dir: str, qs: list[str]) -> dict:
    from evals.memory import resident_mb
    from rag.pipeline import RagService

    svc = RagService(settings(data_dir))
    t0 = time.perf_counter()
    svc.warm()
    load_s = time.perf_counter() - t0
    totals, firsts, answered = [], [], 0
    for q in qs:
        t = time.perf_counter()
        first = None
        for item in svc.ask_stream(q, "bench"):
            if first is None and isinstance(item, str):
                first = time.perf_counter() - t
            answer = item
        totals.append(time.perf_counter() - t)
        firsts.append(first if first is not None else totals[-1])
        answered += not answer.abstained
    return {"load_s": load_s, "answer_p50_s": statistics.median(totals), "answer_p95_s": percentile(totals, 95),
            "first_token_p50_s": statistics.median(firsts), "answered": answered, "questions": len(qs),
            "peak_rss_mb": resident_mb()[1]}


def peer(python: str, n: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [python, str(PEER), "--corpus", str(CORPUS / "corpus.jsonl"), "--questions", str(CORPUS / "qa.jsonl"),
               "--repeats", "1", "--max-questions", str(n), "--max-new-tokens", "48", "--stream",
               "--threads", str(threads), "--out", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
        raw = json.loads(out.read_text())
    ingest, qa = raw["median_over_repeats"]["ingest"], raw["median_over_repeats"]["qa"]
    return {"ingest_s": ingest["ingest_s"], "chunks": raw["chunks"], "chunks_per_s": ingest["chunks_per_s"],
            "chars_per_s": ingest["chars_per_s"], "chunk_chars": 1000, "answer_p50_s": qa["e2e_s_p50"],
            "answer_p95_s": qa["e2e_s_p95"], "first_token_p50_s": qa.get("ttft_s_p50"),
            "peak_rss_mb": raw["peak_rss_mib"] * 1.048576, "raw": raw}  # its one process ingests and asks


def run(python: str, n: int = 15, threads: int = 2) -> dict:
    import multiprocessing

    qs = questions(n)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as data_dir:
        with ctx.Pool(1, maxtasksperchild=1) as pool:
            ours = pool.apply(our_ingest, (data_dir,))
        with ctx.Pool(1, maxtasksperchild=1) as pool:
            ours.update(pool.apply(our_answers, (data_dir, qs)))
    theirs = peer(python, n, threads)
    return {"ours": ours, "peer": theirs, "questions": n, "corpus": "dev hotpotqa"}


def render(r: dict) -> list[str]:
    o, p = r["ours"], r["peer"]
    rows = [("ingest, characters/s", "chars_per_s", "{:,.0f}"), ("ingest, chunks/s", "chunks_per_s", "{:.1f}"),
            ("answer p50 s", "answer_p50_s", "{:.2f}"), ("answer p95 s", "answer_p95_s", "{:.2f}"),
            ("first token p50 s", "first_token_p50_s", "{:.2f}"), ("peak resident MB (asking process)", "peak_rss_mb", "{:.0f}")]
    lines = ["## Side by side with the stock LangChain pipeline", "",
             f"Same corpus ({r['corpus']}, {o['chunks']} chunks of up to {o['chunk_chars']} characters for ours, "
             f"{p['chunks']} of up to {p['chunk_chars']} for the peer) and the same {r['questions']} questions, "
             "one after the other in this run. Peer: `../shared/peer-baseline/langchain_rag.py` (MiniLM + "
             "SmolLM2-135M on transformers), stock. Ours: the defaults.", "",
             "| measure | stock LangChain | ours | ours / peer |", "|---|---:|---:|---:|"]
    for name, key, fmt in rows:
        if p.get(key) is None or o.get(key) is None:
            continue
        lines.append(f"| {name} | {fmt.format(p[key])} | {fmt.format(o[key])} | {o[key] / p[key]:.2f}x |")
    lines += ["", f"Ours answered {o['answered']} of {o['questions']} (the rest abstained); the peer answers every "
              "question. Ours loads its models before the first question in "
              f"{o['load_s']:.1f} s (warm data folder)."]
    final = p.get("raw", {}).get("final_rss_mib")
    if final and p["peak_rss_mb"] > 1.5 * final * 1.048576:
        lines += ["", f"The peer's peak came while it loaded its models; its process ended at {final * 1.048576:.0f} MB "
                  "resident. Its peak varies from run to run (load-time copies of the weights), so compare memory "
                  "with that in mind."]
    return lines + [""]
