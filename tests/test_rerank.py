"""Reranking: the fake's ordering, fusion, the pipeline's use of it, Korean routing, and
(slow) the shipped cross-encoder on a real pair."""

from __future__ import annotations

import numpy as np
import pytest

from rag.retrieve.rerank import CrossEncoderReranker, KeywordReranker, reorder
from rag.types import Chunk, Hit


def _hits(texts):
    return [Hit(Chunk(i, f"d{i}", t, 0, len(t), 0, f"s{i}", ""), 1.0 / (i + 1), "fused") for i, t in enumerate(texts)]


def test_keyword_reranker_puts_matching_passage_first():
    hits = _hits(["bananas are yellow", "the lighthouse keeper lit the lamp in 1890", "tea grows on hills"])
    out = KeywordReranker().rerank("When did the lighthouse keeper light the lamp?", hits, 2)
    assert [h.chunk.id for h in out] == [1, 0] or out[0].chunk.id == 1
    assert len(out) == 2 and all(h.stage == "reranked" for h in out)
    assert 0.0 <= out[1].score <= out[0].score <= 1.0


def test_reorder_fusion_interpolates_between_retrieval_and_reranker():
    hits = _hits(["a", "b", "c", "d"])
    scores = [0.1, 0.2, 0.3, 0.9]
    assert [h.chunk.id for h in reorder(hits, scores, 4, 1.0)] == [3, 2, 1, 0]
    assert [h.chunk.id for h in reorder(hits, scores, 4, 0.0)] == [0, 1, 2, 3]
    mixed = [h.chunk.id for h in reorder(hits, scores, 4, 0.5)]
    assert mixed[0] in (0, 3) and sorted(mixed) == [0, 1, 2, 3]


class _Stub:
    """Stands in for PairScorer: scores by passage length, records every call."""

    def __init__(self):
        self.calls = 0
        from pathlib import Path

        self.adapter_dir = Path("reranker")

    def score(self, pairs):
        self.calls += 1
        return np.array([len(b) for _, b in pairs], np.float32) / 100


def test_korean_questions_skip_the_english_cross_encoder():
    stub = _Stub()
    rr = CrossEncoderReranker(stub)
    hits = _hits(["짧다", "제주도는 한국에서 가장 큰 섬이며 한라산이 있다"])
    out = rr.rerank("제주도에는 어떤 산이 있나요?", hits, 2)
    assert stub.calls == 0 and [h.chunk.id for h in out] == [0, 1]  # retrieval order kept
    en = rr.rerank("Which is longest?", _hits(["short", "a much longer passage here"]), 2)
    assert stub.calls == 1 and en[0].chunk.id == 1


def test_pipeline_reranks_before_the_top_k_cut(sample_service):
    on = type(sample_service)(sample_service.settings.model_copy(update={"rerank": "cross-encoder"}))
    hits = on.rank("When was the lighthouse built?", "default", 3)
    assert hits and all(h.stage == "reranked" for h in hits)
    off = type(sample_service)(sample_service.settings.model_copy(update={"rerank": "off"}))
    assert all(h.stage != "reranked" for h in off.rank("When was the lighthouse built?", "default", 3))


def test_korean_question_through_pipeline_does_not_break(sample_service):
    a = sample_service.ask("제주도에서 가장 높은 산은 무엇인가요?", "default")
    assert a.text and (a.abstained or a.citations)


@pytest.mark.slow
def test_trained_reranker_prefers_the_answering_passage():
    from rag.models.crossencoder import PairScorer, trained_path

    if not (trained_path("reranker") / "adapter_config.json").exists():
        pytest.skip("reranker not trained")
    s = PairScorer(trained_path("reranker"), threads=1)
    q = "What year did the Eiffel Tower open?"
    good = "The Eiffel Tower was opened to the public in 1889 for the World's Fair in Paris."
    bad = "The Louvre is the world's most-visited museum and houses the Mona Lisa."
    p = s.score([(q, good), (q, bad)])
    assert p[0] > p[1]


def test_reranker_pairs_do_not_depend_on_the_hash_seed():
    """`rag train reranker` must be reproducible: the pairs (and their order) are the same in
    processes with different string-hash seeds (a set iterated in place once broke this)."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO, SHARED_DATA

    if not (SHARED_DATA / "train" / "hotpotqa").exists():
        pytest.skip("shared train data not present")
    code = ("import hashlib, sys; from pathlib import Path; from rag.train.crossencoder import reranker_pairs; "
            "p = reranker_pairs(Path(sys.argv[1])); "
            "print(hashlib.sha256(repr((p.a, p.b, p.label)).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code, str(SHARED_DATA / "train")], cwd=REPO, check=True,
                              capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": seed}
                              ).stdout.strip() for seed in ("1", "2")}
    assert len(digests) == 1 and len(next(iter(digests))) == 64


def test_reranker_pairs_label_relevance_not_answerability():
    """The reranker learns "this passage answers this question": a SQuAD negative's text never
    holds one of the question's answers (a false negative would teach it to bury the right passage),
    and unanswerable questions are not paired at all (their own, on-topic paragraph labelled
    irrelevant teaches a reranker that the most topical passage is the wrong one)."""
    from rag.train.crossencoder import reranker_pairs
    from rag.jsonl import read_jsonl
    from tests.conftest import SHARED_DATA

    train = SHARED_DATA / "train"
    if not (train / "squad2").exists():
        pytest.skip("shared train data not present")
    rows = list(read_jsonl(train / "squad2" / "qa.jsonl"))
    answers: dict[str, list[str]] = {}  # a question text may be asked of two paragraphs
    for q in rows:
        if q["answerable"]:
            answers.setdefault(q["question"], []).extend(q["answers"])
    questions = {q["question"] for q in rows}
    p = reranker_pairs(train)
    seen = [(a, b, y) for a, b, y in zip(p.a, p.b, p.label) if a in questions]
    assert seen and all(a in answers for a, _, _ in seen)
    negatives = [(a, b) for a, b, y in seen if y == 0.0]
    assert len(negatives) >= 2 * sum(y for _, _, y in seen)  # hard and topical negatives for most
    text = lambda b: b.split(": ", 1)[1].lower()  # noqa: E731 - the passage after its title
    assert not [a for a, b in negatives if any(ans.lower() in text(b) for ans in answers[a])]
