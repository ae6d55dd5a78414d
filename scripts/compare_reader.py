"""The extractive reader against the decoder on the same passages: re-reads the top-k passages
of a finished `rag eval qa` run (its records keep the retrieved chunk ids and the decoder's raw
reply and answerability score) with the shipped reader, and prints answer-all F1 of both, the
AUROC of the reader's margin and of the decoder-state probe (answerable vs not), and the
reader alone gating at P(answerable) 0.3 / 0.5 / 0.7 and at the lowest threshold that answers at
most 10% of the unanswerable questions (no judge).
Usage: RAG_DATA_DIR=var/final python scripts/compare_reader.py OUT [collection] [k] [reader_dir]
(default collection eval-squad2, k 4, the shipped reader; OUT/reader_compare.json gets the
per-question rows)."""
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from evals.metrics import f1_score
from rag.config import Settings
from rag.prompt import strip_markers
from rag.reader import Reader, answerability
from rag.store import Store

run = Path(sys.argv[1])
collection = sys.argv[2] if len(sys.argv) > 2 else "eval-squad2"
k = int(sys.argv[3]) if len(sys.argv) > 3 else 4
settings = Settings()
model_dir = Path(sys.argv[4]) if len(sys.argv) > 4 else None
store, reader = Store(settings.db_url), Reader(model_dir, threads=settings.threads)
rows = []
for line in open(run / "records.jsonl"):
    r = json.loads(line)
    trace, item = r["outputs"]["trace"], r["inputs"]
    ids = trace["retrieved"][:k]
    chunks = store.chunks(collection, ids)
    spans = reader.read(item["question"], [chunks[i].text for i in ids if i in chunks])
    best = spans[0] if spans else None
    rows.append({"id": r["id"], "answerable": item["answerable"], "reader": best.text if best else "",
                 "reader_p": answerability(best), "decoder": strip_markers(trace.get("raw", "")),
                 "probe_p": trace.get("answerability"),
                 "f1_reader": f1_score(best.text, item["answers"]) if best and item["answerable"] else 0.0,
                 "f1_decoder": f1_score(strip_markers(trace.get("raw", "")), item["answers"]) if item["answerable"] else 0.0})
(run / "reader_compare.json").write_text(json.dumps(rows, indent=1))
y = np.array([r["answerable"] for r in rows])
out = {"questions": len(rows), "answerable": int(y.sum()),
       "answer_all_f1_reader": float(np.mean([r["f1_reader"] for r in rows if r["answerable"]])),
       "answer_all_f1_decoder": float(np.mean([r["f1_decoder"] for r in rows if r["answerable"]]))}
if 0 < y.sum() < len(y):
    out["auroc_reader_margin"] = float(roc_auc_score(y, [r["reader_p"] for r in rows]))
    if all(r["probe_p"] is not None for r in rows):
        out["auroc_decoder_probe"] = float(roc_auc_score(y, [r["probe_p"] for r in rows]))
    p, f1 = np.array([r["reader_p"] for r in rows]), np.array([r["f1_reader"] for r in rows])
    out["reader_gate"] = {t: {"answered_unanswerable_rate": float((p[y == 0] >= t).mean()),
                              "answered_answerable_rate": float((p[y == 1] >= t).mean()),
                              "f1": float((f1 * (p >= t))[y == 1].mean())} for t in (0.3, 0.5, 0.7)}
    at10 = next(t for t in sorted(set(p)) if (p[y == 0] >= t).mean() <= 0.10)
    out["reader_gate"]["<=10% unanswerable"] = {"threshold": float(at10), "answered_unanswerable_rate": float((p[y == 0] >= at10).mean()),
                                                "f1": float((f1 * (p >= at10))[y == 1].mean())}
print(json.dumps(out, indent=1))
