"""Replay the abstention gates over two `rag eval qa` runs' records: what raising them, or
refitting them as `rag calibrate` does, would give on each set (docs/results.md, session 17).

Two tables: the readers' bar and the decoder probe's bar raised separately (a reader span below
a raised bar counts as withheld, which is what the decoder mostly does with it; below the run's
own 0.5 the records do not replay), then rag.calibrate.fit_threshold at --target fitted on one
set (or half of the first, in the eval's hash order) and applied to the other.
Usage: python scripts/gate_replay.py FIRST/records.jsonl SECOND/records.jsonl [--target 0.1]"""
import json
import sys

from evals import metrics as M
from evals.qa import reply
from rag.calibrate import fit_threshold
from rag.reader import MODEL_PREFIX

first, second = ([json.loads(line) for line in open(p)] for p in sys.argv[1:3])
target = float(sys.argv[sys.argv.index("--target") + 1]) if "--target" in sys.argv else 0.10


def reading(r) -> tuple[float, str | None, bool]:
    """(sufficiency, or -1 when the answer could not pass at any bar; the answer; from a reader)."""
    o, tr = r["outputs"], r["outputs"]["trace"]
    text = reply(r)
    ok = text and "answerability" in tr and all(v["supported"] for v in o["verdicts"])
    return (tr["answerability"] if ok else -1.0), text, o.get("model", "").startswith(MODEL_PREFIX)


def rates(recs, reader_bar: float, decoder_bar: float) -> tuple[float, float]:
    """(answerable F1, share of unanswerable answered) with answers passing their path's bar."""
    f1, answered_un = [], []
    for r in recs:
        score, text, by_reader = reading(r)
        given = score >= 0 and score >= (reader_bar if by_reader else decoder_bar)
        if r["inputs"]["answerable"]:
            f1.append(M.f1_score(text, r["inputs"]["answers"]) if given else 0.0)
        else:
            answered_un.append(given)
    return sum(f1) / len(f1), sum(answered_un) / len(answered_un)


print("| reader bar / decoder bar | first: f1 / unanswerable answered | second: f1 / unanswerable answered |")
print("|---|---|---|")
for rb, db in [(0.5, 0.5), (0.5, 0.8), (0.7, 0.5), (0.7, 0.8), (0.8, 0.8)]:
    (f1a, ua), (f1b, ub) = rates(first, rb, db), rates(second, rb, db)
    print(f"| {rb} / {db} | {f1a:.3f} / {ua:.2f} | {f1b:.3f} / {ub:.2f} |")

half = len(first) // 2
print(f"\n| fitted on (target {target}) | threshold | there: f1 / unanswerable answered | applied to | there: f1 / unanswerable answered |")
print("|---|---|---|---|---|")
for fit_name, fit_on, test_name, test in [("first, first half", first[:half], "first, second half", first[half:]),
                                          ("first, second half", first[half:], "first, first half", first[:half]),
                                          ("first", first, "second", second), ("second", second, "first", first)]:
    t = max(0.5, fit_threshold([reading(r)[0] for r in fit_on], [r["inputs"]["answerable"] for r in fit_on], target))
    (f1a, ua), (f1b, ub) = rates(fit_on, t, t), rates(test, t, t)
    print(f"| {fit_name} | {t:.3f} | {f1a:.3f} / {ua:.2f} | {test_name} | {f1b:.3f} / {ub:.2f} |")
