"""`rag bench`: speed and memory of each stage, with the machine's limits beside them.

Every number is a median over repeats, and each stage has a baseline measured in the same
run (numpy brute force for search, the bandwidth/FLOP floor for models) because the
machine is shared and noisy: ratios hold up where absolute times drift. Writes
OUT/benchmarks.json and OUT/benchmarks.md."""

from __future__ import annotations

import json
import platform
import sys
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from evals.memory import resident_mb
from rag.config import Settings

# Measured machine limits (shared/MODELS.md): memory bandwidth and bf16 GEMM rate, 2 cores.
BANDWIDTH_GBS = 58.0
BF16_GFLOPS = 730.0
# Encoder weights that cost FLOPs per token: MiniLM-L6 has 6 layers of width 384, e5-small 12.
NON_EMBEDDING_PARAMS = {"minilm": 10.6e6, "e5": 21.3e6}


def cpu_description() -> str:
    """The CPU's model name and the instruction sets the kernels choose by."""
    from rag.models.weights import cpu_info

    name, flags = cpu_info()
    name = name or platform.processor() or "unknown CPU"
    sets = [label for flag, label in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
                                      ("avx512_vnni", "AVX512-VNNI"), ("amx_bf16", "AMX")) if flag in flags]
    return f"{name} ({', '.join(sets) or 'no AVX2'})"


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def p(values, q):
    from rag.metrics import percentile

    return percentile(values, q)


