"""The answer confidence behind the ladder: its bars meet their precision targets on the data
they are fitted on, the fit groups folds by article, and the shipped model loads."""

from __future__ import annotations

import random

import numpy as np

from rag.answer.confidence import FEATURES, candidate, load_confidence
from rag.train.confidence import fit_bars, train

READER = "extractive-reader:all-MiniLM-L6-v2"


def test_bars_meet_their_precision_targets():
    rng = np.random.default_rng(0)
    p = rng.random(400)
    right = rng.random(400) < p  # calibrated: P(right) = p
    answer, caveat = fit_bars(p, right)
    assert right[p >= answer].mean() >= 0.85 and (p >= answer).sum() >= 20
    band = (p >= caveat) & (p < answer)
    assert caveat < answer and right[band].mean() >= 0.5
    # the pooled band would reach lower (0.3 here), but no answer below P(right) 0.5 is shown
    assert caveat == 0.5
    low = np.array([0.9] * 30 + [0.1] * 30)  # a band of right answers above many wrong ones
    assert fit_bars(low, np.array([True] * 30 + [True] * 20 + [False] * 10))[1] > 0.1  # two in three right at 0.1: not shown
    # the lowest bars that do: with scores of their own, one step lower breaks the band's target
    p2 = 0.5 + p / 2
    answer2, caveat2 = fit_bars(p2, right)
    below = np.sort(p2[p2 < caveat2])[-1]
    assert caveat2 > 0.5 and right[(p2 >= below) & (p2 < answer2)].mean() < 0.5
    assert fit_bars(np.array([0.9] * 30), np.array([False] * 30)) == (1.01, 1.01)  # never right: no level shows it


def _record(i, title, answerable, reader_p, answer, gold):
    return {"inputs": {"question": f"question {i}?", "answers": [gold] if answerable else [],
                       "answerable": answerable, "title": title},
            "outputs": {"abstained": False, "answer_plain": answer, "model": READER, "verdicts": [],
                        "trace": {"reader": {"span": answer, "answerability": reader_p, "unmatched": []},
                                  "answerability": reader_p}}}


def test_training_reports_out_of_fold_and_ships_a_model(tmp_path):
    rng = random.Random(0)
    records = []
    for i in range(240):
        p = rng.random()
        right = rng.random() < p
        records.append(_record(i, f"article {i % 6}", rng.random() < 0.7 or right, p,
                               "1890" if right else "1891", "1890"))
    model, report = train(records, READER)
    assert report["articles"] == 6 and report["rated_answers"] == 240
    assert report["out_of_fold_auroc"] > 0.7  # the reader's P carries the signal
    oof = report["out_of_fold"]
    assert 0.0 < oof["coverage"] <= 1.0 and oof["answer_precision_ci95"][0] <= oof["answer_precision"]
    model.save(tmp_path / "confidence.json")
    loaded = load_confidence(tmp_path / "confidence.json")
    assert loaded.answer == model.answer and loaded.weights == model.weights


def test_each_language_has_its_own_model():
    rng = random.Random(1)
    records = []
    for i in range(240):
        p = rng.random()
        right = rng.random() < p
        r = _record(i, f"article {i % 6}", True, p, "1890" if right else "1891", "1890")
        if i % 2:
            r["inputs"]["question"] = f"질문 {i}은 무엇인가?"
        records.append(r)
    _, english = train(records, READER)
    _, korean = train(records, READER, korean=True)
    assert english["records"] == korean["records"] == 120 and english["rated_answers"] == korean["rated_answers"] == 120


def test_candidate_is_the_shown_or_withheld_answer():
    shown = _record(0, "a", True, 0.9, "1890", "1890")
    assert candidate(shown) == "1890"
    withheld = {"outputs": {"abstained": True, "trace": {"abstain_code": "low_confidence", "withheld_answer": "1890 [1]"}}}
    assert candidate(withheld) == "1890"
    rejected = {"outputs": {"abstained": True, "trace": {"abstain_code": "unsupported", "withheld_answer": "x [1]"}}}
    assert candidate(rejected) is None


def test_the_shipped_model_loads_with_its_bars():
    model = load_confidence()
    assert model is not None and len(model.weights) == len(FEATURES)
    assert 0.0 < model.caveat <= model.answer <= 1.01 and model.fit["articles"] >= 5


def test_the_shipped_korean_model_loads_with_its_bars():
    from rag.answer.confidence import KOREAN_PATH

    model = load_confidence(KOREAN_PATH)
    assert model is not None and model.name == "confidence-ko" and load_confidence().name == "confidence"
    assert 0.5 <= model.caveat <= model.answer <= 1.01 and model.fit["articles"] >= 5
