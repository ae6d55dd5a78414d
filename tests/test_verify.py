"""Grounding check: deterministic fact checks, claim verdicts, policies, the pipeline's verdicts,
and (slow) the shipped judge on a real pair."""

from __future__ import annotations

import pytest

from rag.answer.abstain import ground
from rag.types import Answer, Chunk, Citation, Hit
from rag.answer.verify import LexicalJudge, Verifier, facts, missing_facts

PASSAGE = "The lighthouse was built in 1890 by Thomas Stevenson on the island of Skerry."


def _hit(text=PASSAGE, i=7):
    return Hit(Chunk(i, "d", text, 0, len(text), 0, "src.txt", ""), 0.9, "reranked")


class AlwaysYes:
    name = "yes"

    def support(self, question, claim, passages):
        return [0.99 for _ in passages]


def test_facts_and_missing_facts():
    assert "1890" in facts("It was built in 1890 by Thomas Stevenson")
    assert "Thomas" in facts("It was built by Thomas Stevenson")
    assert missing_facts("built in 1890 by Thomas Stevenson", [PASSAGE]) == []
    assert missing_facts("built in 1891", [PASSAGE]) == ["1891"]
    assert missing_facts("built by Robert Stevenson", [PASSAGE]) == ["Robert"]
    assert missing_facts("9,700,000 people", ["about 9700000 people"]) == []


def test_deterministic_check_overrules_a_confident_judge():
    v = Verifier(AlwaysYes(), 0.5)
    ok = v.verify("When was it built?", "1890 [1]", (Citation(1, 7, "src.txt", ""),), [_hit()])
    bad = v.verify("When was it built?", "1891 [1]", (Citation(1, 7, "src.txt", ""),), [_hit()])
    assert ok.supported and ok.verdicts[0].evidence_chunk_id == 7
    assert not bad.supported and bad.verdicts[0].score <= 0.1


def test_the_evidence_of_a_cited_claim_is_a_passage_it_cites():
    other = "Thomas Stevenson built it in 1890, the records say."
    v = Verifier(LexicalJudge(), 0.5)
    # the uncited passage 1 supports the claim as well as passage 2 does; the claim cites passage 2
    check = v.verify("Who built it?", "Thomas Stevenson built it in 1890 [2]", (Citation(2, 7, "src.txt", ""),),
                     [_hit(other, 8), _hit()])
    assert check.verdicts[0].evidence_chunk_id == 7


def test_each_sentence_is_a_claim_and_drop_keeps_supported_ones():
    v = Verifier(LexicalJudge(), 0.5)
    text = "The lighthouse was built in 1890 [1]. Penguins invented the telescope in Skerry [1]."
    check = v.verify("Tell me about the lighthouse", text, (Citation(1, 7, "s", ""),), [_hit()])
    assert [vd.supported for vd in check.verdicts] == [True, False]
    a = Answer("Tell me about the lighthouse", text, (Citation(1, 7, "s", ""),), (_hit(),), False, "m", {})
    dropped = ground(a, v, "drop", 0.0)
    assert not dropped.abstained and "Penguins" not in dropped.text and "1890" in dropped.text
    abst = ground(a, v, "abstain", 0.0)
    assert abst.abstained and abst.trace["withheld_answer"] == text and len(abst.verdicts) == 2
    assert abst.trace["abstain_code"] == "unsupported" and abst.trace["withheld_citations"][0]["chunk_id"] == 7
    report = ground(a, v, "report", 0.0)
    assert report.text == text and not report.abstained
    # a judge threshold given with the answer replaces the verifier's own
    lenient = ground(a, v, "abstain", 0.0, judge_threshold=0.0)
    assert not lenient.abstained and lenient.trace["judge_threshold"] == 0.0
    assert [vd.supported for vd in lenient.verdicts] == [True, True]


def test_low_sufficiency_abstains_even_when_supported():
    v = Verifier(AlwaysYes(), 0.5)
    weak = Hit(_hit().chunk, 0.01, "reranked")  # the reranker thinks the best passage is off-topic
    a = Answer("When was it built?", "1890 [1]", (Citation(1, 7, "s", ""),), (weak,), False, "m", {})
    out = ground(a, v, "abstain", 0.3)
    assert out.abstained and out.trace["abstain_code"] == "low_confidence" and "sure" in out.trace["abstain_reason"]


def test_pipeline_answers_carry_verdicts(sample_service):
    a = sample_service.ask("When was the lighthouse built?", "default")
    if not a.abstained:
        assert a.verdicts and all(v.supported for v in a.verdicts)
    assert "verify_s" in a.timings or a.abstained


