"""Answerability probe: do the passages answer the question? Read off the decoder's own state.

Why: SQuAD-style unanswerable questions come with an on-topic passage, and the 0.5B decoder
copies a plausible span from it; the grounding judge then passes that span, because it *is*
in the passage. What the decoder has understood about the question and the passages is in
its hidden state at the end of the prompt (the position that writes the first answer token),
and whether the context holds the answer is close to linearly readable there (Slobodkin et
al., 2023, "The Curious Case of Hallucinatory (Un)answerability"). So a logistic regression
on that one vector (896 numbers for Qwen2.5-0.5B) gives P(answerable) at no extra model
cost: the vector is captured by a forward hook during the prefill that generation does
anyway (`HFGenerator.stream(..., tap_layer=L)`).

Training (`rag train answerability`, rag.train.probes) reads only shared/data/train: SQuAD 2.0 questions with
the contexts the pipeline itself retrieves from the train corpus (label: the retrieved
passages contain a gold answer), HotpotQA and our Korean set in the fine-tuning prompt format
(rag.train.examples). Layer and regularisation are chosen by cross-validation grouped by
article. The default threshold is the model's decision boundary (0.5); `rag calibrate` fits
one per collection to a stated target or to SQuAD 2.0 F1. The probe belongs to one decoder (+ adapter):
loading checks the name, and a mismatch disables it rather than reading a foreign state.
Limits: fitted on encyclopedic English (+ a little Korean); refit (`rag train answerability`,
then `rag calibrate`) for other corpora or decoders."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.models.weights import TRAINED_DIR


def logistic(z: float) -> float:
    """1 / (1 + e^-z), clipped so that extreme scores cannot overflow."""
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))


@dataclass(frozen=True)
class Probe:
    decoder: str  # the generator name it was fitted on (decoder + adapter)
    layer: int  # hidden state after this many decoder layers (1-based), last prompt position
    weights: tuple[float, ...]  # standardisation folded in: p = sigmoid(w . x + bias)
    bias: float
    threshold: float  # default gate: answer only when P(answerable) reaches it
    fit: dict  # how it was fitted: data counts, CV scores, the threshold's target

    def score(self, state: np.ndarray) -> float:
        z = float(np.dot(np.asarray(self.weights, np.float64), np.asarray(state, np.float64)) + self.bias)
        return logistic(z)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> Probe:
        d = json.loads(Path(path).read_text())
        return cls(d["decoder"], int(d["layer"]), tuple(d["weights"]), float(d["bias"]),
                   float(d["threshold"]), d.get("fit", {}))


def probe_path(generator_name: str, role: str = "answerability") -> Path:
    """role: "answerability" (state at the prompt's end) or "support" (at a claim's end, rag.answer.judge)."""
    return TRAINED_DIR / role / (generator_name.replace("/", "_").replace(":", "_") + ".json")


def load_probe(generator_name: str, role: str = "answerability") -> Probe | None:
    """The shipped probe of `role` fitted on this generator, or None (without an answerability
    probe sufficiency falls back to the judge's support, rag.answer.abstain; without a support probe
    claims go to the cross-encoder judge, rag.answer.verify)."""
    p = probe_path(generator_name, role)
    if not p.exists():
        return None
    probe = Probe.load(p)
    return probe if probe.decoder == generator_name else None
