"""Answer selection (RagService.select_answer over HFGenerator.branch) and the prompt cache the
grounding check reuses: branch 0 is greedy decoding; states read behind the cached prompt equal
a full prefill's; after an answer, the check runs only the claim's tokens; the support probe
picks the reply; the decoder's own abstention, Korean questions and RAG_BRANCHES=1 keep the
plain path."""

from __future__ import annotations

import numpy as np
import pytest

from rag.answerability import Probe
from rag.state_judge import StateJudge, claim_text
from rag.verify import LexicalJudge, Verifier

torch = pytest.importorskip("torch")

from test_finetune import tiny_generator  # noqa: E402 - needs torch

QUESTION = "Who designed the Harbor Point Lighthouse?"


def test_branch_zero_is_greedy_and_its_states_match_a_full_prefill():
    gen = tiny_generator()
    msgs = [{"role": "user", "content": "Who built the lighthouse?"}]
    b = gen.branch(msgs, 3, 5, [1], [1, 2], claim_text)
    ids = gen.encode(msgs)
    with torch.inference_mode():
        ref = gen.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5,
                                 do_sample=False, pad_token_id=gen.tokenizer.eos_token_id)
    row = ref[0, ids.shape[1]:].tolist()
    row = row[: row.index(gen.tokenizer.eos_token_id)] if gen.tokenizer.eos_token_id in row else row
    assert b.texts[0] == gen.tokenizer.decode(row, skip_special_tokens=True).strip()
    assert len(b.texts) == 3 and b.prompt_tokens == ids.shape[1]
    assert np.allclose(b.prompt_state[1], gen.states(msgs, "", [1])[1], atol=1e-5)
    scored = [(t, s) for t, s in zip(b.texts, b.claim_states) if claim_text(t)]
    assert scored, "the tiny model wrote no text in any branch"
    for text, st in scored:
        full = gen.states(msgs, claim_text(text), [1, 2])
        assert set(st) == {1, 2} and all(np.allclose(st[n], full[n], atol=1e-4) for n in (1, 2))


def test_after_an_answer_the_check_runs_only_the_claims_tokens():
    gen = tiny_generator()
    msgs = [{"role": "user", "content": "Who built the lighthouse?"}]
    lengths = []
    hook = gen.model.register_forward_pre_hook(
        lambda _m, _args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    gen.generate(msgs, 4)
    lengths.clear()
    got = gen.states(msgs, "Thomas Stevenson", [1, 2])
    claim_tokens = len(gen.tokenizer("Thomas Stevenson", add_special_tokens=False)["input_ids"])
    assert lengths == [claim_tokens]  # no second prefill of the prompt
    other = [{"role": "user", "content": "Who painted it?"}]
    gen.states(other, "Thomas Stevenson", [1])  # another prompt: a full prefill
    assert lengths[-1] == gen.encode(other).shape[1] + claim_tokens
    hook.remove()
    fresh = tiny_generator().states(msgs, "Thomas Stevenson", [1, 2])
    assert all(np.allclose(got[n], fresh[n], atol=1e-4) for n in (1, 2))


class BranchGenerator:
    """A decoder stand-in that branches into fixed replies; each reply's claim state is one
    number the test probe turns into its support."""

    name = "branch-fake"

    def __init__(self, replies: dict[str, float]):
        self.replies = replies
        self.streamed = 0

    def branch(self, messages, k, max_new_tokens, prompt_layers, claim_layers, claim):
        from rag.generate import Branches

        texts = tuple(self.replies)[:k]
        states = tuple({n: np.array([self.replies[t]]) for n in claim_layers} for t in texts)
        return Branches(texts, states, {n: np.array([1.0]) for n in prompt_layers}, 10, 0.0)

    def states(self, messages, answer, layers):
        return {n: np.array([self.replies.get(answer, 1.0)]) for n in layers}

    def stream(self, messages, max_new_tokens, tap_layer=None):
        self.streamed += 1
        yield "Margaret Ellison"


def _service(svc, replies):
    gen = BranchGenerator(replies)
    svc._generator = gen
    svc._lazy["answerability"] = None
    svc._lazy["verifier"] = Verifier(LexicalJudge(), 0.5, StateJudge(gen, Probe("branch-fake", 3, (5.0,), 0.0, 0.5, {})))
    svc.settings = svc.settings.model_copy(update={"branches": 3})
    return gen


def test_the_support_probe_picks_the_reply(sample_service):
    _service(sample_service, {"the engineer": 0.1, "Margaret Ellison": 1.0, "granite ledge": -1.0})
    a = sample_service.ask(QUESTION, "default")
    assert not a.abstained and a.text.startswith("Margaret Ellison [")
    assert a.trace["chosen_branch"] == 1 and [b["text"] for b in a.trace["branches"]][0] == "the engineer"
    assert a.verdicts[0].score == pytest.approx(1 / (1 + np.exp(-5.0)))


def test_the_decoders_own_abstention_is_not_overruled(sample_service):
    _service(sample_service, {"I don't know": 0.0, "Margaret Ellison": 1.0})
    a = sample_service.ask(QUESTION, "default")
    assert a.abstained and a.trace["abstain_reason"] == "the model found no answer in the passages"


def test_korean_questions_and_one_branch_keep_the_streamed_greedy_reply(sample_service):
    gen = _service(sample_service, {"the engineer": 0.1, "Margaret Ellison": 1.0})
    sample_service.ask("제주도에서 가장 높은 산은 무엇인가요?", "default")
    assert gen.streamed == 1
    sample_service.settings = sample_service.settings.model_copy(update={"branches": 1})
    a = sample_service.ask(QUESTION, "default")
    assert gen.streamed == 2 and "branches" not in a.trace
