"""The grounding judge that reads the decoder's own state after a claim (English claims).

Why: the cross-encoder judge (LoRA on MiniLM, rag.models.crossencoder) could be trained for only 170
steps on a 2-core CPU and reached balanced accuracy 0.80 on the dev hallucination set. The
decoder has read the same passages and question in the pipeline's own prompt; whether the
claim that follows them is supported is close to linearly readable from its hidden state at
the claim's last token (the same kind of probe as rag.answer.answerability, at the claim instead of
the prompt's end: hallucination and error detection from the answer's own tokens, Orgad et
al. 2024, "LLMs Know More Than They Show"). A logistic regression on that one vector (896
numbers for Qwen2.5-0.5B) gives P(supported). Cost: a forward pass of the claim's tokens behind
the prompt the decoder has just answered (its cached keys and values); one prefill of the
prompt plus the claim where no answer preceded (rag eval judge).

Training (`rag train support`, rag.train.probes) reads only shared/data/train: HaluEval rows (the right answer
= supported, the hallucinated one = not) and SQuAD 2.0 paragraphs (a question's gold answer =
supported; the answer of another question on the same paragraph = not: a span copied from
the passage that answers something else, which no style cue separates). Claims are
normalised as rag.answer.verify makes them (no trailing period). Layer and regularisation are
chosen by cross-validation grouped by question.

Limits: fitted on English encyclopedic text; Korean claims keep the cross-encoder/lexical
route. HaluEval's hallucinated answers are mostly full sentences and its right ones short
phrases, so its dev set can be separated by answer length alone (docs/results.md shows that
baseline next to the judge); the SQuAD pairs are in the training data so that the probe must
read the claim, and the results report the short answers separately."""

from __future__ import annotations

from collections.abc import Sequence

from rag.answer.answerability import Probe, load_probe
from rag.answer.prompt import build_messages
from rag.types import Chunk, Hit

ROLE = "support"


def claim_text(claim: str) -> str:
    """A claim as the verifier and the training data give it to the decoder."""
    return " ".join(claim.split()).strip(" .")


def passage_hit(text: str, title: str = "") -> Hit:
    return Hit(Chunk(0, "", text, 0, len(text), 0, "", title), 1.0, "fused")


class StateJudge:
    """P(supported) of a claim given the question and the whole context."""

    def __init__(self, generator, probe: Probe):
        self.generator = generator
        self.probe = probe
        self.name = "decoder-state:" + probe.decoder

    def claim_support(self, question: str, claim: str, hits: Sequence[Hit]) -> float:
        # Right after the decoder answered this prompt, only the claim's tokens run (HFGenerator.states).
        state = self.generator.states(build_messages(question, hits), claim_text(claim), [self.probe.layer])
        return self.probe.score(state[self.probe.layer])


def make_state_judge(generator) -> StateJudge | None:
    """The state judge for this generator, when a support probe was fitted on it (and the
    generator can expose its states: the scripted fake cannot)."""
    if not hasattr(generator, "states"):
        return None
    probe = load_probe(generator.name, ROLE)
    return StateJudge(generator, probe) if probe is not None else None
