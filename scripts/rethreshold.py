"""Re-threshold a `rag eval qa` run on the answerability score in its traces.

The gate is applied after generation and the judge's verdicts are recorded for withheld answers,
so the metrics at another RAG_ABSTAIN_THRESHOLD follow exactly from the records:
answerable-only F1 (the `f1` of metrics.json), SQuAD 2.0 overall F1 (unanswerable questions
score 1 when not answered), answered_unanswerable_rate, abstained_answerable_rate.
Usage: python scripts/rethreshold.py OUT/records.jsonl"""
import json, sys
from evals import metrics as M
from rag.prompt import strip_markers
recs = [json.loads(l) for l in open(sys.argv[1])]
def at(t):
    f1 = []; ans_un = 0; n_un = 0; abst_ans = 0; n_ans = 0
    for r in recs:
        o = r["outputs"]; tr = o["trace"]; inp = r["inputs"]
        p = tr.get("answerability")
        given = None
        if not o["abstained"]:
            given = o["answer_plain"] if (p is None or p >= t) else None
        elif "withheld_answer" in tr and p is not None and p >= t and all(v["supported"] for v in o["verdicts"]):
            given = strip_markers(tr["withheld_answer"])
        if inp["answerable"]:
            n_ans += 1; abst_ans += given is None
            f1.append(M.f1_score(given or "", inp["answers"]) if given else 0.0)
        else:
            n_un += 1; ans_un += given is not None
            f1.append(0.0 if given else 1.0)
    fa = [f for f, r in zip(f1, recs) if r["inputs"]["answerable"]]
    return sum(f1) / len(f1), ans_un / max(1, n_un), abst_ans / max(1, n_ans), sum(fa) / max(1, len(fa))
print("| threshold | f1 (answerable) | SQuAD 2.0 F1 (all) | answered_unanswerable_rate | abstained_answerable_rate |")
print("|---|---|---|---|---|")
for t in [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.748, 0.8]:
    f, u, a, fa = at(t)
    print(f"| {t:.2f} | {fa:.3f} | {f:.3f} | {u:.2f} | {a:.3f} |")
