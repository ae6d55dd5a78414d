"""How sure the system is that an English answer is right: one calibrated probability per
answer, P(right), and the ladder's two bars on it.

The signals are the ones every answer already has: which path wrote it (the extractive
reader's span, or the decoder after the reader declined), the reader's P(answerable) for its
best span, whether the question's names were missing near that span, the decoder's
answerability probe, whether the decoder's answer agrees with the reader's span (two
independent answerers; weighted by the reader's P, since a span the reader itself calls "no
answer" is weak support: out of fold on train, AUROC 0.758 -> 0.767), the grounding check's support for the weakest claim, and the answer's
length. A logistic regression over them is fitted on the pipeline's own answers to train
questions, labelled right (F1 >= 0.5 against gold) or wrong (including any answer to an
unanswerable question), with folds grouped by article (rag.train.confidence). Its bars are
fitted the same way: `answer`, the lowest P(right) above which answers were right at least
TARGET_PRECISION of the time; `caveat`, the lowest P(right) below `answer` above which they were
still right at least CAVEAT_PRECISION of the time, and not below CAVEAT_PRECISION itself (an
answer the model calls more likely wrong than right is not shown): shown, marked low confidence.

Korean answers have a model of their own (KOREAN_PATH), the same signals fitted on the
pipeline's answers to held-out KorQuAD train articles (`rag train confidence --lang ko`);
without it they keep the decoder's probe and its bar (rag.answer.abstain)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from rag.answer.answerability import logistic
from rag.answer.prompt import strip_markers
from rag.metrics import RIGHT_F1, f1_score, f1_single
from rag.models.weights import TRAINED_DIR

PATH = TRAINED_DIR / "confidence.json"
KOREAN_PATH = TRAINED_DIR / "confidence-ko.json"
TARGET_PRECISION = 0.85  # a confident answer is right at least this often (on train folds)
CAVEAT_PRECISION = 0.5  # a low-confidence answer is shown when it is more often right than wrong
FEATURES = ("reader_path", "reader_p_on_reader_path", "reader_p_on_decoder_path", "probe", "agree_x_reader_p",
            "names_missing", "support", "log_words")


def features(trace: dict, answer: str, reader_path: bool, support: float) -> list[float]:
    """The signals of one answer, in FEATURES order. trace: the answer's trace (its "reader"
    entry and, on the decoder path, the probe's "answerability"); support: the grounding
    check's P(supported) for the weakest claim."""
    reader = trace.get("reader") or {}
    reader_p = float(reader.get("answerability") or 0.0)
    span = reader.get("span") or ""
    probe = 0.0 if reader_path else float(trace.get("answerability") or 0.0)
    agree = float(not reader_path and bool(span) and f1_single(answer, span) >= 0.5)
    return [float(reader_path), reader_p * reader_path, reader_p * (not reader_path), probe, agree * reader_p,
            float(bool(reader.get("unmatched"))), float(support), math.log1p(len(answer.split()))]


@dataclass(frozen=True)
class Confidence:
    weights: tuple[float, ...]
    bias: float
    answer: float  # P(right) at or above which an answer is given as confident
    caveat: float  # P(right) at or above which (below `answer`) it is shown marked low confidence
    name: str = "confidence"
    fit: dict = field(default_factory=dict, compare=False)

    def score(self, trace: dict, answer: str, reader_path: bool, support: float) -> float:
        return logistic(self.bias + sum(w * x for w, x in zip(self.weights, features(trace, answer, reader_path, support))))

    def save(self, path: Path = PATH) -> None:
        path.write_text(json.dumps({"features": FEATURES, "weights": self.weights, "bias": self.bias,
                                    "answer": self.answer, "caveat": self.caveat, "fit": self.fit}, indent=1))


def load_confidence(path: Path = PATH) -> Confidence | None:
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    if tuple(d["features"]) != FEATURES:  # fitted on other signals: refit (rag train confidence)
        return None
    # the name keys thresholds `rag calibrate` stores: one model's are not reused for another's
    return Confidence(tuple(d["weights"]), d["bias"], d["answer"], d["caveat"], name=path.stem, fit=d.get("fit", {}))


def candidate(record: dict) -> str | None:
    """The answer an evaluation record's question got, or the one the gates withheld (without citation
    markers); None when the model itself gave none or the grounding check rejected it (those
    are abstentions whatever the confidence says)."""
    o, trace = record["outputs"], record["outputs"]["trace"]
    if not o["abstained"]:
        return o["answer_plain"]
    if trace.get("abstain_code") != "low_confidence" or "withheld_answer" not in trace:
        return None
    return strip_markers(trace["withheld_answer"])


def is_right(record: dict, answer: str) -> bool:
    """An evaluation record's answer is right: its question is answerable and the answer has
    F1 >= RIGHT_F1 against a gold answer (any answer to an unanswerable question is wrong)."""
    return bool(record["inputs"]["answerable"]) and f1_score(answer, record["inputs"]["answers"]) >= RIGHT_F1


def record_level(record: dict) -> str:
    """answered / caveat / abstained (records written before the levels existed: answered or abstained)."""
    o = record["outputs"]
    return o.get("level") or ("abstained" if o["abstained"] else "answered")
