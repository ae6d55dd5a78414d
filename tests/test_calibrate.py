"""Calibrated abstention: the threshold fit meets its target, is saved with the collection,
and the pipeline reads it back."""

from __future__ import annotations

import json
import random

from rag.answer.abstain import DEFAULT_THRESHOLD, sufficiency, threshold_for
from rag.train.calibrate import best_f1_threshold, calibrate_collection, fit_threshold
from rag.types import Chunk, Hit


def test_fit_threshold_meets_target_and_keeps_coverage():
    rng = random.Random(0)
    scores = [rng.random() * 0.6 for _ in range(100)] + [0.4 + rng.random() * 0.6 for _ in range(100)]
    labels = [False] * 100 + [True] * 100
    for target in (0.0, 0.05, 0.1, 0.5):
        t = fit_threshold(scores, labels, target)
        answered_un = sum(s >= t for s, a in zip(scores, labels) if not a) / 100
        assert answered_un <= target
        # the lowest such threshold: lowering it by a hair would break the target (unless 0)
        if t > 0:
            assert sum(s >= t - 2e-6 for s, a in zip(scores, labels) if not a) / 100 > target
    assert fit_threshold([0.9, -1.0], [True, False], 0.0) == 0.0  # model-abstained items never count


def test_sufficiency_lets_the_reranker_veto_but_never_vouch():
    c = Chunk(1, "d", "x", 0, 1, 0)
    assert sufficiency([Hit(c, 0.25, "reranked")], 1.0) == 0.25  # nothing relevant found: sinks it
    assert sufficiency([Hit(c, 0.95, "reranked")], 0.4) == 0.4  # relevant is not "answers": no lift
    assert sufficiency([Hit(c, 0.016, "fused")], 0.8) == 0.8  # no reranker: support alone


def test_threshold_saved_with_collection(sample_service):
    s = sample_service.settings
    sample_service.store.update_settings("default", abstain_threshold=0.42)
    assert threshold_for(s, sample_service.store, "default") == (0.42, 0.42)  # no caveat band without the model
    assert threshold_for(s.model_copy(update={"abstain_threshold": 0.1}), sample_service.store, "default")[0] == 0.1


def test_a_threshold_fitted_with_the_reader_first_applies_only_to_questions_it_reads(sample_service):
    s = sample_service.settings
    sample_service.store.update_settings("default", abstain_threshold=0.42, calibration={"score": "reader+support"})
    assert threshold_for(s, sample_service.store, "default", reader_first=True)[0] == 0.42
    # a Korean question is scored by another signal: the default applies
    assert threshold_for(s, sample_service.store, "default", reader_first=False)[0] == DEFAULT_THRESHOLD


def test_the_confidence_model_brings_its_bars_unless_the_collection_fitted_its_own(sample_service):
    from rag.answer.confidence import FEATURES, Confidence

    s, store = sample_service.settings, sample_service.store
    model = Confidence((0.0,) * len(FEATURES), 0.0, answer=0.7, caveat=0.3)
    assert threshold_for(s, store, "default", reader_first=True, confidence=model) == (0.7, 0.3)
    assert threshold_for(s, store, "default", reader_first=False, confidence=model) == (DEFAULT_THRESHOLD,) * 2
    store.update_settings("default", abstain_threshold=0.2, calibration={"score": "confidence"})
    assert threshold_for(s, store, "default", reader_first=True, confidence=model) == (0.2, 0.2)  # caveat <= answer


def test_calibrate_collection_fits_and_saves(sample_service, tmp_path):
    qa = [{"qid": "1", "question": "When was the lighthouse built?", "answerable": True},
          {"qid": "2", "question": "What is the capital of the lighthouse keeper's tea planet?", "answerable": False},
          {"qid": "3", "question": "Who first grew tea on Jeju?", "answerable": False}]
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps(q) for q in qa))
    res = calibrate_collection(sample_service, "default", tmp_path, target=0.0)
    assert res["answered_unanswerable_rate"] == 0.0
    saved = sample_service.store.get_collection("default").settings
    assert saved["abstain_threshold"] == res["abstain_threshold"] and saved["calibration"]["target"] == 0.0
    assert sample_service.settings.abstain_threshold is None  # the temporary override was undone


def test_best_f1_threshold_maximises_squad2_f1():
    # answerable items with their answer's F1, unanswerable items: answering them costs 1
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, -1.0]
    answerable = [True, False, True, False, True, True]
    f1s = [1.0, 0.0, 0.5, 0.0, 0.2, 0.0]

    def overall(t):
        return sum((f if s >= t else 0.0) if a else (0.0 if s >= t else 1.0)
                   for s, a, f in zip(scores, answerable, f1s))

    t = best_f1_threshold(scores, answerable, f1s)
    assert overall(t) == max(overall(c) for c in [*scores, 1.0]) == 3.0 and t == 0.9
    # with the first unanswerable item gone, answering down to 0.7 pays
    assert best_f1_threshold([0.9, 0.7], [True, True], [1.0, 0.5]) == 0.7
    assert best_f1_threshold([0.9], [False], [0.0]) > 0.9  # answer nothing