@pytest.mark.slow
def test_trained_judge_separates_right_from_wrong_answer():
    from rag.models.crossencoder import PairScorer, trained_path
    from rag.answer.verify import CrossEncoderJudge

    if not (trained_path("judge") / "adapter_config.json").exists():
        pytest.skip("judge not trained")
    j = CrossEncoderJudge(PairScorer(trained_path("judge"), threads=1))
    q = "Who built the lighthouse on Skerry?"
    right, wrong = j.support(q, "Thomas Stevenson", [PASSAGE])[0], j.support(q, "It was built by the Romans in 1600.", [PASSAGE])[0]
    assert right > wrong


@pytest.mark.slow
def test_merged_judge_scores_as_its_adapter_model(tmp_path):
    """Serving merges the judge's LoRA adapter into the base once (cached, no peft at load);
    its scores are the adapter model's, as training and `rag eval judge` saw it."""
    import numpy as np
    import torch

    from rag.models.crossencoder import PairScorer, base_model, judge_text, trained_path

    q = "Who built the lighthouse on Skerry?"
    pairs = [(judge_text(q, claim), PASSAGE) for claim in ("Thomas Stevenson", "It was built by the Romans in 1600.",
                                                             "In 1844.", "The keeper's wife.")]
    scorer = PairScorer(trained_path("judge"), threads=1, cache_dir=tmp_path, dtype="float32")
    ours = scorer.score(pairs)
    reference = base_model(256)
    reference.load_adapter(str(trained_path("judge")))
    with torch.inference_mode():
        theirs = reference.predict(pairs, activation_fn=torch.nn.Sigmoid(), convert_to_numpy=True, show_progress_bar=False)
    assert np.allclose(ours, theirs, atol=1e-4), (ours, theirs)
    assert len(list(tmp_path.glob("crossencoder-judge-*-merged.safetensors"))) == 1


def test_korean_claims_go_to_the_lexical_judge_not_minilm():
    from pathlib import Path

    from rag.answer.verify import CrossEncoderJudge

    class Boom:
        adapter_dir = Path("judge")

        def score(self, pairs):
            raise AssertionError("MiniLM must not see Hangul")

    j = CrossEncoderJudge(Boom())
    passage = "한라산은 제주도에 있는 산으로 높이는 1,947미터이다."
    assert j.support("한라산의 높이는?", "한라산은 1,947미터이다", [passage])[0] > 0.5
    assert j.support("한라산의 높이는?", "백두산은 서울에 있다", [passage])[0] < 0.5


def test_the_ladder_answers_shows_with_a_caveat_or_abstains():
    from rag.answer.confidence import FEATURES, Confidence

    v = Verifier(AlwaysYes(), 0.5)
    a = Answer("When was it built?", "1890 [1]", (Citation(1, 7, "s", PASSAGE),), (_hit(),), False, "m", {},
               trace={"reader": {"span": "1890", "answerability": 0.0, "unmatched": []}, "answerability": 0.0})

    def model(bias):  # P(right) = logistic(bias): every weight 0
        return Confidence((0.0,) * len(FEATURES), bias, answer=0.8, caveat=0.3)

    sure = ground(a, v, "abstain", 0.8, caveat_threshold=0.3, confidence=model(3.0))  # P 0.95
    assert sure.level == "answered" and sure.text == "1890 [1]" and sure.trace["score"] == "right"
    unsure = ground(a, v, "abstain", 0.8, caveat_threshold=0.3, confidence=model(0.0))  # P 0.5
    assert unsure.level == "caveat" and not unsure.abstained and unsure.citations == a.citations
    assert "50% sure" in unsure.trace["caveat"] and "80% or more" in unsure.trace["caveat"]
    assert unsure.to_dict()["level"] == "caveat"
    low = ground(a, v, "abstain", 0.8, caveat_threshold=0.3, confidence=model(-3.0))  # P 0.05
    assert low.level == "abstained" and low.trace["abstain_code"] == "low_confidence"
    assert "may be wrong" in low.trace["abstain_reason"] and "30% or more" in low.trace["abstain_reason"]
    # a caveat answer is still checked: one the passages do not support is withheld
    wrong = Answer("When was it built?", "1891 [1]", a.citations, a.context, False, "m", {}, trace=a.trace)
    assert ground(wrong, v, "abstain", 0.8, caveat_threshold=0.3, confidence=model(0.0)).level == "abstained"
    # without a confidence model there is no caveat band
    assert ground(a, v, "abstain", 1.01).level == "abstained"
