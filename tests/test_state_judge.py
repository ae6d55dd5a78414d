"""The support probe (rag.answer.judge): the decoder's state is read at the claim's last token,
the probe decides English claims while Korean ones keep the per-passage judge, the training
items are built as the verifier builds claims, and the pipeline wires it in."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag.answer.answerability import Probe
from rag.answer.judge import StateJudge, claim_text, make_state_judge
from rag.answer.verify import LexicalJudge, Verifier
from rag.train.probes import halueval_items, squad_pair_items
from rag.types import Chunk, Hit

torch = pytest.importorskip("torch")

from test_finetune import tiny_generator  # noqa: E402 - needs torch

PASSAGE = "The lighthouse was built in 1890 by Thomas Stevenson on the island of Skerry."


def _hit(text=PASSAGE):
    return Hit(Chunk(7, "d", text, 0, len(text), 0, "src.txt", "Skerry"), 0.9, "fused")


def test_states_are_read_at_the_last_token_of_the_claim():
    gen = tiny_generator()
    msgs = [{"role": "user", "content": "Who built it?"}]
    prompt = gen.encode(msgs)
    claim = gen.tokenizer("Thomas Stevenson", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        ref = gen.model(input_ids=torch.cat([prompt, claim], 1), output_hidden_states=True).hidden_states
        ref_prompt = gen.model(input_ids=prompt, output_hidden_states=True).hidden_states
    got = gen.states(msgs, "Thomas Stevenson", [1, 2])
    # hidden_states[1] is layer 1's output (the last entry is after the final norm)
    assert np.allclose(got[1], ref[1][0, -1].numpy(), atol=1e-5) and set(got) == {1, 2}
    assert np.allclose(gen.states(msgs, "", [1])[1], ref_prompt[1][0, -1].numpy(), atol=1e-5)
    assert not np.allclose(got[1], gen.states(msgs, "the Romans", [1])[1])  # the claim changes the state


class FixedState:
    """A decoder stand-in whose state says 'supported' unless the claim names the Romans."""

    name = "fixed"

    def __init__(self):
        self.calls = []

    def states(self, messages, answer, layers):
        self.calls.append(answer)
        return {layers[0]: np.array([-1.0 if "Romans" in answer else 1.0])}


def test_the_state_judge_decides_english_claims_and_korean_ones_keep_the_passage_judge():
    gen = FixedState()
    judge = StateJudge(gen, Probe("fixed", 3, (5.0,), 0.0, 0.5, {}))
    v = Verifier(LexicalJudge(), 0.5, judge)
    hits = [_hit()]
    ok = v.verify("Who built it?", "It was built by Stevenson.", (), hits)
    bad = v.verify("Who built it?", "It was built by the Romans.", (), hits)
    assert ok.supported and ok.verdicts[0].score > 0.99 and ok.verdicts[0].evidence_chunk_id == 7
    assert not bad.supported and bad.verdicts[0].score < 0.01
    assert gen.calls == ["It was built by Stevenson", "It was built by the Romans"]  # claims without the period
    # the deterministic checks still overrule it: 1600 is in no passage
    assert not v.verify("When?", "It was built in 1600.", (), hits).supported
    ko = "한라산은 제주도에 있는 산이다."
    assert v.verify("한라산은 어디에 있나?", "한라산은 제주도에 있는 산이다", (), [_hit(ko)]).supported
    assert len(gen.calls) == 3  # the Korean claim never reached the English probe


def test_make_state_judge_needs_a_probe_fitted_on_this_decoder(tmp_path, monkeypatch):
    import rag.answer.answerability as ab
    from rag.answer.prompt import ScriptedGenerator

    monkeypatch.setattr(ab, "TRAINED_DIR", tmp_path)
    assert make_state_judge(FixedState()) is None  # no probe shipped
    Probe("fixed", 3, (1.0,), 0.0, 0.5, {}).save(ab.probe_path("fixed", "support"))
    assert make_state_judge(FixedState()).probe.layer == 3
    assert make_state_judge(ScriptedGenerator()) is None  # the fake cannot expose states
    assert ab.load_probe("fixed") is None  # the answerability role is a different file


def test_training_items_pair_right_and_wrong_claims(tmp_path):
    (tmp_path / "halueval").mkdir()
    (tmp_path / "squad2").mkdir()
    rows = [{"id": f"h{i}", "question": f"Q{i}?", "knowledge": "K.", "right_answer": "Delhi",
             "hallucinated_answer": "It is in Mumbai."} for i in range(3)]
    (tmp_path / "halueval" / "halueval_qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus = [{"doc_id": "p1", "title": "Skerry", "text": PASSAGE}]
    qa = [{"qid": "a", "question": "Who built it?", "answers": ["Thomas Stevenson"], "answerable": True,
           "doc_id": "p1", "title": "Skerry"},
          {"qid": "b", "question": "When was it built?", "answers": ["1890", "in 1890"], "answerable": True,
           "doc_id": "p1", "title": "Skerry"},
          {"qid": "c", "question": "Who painted it?", "answers": [], "answerable": False,
           "doc_id": "p1", "title": "Skerry"}]
    (tmp_path / "squad2" / "corpus.jsonl").write_text(json.dumps(corpus[0]) + "\n")
    (tmp_path / "squad2" / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa))
    h = halueval_items(tmp_path, 2)
    assert [(i.label, i.answer) for i in h[:2]] == [(1, "Delhi"), (0, "It is in Mumbai")]
    assert len(h) == 4 and h[0].group == h[1].group != h[2].group
    s = squad_pair_items(tmp_path, 10)
    by_q = {}
    for it in s:
        by_q.setdefault(it.messages[1]["content"].rsplit("Question: ", 1)[1], []).append((it.label, it.answer))
    # each answerable question: its shortest gold answer, and the other question's answer as a wrong claim
    assert sorted(by_q["Who built it?"]) == [(0, "1890"), (1, "Thomas Stevenson")]
    assert sorted(by_q["When was it built?"]) == [(0, "Thomas Stevenson"), (1, "1890")]
    assert "Who painted it?" not in by_q and "[1] Skerry: The lighthouse" in s[0].messages[1]["content"]
    assert claim_text("  Delhi . ") == "Delhi"


def test_the_pipeline_verifier_uses_the_decoders_probe(sample_service, tmp_path, monkeypatch):
    import rag.answer.answerability as ab
    from rag.answer.verify import make_verifier

    monkeypatch.setattr(ab, "TRAINED_DIR", tmp_path)
    gen = FixedState()
    Probe("fixed", 3, (1.0,), 0.0, 0.5, {}).save(ab.probe_path("fixed", "support"))
    real = sample_service.settings.model_copy(update={"backend": "real"})
    monkeypatch.setattr("rag.models.crossencoder.trained_path", lambda role: tmp_path / "none")  # no cross-encoder either
    with pytest.warns(UserWarning, match="no trained judge"):
        v = make_verifier(real, gen)
    assert v.state_judge is not None and v.name == "decoder-state:fixed"