def corpus_texts(n: int, korean: bool = False) -> list[str]:
    """Real passages, as ingest chunks them: English from the dev SQuAD paragraphs (Korean: the
    KorQuAD train articles) when present, else the sample corpus."""
    from ingest.chunk import split_document
    from ingest.load import load_paths
    from rag.text import is_korean

    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    src = data / "train" / "korquad" / "corpus.jsonl" if korean else data / "dev" / "squad2" / "corpus.jsonl"
    sample = Path(__file__).resolve().parents[1] / "rag" / "data" / "sample"
    docs, _ = load_paths([src] if src.exists() else [sample])
    chunks = [c.text for d in docs for c in split_document(d)]
    if not src.exists():
        chunks = [c for c in chunks if is_korean(c) == korean]
    return (chunks * (n // max(len(chunks), 1) + 1))[:n]


def bench_embed(settings: Settings, repeats: int, n: int) -> list[dict]:
    from rag.models.embed import make_embedder

    texts = corpus_texts(n)
    rows = []
    for name in ("e5", "minilm"):
        emb = make_embedder(name, settings.threads, cache_dir=settings.models_path)
        emb.embed_passages(texts[:4])  # load and warm up
        runs = timed(lambda: emb.embed_passages(texts), repeats)
        med = statistics.median(runs)
        # 2 FLOP per non-embedding weight per token (embedding lookups cost none); ~4 chars a token
        chars = sum(len(t) for t in texts) / len(texts)
        flop = 2 * NON_EMBEDDING_PARAMS[name] * chars / 4
        rows.append({"stage": f"embed passages ({name})", "chunks_per_s": n / med, "median_s": med,
                     "bound_chunks_per_s": BF16_GFLOPS * 1e9 / flop, "n": n})
    korean = corpus_texts(n, korean=True)  # e5 only: MiniLM cannot read Hangul
    emb = make_embedder("e5", settings.threads, cache_dir=settings.models_path)
    med = statistics.median(timed(lambda: emb.embed_passages(korean), repeats))
    rows.append({"stage": "embed passages (e5, Korean)", "chunks_per_s": n / med, "median_s": med,
                 "chars_per_chunk": sum(map(len, korean)) / n, "n": n})
    return rows


def bench_ingest(settings: Settings, repeats: int, n: int) -> dict:
    """Whole ingest (load, chunk, embed, index, commit) of n chunks' worth of text into a fresh store."""
    from ingest.build import ingest_paths
    from rag.pipeline import RagService

    texts = corpus_texts(n)
    runs = []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "corpus.jsonl"
            with open(f, "w") as out:
                for i, t in enumerate(texts):
                    out.write(json.dumps({"doc_id": f"d{i}", "title": "", "text": t}) + "\n")
            s = settings.model_copy(update={"data_dir": Path(tmp) / "var", "model_dir": settings.models_path})
            svc = RagService(s)
            t0 = time.perf_counter()
            rep = ingest_paths(s, svc.store, svc.embedder(), [f], "bench", progress=False)
            runs.append((time.perf_counter() - t0, rep.chunks))
    med = statistics.median(t for t, _ in runs)
    graph = "graph on" if settings.graph else "graph off"
    return {"stage": f"ingest end to end ({settings.embedder}, {graph})", "chunks_per_s": runs[0][1] / med,
            "median_s": med, "n": runs[0][1]}


def bench_search(sizes: list[int], queries: int = 200) -> list[dict]:
    from rag.store.index import BM25Index, FaissIndex

    rng = np.random.default_rng(0)
    rows = []
    vocab = [f"w{i}" for i in range(50_000)]
    zipf = 1 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    for n in sizes:
        vecs = rng.normal(size=(n, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        idx = FaissIndex(384)
        idx.add(np.arange(n), vecs)
        qs = rng.normal(size=(queries, 384)).astype(np.float32)
        dense = timed_each(lambda q: idx.search(q, 30), qs)
        brute = timed_each(lambda q: np.argpartition(-(vecs @ q), 30)[:30], qs)
        docs = rng.choice(len(vocab), size=(n, 60), p=zipf)
        bm = BM25Index.build(list(range(n)), [[vocab[j] for j in row] for row in docs])
        qtok = [[vocab[j] for j in rng.choice(len(vocab), size=6, p=zipf)] for _ in range(queries)]
        lexical = timed_each(lambda t: bm.search(t, 30), qtok)
        floor_ms = n * 384 * 4 / (BANDWIDTH_GBS * 1e9) * 1e3
        rows.append({"chunks": n, "dense_p50_ms": p(dense, 50) * 1e3, "dense_p95_ms": p(dense, 95) * 1e3,
                     "numpy_bruteforce_p50_ms": p(brute, 50) * 1e3, "bandwidth_floor_ms": floor_ms,
                     "lexical_p50_ms": p(lexical, 50) * 1e3, "lexical_p95_ms": p(lexical, 95) * 1e3})
    return rows


def timed_each(fn, items) -> list[float]:
    out = []
    for it in items:
        t = time.perf_counter()
        fn(it)
        out.append(time.perf_counter() - t)
    return out


def bench_prompt():
    """The question, passages and prompt every decoder stage is timed on: (question, hits, messages)."""
    from rag.answer.prompt import build_messages
    from rag.types import Chunk, Hit

    hits = [Hit(Chunk(i, "d", t, 0, len(t), 0, f"s{i}", ""), 1.0, "fused") for i, t in enumerate(corpus_texts(4))]
    question = "What happened after the embargo ended?"
    return question, hits, build_messages(question, hits)


def bench_generate(settings: Settings, repeats: int) -> dict:
    from rag.pipeline import RagService

    gen = RagService(settings).generator
    t = time_decoder(gen, repeats)
    size = gen.size()
    return {"decoder": gen.name, "weights": size["weights"], "params_m": size["params"] / 1e6,
            "prompt_tokens": t["prompt_tokens"], "ttft_s": t["ttft_s"], "decode_tok_per_s": t["decode_tok_per_s"],
            # decoding reads every weight once per token; prefill does 2 FLOPs per weight and token
            "decode_bound_tok_per_s": BANDWIDTH_GBS * 1e9 / size["weight_bytes"],
            "prefill_floor_s": 2 * size["params"] * t["prompt_tokens"] / (BF16_GFLOPS * 1e9),
            "first_load_s": t["first_load_s"]}


def time_decoder(gen, repeats: int) -> dict:
    """The decoder on the bench prompt: its first call (load and warm-up) timed, then medians over
    `repeats` replies of up to 32 tokens (time to first token, decode speed after it)."""
    _, _, msgs = bench_prompt()
    t0 = time.perf_counter()
    gen.generate(msgs, 4)
    load_s = time.perf_counter() - t0
    results = [gen.generate(msgs, 32) for _ in range(repeats)]
    return {"first_load_s": load_s, "ttft_s": statistics.median(r.ttft_s for r in results),
            "decode_tok_per_s": statistics.median((r.new_tokens - 1) / max(r.total_s - r.ttft_s, 1e-9)
                                                  for r in results if r.new_tokens > 1),
            "prompt_tokens": results[0].prompt_tokens, "text": results[0].text}


def runtime_cost(runtime: str, repeats: int) -> dict:
    """In a fresh process: one runtime's decoder on the bench prompt (first call, then medians),
    and the resident memory it added."""
    from rag.models.decoder import HFGenerator
    from rag.models.llama import LlamaCppGenerator

    s = Settings()
    before, _ = resident_mb()
    gen = (LlamaCppGenerator(s.decoder, s.models_path, s.threads) if runtime == "llama.cpp"
           else HFGenerator(s.decoder, s.models_path, None, s.threads, s.dtype))
    t = time_decoder(gen, repeats)
    after, peak = resident_mb()
    return {"runtime": runtime, **{k: t[k] for k in ("first_load_s", "ttft_s", "decode_tok_per_s", "text")},
            "resident_mb": after - before, "peak_mb": peak - before}


def bench_runtime(repeats: int) -> list[dict]:
    """The decoder on llama.cpp (the service's) and on transformers (the path before it, which
    now runs only adapters and training), each in a process of its own, in this run."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return [pool.apply(runtime_cost, (r, repeats)) for r in ("llama.cpp", "transformers")]


def bench_answer(settings: Settings, repeats: int) -> list[dict]:
    """One answer with its grounding check on the same prompt, each way the service can answer
    an English question: the reader's span (the default) and the decoder's greedy phrase: what a
    user waits for after retrieval."""
    from rag.answer.prompt import MAX_NEW_TOKENS
    from rag.pipeline import RagService

    question, hits, msgs = bench_prompt()
    svc = RagService(settings)
    if svc.verifier is None:
        return []  # RAG_VERIFY=off: no check to time

    # Each call asks a question of its own wording, as a user does: the generator keeps the last
    # prompt's keys and values, and the same prompt again would time only the claim's tokens.
    def by_reader(i):
        q = f"{question} ({i})"
        spans = svc.reader.read(q, [h.chunk.text for h in hits])
        svc.verifier.verify(q, spans[0].text if spans else "", (), hits)

    def by_decoder(_):
        svc.verifier.verify(question, svc.generator.generate(msgs, MAX_NEW_TOKENS).text, (), hits)

    ways = [("decoder, greedy", by_decoder)]
    if svc.reader is not None:
        ways.insert(0, ("reader span", by_reader))
        if len(svc.reader.load()) > 1:  # what the ensemble costs over its first member alone
            from rag.answer.reader import WEIGHTS, Reader

            first = Reader(svc.reader.model_dir, threads=settings.threads, members=(WEIGHTS,), dtype=settings.dtype)

            def by_first_member(i):
                q = f"{question} [{i}]"
                spans = first.read(q, [h.chunk.text for h in hits])
                svc.verifier.verify(q, spans[0].text if spans else "", (), hits)

            ways.insert(1, ("reader span, first member only", by_first_member))
    out = []
    for name, answer in ways:
        answer(-1)  # load + warm up
        times = timed_each(answer, range(repeats))
        out.append({"answer": name, "p50_s": statistics.median(times), "max_s": max(times)})
    return out


def load_cost(model: str) -> dict:
    """In a fresh process: the resident memory one model adds once loaded and used once on the
    bench's prompt, measured from after the imports and the service every model needs, while
    the service still holds the model (a reader dropped before the reading frees its weights)."""
    import torch  # noqa: F401 - part of the baseline, as every model needs it

    from rag.pipeline import RagService

    svc = RagService(Settings())
    question, hits, msgs = bench_prompt()
    texts = [h.chunk.text for h in hits]
    before, _ = resident_mb()
    if model == "decoder":
        svc.generator.generate(msgs, 4)
    else:
        svc.reader.read(question, texts)
    after, peak = resident_mb()
    return {"model": model, "resident_mb": after - before, "peak_mb": peak - before}


def serving_peak() -> float:
    """In a fresh process: peak resident MB of a service that has used every default model once
    (the query embedder, the readers, the decoder and the grounding check) on the bench prompt."""
    from rag.answer.prompt import MAX_NEW_TOKENS
    from rag.pipeline import RagService

    svc = RagService(Settings())
    question, hits, msgs = bench_prompt()
    svc.embedder().embed_query(question)
    if svc.reader is not None:
        svc.reader.read(question, [h.chunk.text for h in hits])
    reply = svc.generator.generate(msgs, MAX_NEW_TOKENS).text
    if svc.verifier is not None:
        svc.verifier.verify(question, reply, (), hits)
    return resident_mb()[1]


def bench_memory() -> list[dict]:
    """Each model's resident cost, measured apart (a spawned process each) so the order of
    loading does not move the numbers."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return [pool.apply(load_cost, (m,)) for m in ("reader pair", "decoder")]


def run(settings: Settings, args) -> dict:
    from rag.models.weights import set_threads

    threads = set_threads(settings.threads)
    sizes = [1000, 5000] if args.quick else [int(x) for x in args.sizes.split(",")]
    repeats = 2 if args.quick else args.repeats
    n_embed = 64 if args.quick else 256
    result = {"command": "RAG_THREADS={} rag {}".format(threads, " ".join(sys.argv[1:])) if "bench" in sys.argv else "rag bench",
              "machine": {"python": platform.python_version(), "threads": threads, "cpu": cpu_description()},
              "repeats": repeats}
    result["embed"] = bench_embed(settings, repeats, n_embed)
    # knowledge-graph extraction on vs off: its cost beside embedding
    result["ingest"] = [bench_ingest(settings.model_copy(update={"graph": g}), max(1, repeats // 2), n_embed)
                        for g in (True, False)]
    result["search"] = bench_search(sizes)
    result["generate"] = bench_generate(settings, repeats)
    result["runtime"] = bench_runtime(repeats)
    if getattr(args, "peer", None):
        from evals.bench_peer import run as side_by_side

        result["peer"] = side_by_side(args.peer, threads=threads)
    result["answer"] = bench_answer(settings, repeats)
    result["memory"] = bench_memory()
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        result["serving_peak_mb"] = pool.apply(serving_peak)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return write(Path(args.out), "benchmarks", result, render)


def write(out: Path, name: str, result: dict, render) -> dict:
    """OUT/<name>.json and OUT/<name>.md (the table), printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(render(result))
    print(render(result))
    return result


def render(r: dict) -> str:
    command = r.get("command", "rag bench")
    lines = ["# Benchmarks", "", f"Produced by `{command}` ({r['repeats']} repeats, medians; "
             f"{r['machine']['threads']} threads; {r['machine']['cpu']}). Raw numbers: `benchmarks.json`.", "",
             "## Embedding and ingest", "", "| stage | chunks/s | FLOP bound chunks/s | share of bound |",
             "|---|---:|---:|---:|"]
    for e in r["embed"]:
        bound = e.get("bound_chunks_per_s")  # none for Korean: its tokens per character differ
        lines.append(f"| {e['stage']} | {e['chunks_per_s']:.1f} | " +
                     (f"{bound:.0f} | {e['chunks_per_s'] / bound:.0%} |" if bound else "| |"))
    lines += [f"| {i['stage']} | {i['chunks_per_s']:.1f} | | |" for i in r["ingest"]]
    lines += ["",
              "## Retrieval latency per query (top 30)", "",
              "| chunks | dense p50 ms | dense p95 ms | numpy brute force p50 ms | bandwidth floor ms | "
              "lexical p50 ms | lexical p95 ms |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for s in r["search"]:
        lines.append(f"| {s['chunks']:,} | {s['dense_p50_ms']:.2f} | {s['dense_p95_ms']:.2f} | "
                     f"{s['numpy_bruteforce_p50_ms']:.2f} | {s['bandwidth_floor_ms']:.2f} | "
                     f"{s['lexical_p50_ms']:.2f} | {s['lexical_p95_ms']:.2f} |")
    g = r["generate"]
    lines += ["", "## Generation", "", "| decoder (weights) | params (M) | prompt tokens | TTFT s | prefill floor s | "
              "decode tok/s | bandwidth bound tok/s | share of bound |", "|---|---:|---:|---:|---:|---:|---:|---:|",
              f"| {g['decoder']} ({g.get('weights', '')}) | {g['params_m']:.0f} | {g['prompt_tokens']} | {g['ttft_s']:.2f} | "
              f"{g['prefill_floor_s']:.2f} | {g['decode_tok_per_s']:.1f} | {g['decode_bound_tok_per_s']:.0f} | "
              f"{g['decode_tok_per_s'] / g['decode_bound_tok_per_s']:.0%} |", "",
              f"Prefill runs at {g['prefill_floor_s'] / g['ttft_s']:.0%} of the bf16 GEMM bound.", ""]
    if r.get("runtime"):
        llama, hf = r["runtime"]
        lines += ["## Decoder runtime", "", "The same decoder and prompt on each runtime, each in a fresh process "
                  "(first call: loading, and on a fresh data folder transformers' GGUF conversion):", "",
                  "| runtime | first call s | TTFT s | decode tok/s | resident MB | peak MB | same reply |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {x['runtime']} | {x['first_load_s']:.1f} | {x['ttft_s']:.2f} | {x['decode_tok_per_s']:.1f} | "
                  f"{x['resident_mb']:.0f} | {x['peak_mb']:.0f} | {'yes' if x['text'] == hf['text'] else 'no'} |"
                  for x in (llama, hf)]
        lines += ["", f"llama.cpp / transformers: decode {llama['decode_tok_per_s'] / hf['decode_tok_per_s']:.1f}x, "
                  f"TTFT {llama['ttft_s'] / hf['ttft_s']:.2f}x, resident memory "
                  f"{llama['resident_mb'] / max(hf['resident_mb'], 1):.2f}x.", ""]
    if r.get("answer"):
        base = next(a["p50_s"] for a in r["answer"] if a["answer"] == "decoder, greedy")
        lines += ["## An answer and its grounding check", "",
                  "| answer | p50 s | max s | vs decoder greedy |", "|---|---:|---:|---:|"]
        lines += [f"| {a['answer']} | {a['p50_s']:.2f} | {a['max_s']:.2f} | {a['p50_s'] / base:.2f}x |"
                  for a in r["answer"]]
        lines += ["", "The reader's span (English default: two readers' logits averaged; the first alone "
                  "for comparison) skips decoding; its check pays one prefill of the prompt. The decoder's "
                  "replies are checked behind the prompt's cached keys and values (llama.cpp keeps them).", ""]
    lines += [f"Peak resident memory of a serving process (embedder, readers, decoder and grounding check "
              f"loaded, one answer checked): {r['serving_peak_mb']:.0f} MB." if r.get("serving_peak_mb") else "", ""]
    if r.get("memory"):
        lines += ["## Memory", "", "Resident memory each model adds, loaded and used once in a process of its own "
                  "and still held by the service (measured from after the imports and the service all of them need):", "",
                  "| model | resident MB | peak MB while loading |", "|---|---:|---:|"]
        lines += [f"| {m['model']} | {m['resident_mb']:.0f} | {m['peak_mb']:.0f} |" for m in r["memory"]]
        lines += [""]
    if r.get("peer"):
        from evals.bench_peer import render as render_peer

        lines += render_peer(r["peer"])
    lines += ["## How far from the limits", ""]
    big = r["search"][-1]
    e5 = next(e for e in r["embed"] if "(e5)" in e["stage"])
    mini = next(e for e in r["embed"] if "(minilm)" in e["stage"])
    lines += [f"- Embedding: MiniLM (torch) runs at {mini['chunks_per_s'] / mini['bound_chunks_per_s']:.0%} "
              f"of its FLOP bound; e5 at {e5['chunks_per_s'] / e5['bound_chunks_per_s']:.0%}, "
              f"{mini['chunks_per_s'] / e5['chunks_per_s']:.1f}x slower than MiniLM per chunk: the "
              "multilingual embedder is what ingest waits on.",
              f"- Dense search at {big['chunks']:,} chunks: FAISS p50 {big['dense_p50_ms']:.1f} ms is "
              f"{big['dense_p50_ms'] / big['numpy_bruteforce_p50_ms']:.1f}x numpy's brute force "
              f"({big['numpy_bruteforce_p50_ms']:.1f} ms) and {big['dense_p50_ms'] / big['bandwidth_floor_ms']:.0f}x "
              "the bandwidth floor; lexical search is far below both.",
              f"- Generation: time to first token {g['ttft_s']:.2f} s against a prefill floor of "
              f"{g['prefill_floor_s']:.2f} s; decoding at {g['decode_tok_per_s'] / g['decode_bound_tok_per_s']:.0%} "
              "of the bandwidth bound of the quantized weights.",
              "",
              "Reading the tables: embedding is FLOP-bound, so its bound is the bf16 GEMM rate over the "
              "encoder's FLOPs per chunk (e5 runs on ONNX Runtime, int8 where the CPU has VNNI, "
              "MiniLM on torch). Dense search "
              "is bandwidth-bound: the floor is one pass over the vectors. Decoding is bandwidth-bound: "
              "the bound reads every weight once per token (as stored in the GGUF); prefill is "
              "FLOP-bound. The machine limits are those measured in shared/MODELS.md (bf16 GEMM rate, "
              "memory bandwidth), so on another CPU the bounds are indicative only.", "",
              "## Scale-out on Ray", "",
              "Ingest and evaluation throughput with 1 and 2 Ray workers, Ray's own cost per item and a "
              "paper estimate for 10 and 100 workers: `rag bench --scale-out` writes `benchmarks-scale-out.md` "
              "(docs/scale-out.md says what runs where).", ""]
    return "\n".join(lines)
