"""`rag eval judge --data FILE.jsonl --out OUT`: grade given (question, context, answer) items.

Input lines as in shared/data/dev/hallucination/hallucination.jsonl:
{"id","question","context","answer","hallucinated"}. Each answer goes through the same
Verifier the pipeline uses (claims, trained judge, deterministic checks) with the context
as the one passage. An item is predicted hallucinated when any claim is unsupported; its
hallucination score (for AUROC) is 1 - the weakest claim's support.

Writes OUT/records.jsonl (appended as it goes: an interrupted run resumes), metrics.json
and report.html. Hallucinated = the positive class."""

from __future__ import annotations

import json
from pathlib import Path

from evals.distributed import graded
from evals.qa import load_done, subset
from rag.jsonl import read_jsonl
from rag.answer.judge import passage_hit
from rag.types import EvalRecord


def make_judge_verifier(settings):
    """The pipeline's own verifier (with its decoder, for the state judge), recording verdicts only."""
    from rag.pipeline import RagService

    return RagService(settings.model_copy(update={"verify": "report"})).verifier


def grade(verifier, item: dict) -> EvalRecord:
    check = verifier.verify(item["question"], item["answer"], (), [passage_hit(item["context"])])
    score = 1.0 - check.min_score
    return EvalRecord(item["id"], {"question": item["question"], "answer": item["answer"],
                                   "hallucinated": bool(item["hallucinated"])},
                      {"predicted_hallucinated": not check.supported,
                       "claims": [v.__dict__ for v in check.verdicts]},
                      {"hallucination_score": score})


def metrics(records: list[dict]) -> dict:
    from sklearn.metrics import balanced_accuracy_score, precision_recall_fscore_support, roc_auc_score

    y = [int(r["inputs"]["hallucinated"]) for r in records]
    p = [int(r["outputs"]["predicted_hallucinated"]) for r in records]
    s = [r["scores"]["hallucination_score"] for r in records]
    prec, rec, f1, _ = precision_recall_fscore_support(y, p, average="binary", zero_division=0)
    out = {"precision": float(prec), "recall": float(rec), "f1": float(f1),
           "balanced_accuracy": float(balanced_accuracy_score(y, p)),
           "auroc": float(roc_auc_score(y, s)) if len(set(y)) == 2 else None,
           "n": len(records), "n_hallucinated": sum(y)}
    # HaluEval's hallucinated answers are often long sentences, right ones short phrases: the
    # same numbers on short answers only show whether the judge reads content, not length.
    short = [i for i, r in enumerate(records) if len(r["inputs"]["answer"].split()) <= 5]
    ys, ps = [y[i] for i in short], [p[i] for i in short]
    if len(set(ys)) == 2:
        out["short_answers"] = {"n": len(short), "n_hallucinated": sum(ys),
                                "balanced_accuracy": float(balanced_accuracy_score(ys, ps)),
                                "auroc": float(roc_auc_score(ys, [s[i] for i in short]))}
    return out


def run(settings, args) -> dict:
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items = subset(read_jsonl(data), args.limit, "id")
    path = out / "records.jsonl"
    done = load_done(path)
    with open(path, "w", encoding="utf-8") as f:  # drop a line cut by an interruption
        for rec in done.values():
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    verifier = make_judge_verifier(settings)  # its name and bar for the metrics; it loads nothing yet
    ray = getattr(args, "ray", None)
    build = grader if ray else (lambda _settings: grader(settings, verifier))
    with open(path, "a", encoding="utf-8") as f:
        for rec in graded(settings, build, [it for it in items if it["id"] not in done], "judge", ray):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            done[rec["id"]] = rec
    scored = [done[it["id"]] for it in items if it["id"] in done]
    result = metrics(scored)
    result.update({"judge": verifier.name, "threshold": verifier.threshold,
                   "data": str(data), "limit": args.limit})
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    write_judge_report(out, scored, result)
    return result


def grader(settings, verifier=None):
    """The function item -> record (evals.distributed's builder)."""
    verifier = verifier or make_judge_verifier(settings)
    return lambda item: grade(verifier, item).__dict__


def write_judge_report(out: Path, records: list[dict], summary: dict) -> Path:
    from evals.report import risk_coverage, write_report

    support = [1.0 - r["scores"]["hallucination_score"] for r in records]
    bad = [r["inputs"]["hallucinated"] for r in records]
    rows = [{"id": r["id"], "question": r["inputs"]["question"], "answer": r["inputs"]["answer"],
             "label": "hallucinated" if r["inputs"]["hallucinated"] else "faithful",
             "predicted": "hallucinated" if r["outputs"]["predicted_hallucinated"] else "faithful",
             "hallucination_score": r["scores"]["hallucination_score"], "claims": r["outputs"]["claims"]}
            for r in records]
    hists = {"faithful": [s for s, b in zip(support, bad) if not b],
             "hallucinated": [s for s, b in zip(support, bad) if b]}
    return write_report(out / "report.html", "Hallucination judge", summary, risk_coverage(support, bad), hists,
                        "P(supported) of the weakest claim", rows,
                        ["id", "question", "answer", "label", "predicted", "hallucination_score"])
