"""Re-threshold a `rag eval qa` run on the scores in its traces.

The abstention gate (answerability score) and the grounding check (the judge's per-claim
scores, with the exact-fact checks already folded in) act after generation, and the records
keep each withheld answer with its verdicts, so the metrics at another RAG_ABSTAIN_THRESHOLD
and RAG_JUDGE_THRESHOLD (policy abstain) follow exactly from the records: answerable-only F1
(the `f1` of metrics.json), SQuAD 2.0 overall F1 (unanswerable questions score 1 when not
answered), answered_unanswerable_rate, abstained_answerable_rate.
--reader-judge moves only the bar of the extractive reader's spans (RAG_READER_JUDGE_THRESHOLD),
--judge that of every answer.
--decoder-agrees replays a rule measured and not kept (docs/results.md, session 17): a decoder
answer below the gate's bar passes when it names the same answer as the readers' best span
(token F1 >= rag.reader.AGREE) and that span has the question's names near it.
Usage: python scripts/rethreshold.py OUT/records.jsonl [--judge 0.3,0.5,0.7 | --reader-judge 0.14,0.5] [--at 0.5,0.639] [--decoder-agrees]"""
import json
import sys

from evals import metrics as M
from evals.qa import reply
from rag.prompt import is_abstention, strip_markers
from rag.reader import AGREE, MODEL_PREFIX

recs = [json.loads(line) for line in open(sys.argv[1])]


def option(name: str, default: list) -> list:
    return [float(v) for v in sys.argv[sys.argv.index(name) + 1].split(",")] if name in sys.argv else default


judges = option("--judge", [None])
reader_judges = option("--reader-judge", [None])
thresholds = option("--at", [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.748, 0.8])
agreement = "--decoder-agrees" in sys.argv


def decoder_agrees(r) -> bool:
    """The decoder answered (the readers declined) the same as the readers' best span, names near it."""
    tr = r["outputs"]["trace"]
    reading, raw = tr.get("reader") or {}, tr.get("raw", "")
    if r["outputs"].get("model", "").startswith(MODEL_PREFIX) or not reading.get("span") or reading.get("unmatched"):
        return False
    return bool(raw) and not is_abstention(raw) and M.f1_single(strip_markers(raw), reading["span"]) >= AGREE


def at(t, judge, reader_judge=None):
    f1 = []; ans_un = 0; n_un = 0; abst_ans = 0; n_ans = 0
    for r in recs:
        o = r["outputs"]; tr = o["trace"]; inp = r["inputs"]
        p = tr.get("answerability")
        text = reply(r)
        bar = reader_judge if reader_judge is not None and o.get("model", "").startswith(MODEL_PREFIX) else judge
        supported = all((v["score"] >= bar) if bar is not None else v["supported"] for v in o["verdicts"])
        gate = p is None or p >= t or agreement and decoder_agrees(r)
        given = text if text and gate and supported else None
        if inp["answerable"]:
            n_ans += 1; abst_ans += given is None
            f1.append(M.f1_score(given or "", inp["answers"]) if given else 0.0)
        else:
            n_un += 1; ans_un += given is not None
            f1.append(0.0 if given else 1.0)
    fa = [f for f, r in zip(f1, recs) if r["inputs"]["answerable"]]
    return sum(f1) / len(f1), ans_un / max(1, n_un), abst_ans / max(1, n_ans), sum(fa) / max(1, len(fa))


for judge in judges:
    for reader_judge in reader_judges:
        if judge is not None or reader_judge is not None:
            print(f"\njudge threshold {judge}, reader spans' judge threshold {reader_judge}")
        print("| threshold | f1 (answerable) | SQuAD 2.0 F1 (all) | answered_unanswerable_rate | abstained_answerable_rate |")
        print("|---|---|---|---|---|")
        for t in thresholds:
            f, u, a, fa = at(t, judge, reader_judge)
            print(f"| {t:.3f} | {fa:.3f} | {f:.3f} | {u:.2f} | {a:.3f} |")
