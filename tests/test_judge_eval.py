"""`rag eval judge` and the grounding metrics of `rag eval qa` on the fake backend:
metrics agree with sklearn, runs resume, the report is self-contained."""

from __future__ import annotations

import json
from types import SimpleNamespace

from evals import judge as J
from evals.grounding import qa_metrics

CTX = "The Oberoi Group is a hotel company with its head office in Delhi. It was founded in 1934."
ITEMS = [
    {"id": "a", "question": "Where is the head office?", "context": CTX, "answer": "Delhi", "hallucinated": False},
    {"id": "b", "question": "Where is the head office?", "context": CTX, "answer": "Mumbai", "hallucinated": True},
    {"id": "c", "question": "When was it founded?", "context": CTX, "answer": "1934", "hallucinated": False},
    {"id": "d", "question": "When was it founded?", "context": CTX, "answer": "It was founded in 1956 by Raj.",
     "hallucinated": True},
]


def _run(settings, tmp_path, limit=None):
    data = tmp_path / "h.jsonl"
    data.write_text("\n".join(json.dumps(i) for i in ITEMS))
    return J.run(settings, SimpleNamespace(data=data, out=tmp_path / "out", limit=limit))


def test_eval_judge_metrics_records_and_report(settings, tmp_path):
    m = _run(settings, tmp_path)
    assert m["n"] == 4 and m["balanced_accuracy"] == 1.0 and m["auroc"] == 1.0  # numbers/names decide here
    recs = [json.loads(line) for line in open(tmp_path / "out" / "records.jsonl")]
    assert [r["outputs"]["predicted_hallucinated"] for r in recs] == [False, True, False, True]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<svg" in html and "Mumbai" in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")


def test_eval_judge_resumes_and_is_reproducible(settings, tmp_path):
    first = _run(settings, tmp_path, limit=2)
    path = tmp_path / "out" / "records.jsonl"
    assert len(path.read_text().splitlines()) == 2
    with open(path, "a") as f:
        f.write('{"id": "cut')  # an interrupted write
    second = _run(settings, tmp_path)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and len({json.loads(x)["id"] for x in lines}) == 4
    again = _run(settings, tmp_path)
    assert {k: v for k, v in second.items()} == {k: v for k, v in again.items()} and first["n"] == 2


def test_qa_grounding_metrics():
    def rec(abstained, verdicts, cites, support):
        return {"id": "x", "inputs": {"question": "q", "answers": ["a"], "answerable": True}, "scores": {"f1": 1.0},
                "outputs": {"abstained": abstained, "answer_plain": "" if abstained else "a", "verdicts": verdicts,
                            "citations": cites,
                            "trace": {"citation_support": support, "judge_threshold": 0.5, "sufficiency": 0.7}}}
    good = {"claim": "a", "supported": True, "score": 0.9, "evidence_chunk_id": 1}
    bad = {"claim": "b", "supported": False, "score": 0.1, "evidence_chunk_id": 1}
    records = [rec(False, [good], [{"marker": 1}], {"1": 0.9}),
               rec(False, [good, bad], [{"marker": 1}, {"marker": 2}], {"1": 0.9, "2": 0.2}),
               rec(True, [bad], [], {})]
    m = qa_metrics(records)
    assert m["hallucination_rate"] == 0.5 and m["faithfulness"] == 0.75
    assert abs(m["hallucination_rate_before_check"] - 2 / 3) < 1e-9 and abs(m["citation_precision"] - 2 / 3) < 1e-9
    # the two given answers are right and scored 0.7; the abstention has no candidate answer
    by_bar = {row["bar"]: row for row in m["risk_coverage"]}
    assert by_bar[0.7] == {"bar": 0.7, "answers": 2, "coverage": 0.6667, "answer_precision": 1.0}
    assert by_bar[0.8]["answers"] == 0
