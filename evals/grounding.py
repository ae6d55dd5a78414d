"""Grounding metrics for `rag eval qa` (a METRIC_HOOKS entry of evals.qa) and its HTML report.

From the verdicts and trace each answer carries (rag.answer.verify, rag.answer.abstain):
- hallucination_rate: share of answered questions with any claim the judge finds unsupported;
- faithfulness: mean share of supported claims over answered questions;
- citation_precision: share of the answers' citations whose passage supports a claim citing it;
- hallucination_rate_before_check: the same share over every answer the decoder gave, before
  the grounding check and calibrated abstention withheld some. With the "abstain" policy the
  answered rate is low by construction (the same judge gates and grades), so this one, and
  answered_unanswerable_rate against gold labels, are the informative numbers;
- risk_coverage: coverage and answer precision if only answers scoring at least each bar were
  shown, over every candidate answer (given, or withheld for low confidence) and the score the
  ladder grades it by (the trace's `sufficiency`: P(right) for English answers).
Pure over records; no model is loaded here."""

from __future__ import annotations

from pathlib import Path

from rag.answer.confidence import candidate, is_right, record_level
from rag.metrics import coverage_curve


def _unsupported(rec: dict) -> bool:
    return any(not v["supported"] for v in rec["outputs"].get("verdicts") or [])


def qa_metrics(records: list[dict], out: Path | None = None) -> dict:
    gen = [r for r in records if "outputs" in r and "verdicts" in r["outputs"]]
    checked = [r for r in gen if r["outputs"]["verdicts"]]  # the decoder answered and the check ran
    if not checked:
        return {}
    answered = [r for r in checked if not r["outputs"]["abstained"]]
    result: dict = {"hallucination_rate": _rate([_unsupported(r) for r in answered]),
                    "faithfulness": _rate([sum(v["supported"] for v in r["outputs"]["verdicts"]) /
                                           len(r["outputs"]["verdicts"]) for r in answered]),
                    "hallucination_rate_before_check": _rate([_unsupported(r) for r in checked])}
    hits = total = 0
    for r in answered:
        trace = r["outputs"].get("trace", {})
        support, t = trace.get("citation_support", {}), trace.get("judge_threshold", 0.5)
        for c in r["outputs"].get("citations", []):
            total += 1
            hits += support.get(str(c["marker"]), 0.0) >= t
    result["citation_precision"] = hits / total if total else None
    scored = candidates(records)
    result["risk_coverage"] = coverage_curve([p for p, _, _ in scored], [r["inputs"]["answerable"] for _, r, _ in scored],
                                             [right for _, _, right in scored],
                                             sum(bool(r["inputs"]["answerable"]) for r in records))
    if out is not None:
        write_qa_report(Path(out), records, result)
    return result


def _rate(values) -> float | None:
    values = list(values)
    return float(sum(values)) / len(values) if values else None


def candidates(records: list[dict]) -> list[tuple[float, dict, bool]]:
    """(score, record, right) for every record with a candidate answer and a ladder score; right:
    an answerable question whose candidate has F1 >= RIGHT_F1 (withheld ones included)."""
    out = []
    for r in records:
        answer, trace = candidate(r), r["outputs"].get("trace", {})
        if answer and "sufficiency" in trace:
            out.append((float(trace["sufficiency"]), r, is_right(r, answer)))
    return out


def write_qa_report(out: Path, records: list[dict], grounding: dict) -> Path:
    """Risk-coverage over the ladder's score (risk: a candidate answer that is wrong, including
    any answer to an unanswerable question), score histograms for answerable vs unanswerable
    questions, per-item table."""
    from evals.report import risk_coverage, write_report

    scored = candidates(records)
    suff = [p for p, _, _ in scored]
    bad = [not right for _, _, right in scored]
    hists = {"answerable": [p for p, r, _ in scored if r["inputs"]["answerable"]],
             "unanswerable": [p for p, r, _ in scored if not r["inputs"]["answerable"]]}
    rows = []
    for r in records:
        o, tr = r["outputs"], r["outputs"].get("trace", {})
        rows.append({"id": r["id"], "question": r["inputs"]["question"],
                     "gold": " | ".join(r["inputs"]["answers"]) or "(unanswerable)",
                     "answer": o.get("answer", ""), "withheld": tr.get("withheld_answer", ""),
                     "level": record_level(r),
                     "sufficiency": tr.get("sufficiency", ""),
                     "f1": r["scores"].get("f1", ""), "claims": o.get("verdicts") or []})
    return write_report(out / "report.html", "QA evaluation: grounding and abstention", grounding,
                        risk_coverage(suff, bad), hists, "sufficiency score", rows,
                        ["id", "question", "gold", "answer", "withheld", "level", "sufficiency", "f1"])
