"""`rag eval retrieval`: rank documents for BEIR-style queries and score the ranking.

The folder holds corpus.jsonl ({"_id","title","text"}), queries.jsonl ({"_id","text"}) and
qrels.tsv (query-id, corpus-id, score). Only queries with at least one relevant document
are scored, as BEIR does. Chunks are ranked, then collapsed to documents (first hit wins)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from tqdm import tqdm

from rag import metrics as M
from evals.qa import prepare, read_jsonl, subset
from rag.config import Settings

CHUNKS_PER_QUERY = 40  # enough chunks to fill 10 distinct documents for multi-chunk abstracts


def read_qrels(path: Path) -> dict[str, dict[str, float]]:
    qrels: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if float(row["score"]) > 0:
                qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = float(row["score"])
    return qrels


def run(settings: Settings, args) -> dict:
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    qrels = read_qrels(data / "qrels.tsv")
    queries = [q for q in read_jsonl(data / "queries.jsonl") if str(q["_id"]) in qrels]
    queries = subset(queries, args.limit, "_id")
    svc, collection = prepare(settings, data)
    mode = getattr(args, "retrieval_mode", "full")
    if mode == "full":
        def ranker(text, k):
            return svc.rank(text, collection, k)
    else:
        ranker = svc.retriever(collection, mode).retrieve
    ndcg, recall, mrr, lat = [], [], [], []
    with open(out / "records.jsonl", "w", encoding="utf-8") as f:
        for q in tqdm(queries, desc="queries", unit="q"):
            t0 = time.perf_counter()
            hits = ranker(q["text"], CHUNKS_PER_QUERY)
            lat.append(time.perf_counter() - t0)
            ranked = M.distinct([h.chunk.source for h in hits])[:10]
            rel = qrels[str(q["_id"])]
            scores = {"ndcg@10": M.ndcg_at_k(ranked, rel, 10), "recall@10": M.recall_at_k(ranked, set(rel), 10),
                      "mrr@10": M.mrr_at_k(ranked, set(rel), 10)}
            ndcg.append(scores["ndcg@10"])
            recall.append(scores["recall@10"])
            mrr.append(scores["mrr@10"])
            f.write(json.dumps({"id": str(q["_id"]), "query": q["text"], "ranked": ranked,
                                "relevant": sorted(rel), "scores": scores}, ensure_ascii=False) + "\n")
    result = {"ndcg@10": M.mean(ndcg), "recall@10": M.mean(recall), "mrr@10": M.mean(mrr),
              "latency_p50_s": M.percentile(lat, 50), "latency_p95_s": M.percentile(lat, 95),
              "n": len(queries), "collection": collection, "embedder": svc.embedder().name,
              "mode": mode, "limit": args.limit}
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result
