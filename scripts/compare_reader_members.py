"""Which readers to average: every non-empty subset of the reader weights in a folder, on the
same passages, with answer-all F1, AUROC of P(answerable) and F1 at the lowest threshold that
answers at most 10% of the unanswerable questions (no judge), and the share of each article's
unanswerable questions answered at P(answerable) 0.5, for
- held: the three held-out train articles, top-k of the pipeline's retrieval of the train corpus
  (the index `rag train reader --index-dir INDEX` builds for its report), and
- dev: dev squad2, top-k passages of a finished `rag eval qa` run (its records keep the ids).
Each member's logits are computed once per question and subsets averaged from them, as
rag.reader.Reader.read averages its members. --parents reads each hit's whole source paragraph
instead of its chunk (the reader was trained on whole SQuAD paragraphs). `entity_check_N`: the
same, with a span withheld when a name or number of the question is missing from the span's
sentence and N sentences either side (rag.reader.unmatched_names; the pipeline uses N = 1).
Usage: python scripts/compare_reader_members.py FOLDER --index INDEX --run OUT [--k 4] [--parents]
(FOLDER: *.safetensors reader weights; INDEX: a data dir holding collection train-squad2; OUT: a
squad2 run whose data dir is RAG_DATA_DIR)."""
import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from evals.metrics import f1_score
from rag import reader as rd
from rag.config import Settings
from rag.pipeline import RagService
from rag.store import Store

ap = argparse.ArgumentParser()
ap.add_argument("folder", type=Path)
ap.add_argument("--index", type=Path, required=True)
ap.add_argument("--run", type=Path, required=True)
ap.add_argument("--k", type=int, default=4)
ap.add_argument("--parents", action="store_true")
args = ap.parse_args()
TRAIN = Path("../shared/data/train")


def corpus(path: Path) -> dict[str, str]:
    return {d["doc_id"]: d["text"] for d in rd.read_jsonl(path)}


def passages(chunks, texts: dict[str, str]) -> list[str]:
    if not args.parents:
        return [c.text for c in chunks]
    return list(dict.fromkeys(texts.get(c.source, c.text) for c in chunks))  # one copy per paragraph


def held_out() -> list[dict]:
    _, held = rd.split_articles(TRAIN)
    svc = RagService(Settings().model_copy(update={"data_dir": args.index}))
    texts = corpus(TRAIN / "squad2" / "corpus.jsonl")
    return [{**q, "article": q["title"], "passages": passages([h.chunk for h in svc.rank(q["question"], "train-squad2", args.k)], texts)}
            for q in rd.read_jsonl(TRAIN / "squad2" / "qa.jsonl") if q["title"] in held]


def dev() -> list[dict]:
    store = Store(Settings().db_url)
    texts = corpus(Path("../shared/data/dev/squad2/corpus.jsonl"))
    rows = []
    for line in (args.run / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        ids = r["outputs"]["trace"]["retrieved"][:args.k]
        chunks = store.chunks("eval-squad2", ids)
        rows.append({**r["inputs"], "article": r["inputs"]["gold_docs"][0].split("/")[1],
                     "passages": passages([chunks[i] for i in ids if i in chunks], texts)})
    return rows


members = sorted(p.name for p in args.folder.glob("*.safetensors"))
readers = {m: rd.Reader(args.folder, threads=Settings().threads, members=(m,)) for m in members}


def read_all(q: dict):
    """The question's windows and every member's (start, end) logits, stacked, or None."""
    if not q["passages"]:
        return None
    read = [readers[m].logits(q["question"], q["passages"]) for m in members]
    return read[0][0], np.concatenate([logits for _, logits in read])


result = {}
for split, questions in (("held", held_out()), ("dev", dev())):
    y = np.array([q["answerable"] for q in questions])
    arts = np.array([q["article"] for q in questions])
    cached = [read_all(q) for q in questions]
    for r in range(1, len(members) + 1):
        for subset in itertools.combinations(range(len(members)), r):
            P, F, missing = [], [], {0: [], 1: []}
            for q, c in zip(questions, cached):
                best = rd.spans(c[0], *c[1][list(subset)].mean(axis=0), q["passages"])[:1] if c else []
                P.append(rd.answerability(best[0] if best else None))
                F.append(f1_score(best[0].text, q["answers"]) if best and q["answerable"] else 0.0)
                for window, counts in missing.items():
                    counts.append(len(rd.unmatched_names(q["question"], q["passages"][best[0].passage], best[0], window)) if best else 0)
            P, F = np.array(P), np.array(F)

            def at(t: float, P=P, F=F, y=y) -> tuple[float, float]:  # this subset's arrays, bound now
                answered = P >= t
                return round(float(answered[~y].mean()), 3), round(float((F * answered)[y].mean()), 4)

            t10 = next(t for t in sorted(set(P)) if at(t)[0] <= 0.10)
            name = " + ".join(members[i] for i in subset)
            result.setdefault(split, {})[name] = {
                "auroc": round(float(roc_auc_score(y, P)), 4), "f1_all": round(float(F[y].mean()), 4),
                "at_0.5": at(0.5), "unanswerable_answered_at_0.5_by_article": {
                    str(a): round(float((P >= 0.5)[~y & (arts == a)].mean()), 3) for a in sorted(set(arts[~y]))},
                "at_10pct": {"threshold": round(float(t10), 3), "unanswerable": at(t10)[0], "f1": at(t10)[1]}}
            for window, counts in missing.items():
                checked = np.where(np.array(counts) > 0, 0.0, P)
                c10 = next(t for t in sorted(set(checked)) if at(t, checked)[0] <= 0.10)
                result[split][name][f"entity_check_{window}"] = {
                    "at_0.5": at(0.5, checked), "at_10pct": {"threshold": round(float(c10), 3), "unanswerable": at(c10, checked)[0],
                                                             "f1": at(c10, checked)[1]}}
            print(split, name, result[split][name], flush=True)
print(json.dumps(result, indent=1))
