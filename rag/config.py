"""All configuration in one validated settings class (env prefix RAG_).

Built once at an entry point (CLI, API start-up) and passed down; nothing reads the
environment anywhere else."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.errors import ConfigError

Backend = Literal["real", "fake"]
EmbedderName = Literal["e5", "minilm", "hash"]
DecoderName = Literal["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"]


class Settings(BaseSettings):
    """What a user sets. Everything else that was once a knob is a named constant beside the code
    it tunes (e.g. rag.answer.reader.THRESHOLD, rag.retrieve.rerank.FUSION); README has the table."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    # -- storage ------------------------------------------------------------------------------
    data_dir: Path = Path("./var")
    database_url: str | None = None  # default: sqlite:///<data_dir>/rag.db
    # Joined and converted decoder weights (~1 GB each); shareable between data folders.
    model_dir: Path | None = None  # default: <data_dir>/models

    # -- models -------------------------------------------------------------------------------
    # "fake" swaps every model for a deterministic stand-in (tests, demos without models).
    backend: Backend = "real"
    # multilingual-e5-small is the default because Korean must work; MiniLM is English-only.
    embedder: EmbedderName = "e5"
    decoder: DecoderName = "qwen2.5-coder-0.5b"
    # The decoder's weights as llama.cpp serves them: as shipped (a Q4_K/Q5_0 mix), or
    # re-quantized once to Q4_0: dev squad2 answer p50 3.7 -> 2.7 s, F1 0.380 -> 0.355 with the
    # probes fitted on the shipped weights (docs/results.md), so not the default.
    decoder_quant: Literal["shipped", "q4_0"] = "shipped"
    adapter: str = "default"  # "default" = the adapter shipped for the decoder, "none", or a path
    threads: int = Field(default=0, ge=0)  # 0 = every core the process may use
    # What the torch models (the readers; a decoder with a LoRA adapter) compute in; auto =
    # bfloat16 where the CPU has bf16 instructions, float32 where torch would emulate it
    # (rag.models.weights.compute_dtype). llama.cpp picks its own kernels from the CPU.
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"

    # -- ingest -------------------------------------------------------------------------------
    chunk_size: int = Field(default=800, ge=100, le=8000)  # characters
    chunk_overlap: int = Field(default=120, ge=0)
    # Extract entities into the knowledge graph at ingest, and let the router expand multi-hop
    # questions through it (rag.retrieve.graph).
    graph: bool = True

    # -- answering ----------------------------------------------------------------------------
    top_k: int = Field(default=4, ge=1, le=50)  # passages the answer is read from
    # Our cross-encoder over the top fused hits, or off. Off by default: it ranks below
    # retrieval order alone and about even fused with it, for ~1 s per query (docs/results.md).
    rerank: Literal["cross-encoder", "off"] = "off"
    # What to do with answer sentences the judge finds unsupported: drop them, abstain, or
    # only record verdicts ("report" keeps the text; "off" skips the check).
    verify: Literal["drop", "abstain", "report", "off"] = "abstain"
    # Calibrated abstention: answer only when the sufficiency score reaches this threshold.
    # None = the collection's fitted value (rag calibrate), else the shipped default.
    abstain_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    max_question_chars: int = Field(default=2000, ge=10)

    # -- SQL databases (rag.sql) ----------------------------------------------------------------
    sql_decoder: DecoderName | None = None  # the decoder that writes SQL (None = RAG_DECODER)
    sql_timeout_s: float = Field(default=5.0, gt=0, le=300)
    sql_max_rows: int = Field(default=1000, ge=1, le=100_000)

    # -- REST API (rag.api) and front end (ui/) ------------------------------------------------
    # The admin key bootstraps key management; only its hash is stored. require_auth=False is
    # for a single-user laptop only.
    admin_key: SecretStr | None = None
    require_auth: bool = True
    max_upload_mb: float = Field(default=20.0, gt=0)
    max_upload_files: int = Field(default=50, ge=1)
    rate_limit_per_minute: int = Field(default=120, ge=1)  # per API key
    # Answers computed at once, answers waiting (each at most answer_wait_s); beyond: 503 with
    # Retry-After (rag.api.admission). One at a time suits a laptop's few cores.
    answer_slots: int = Field(default=1, ge=1, le=64)
    answer_queue: int = Field(default=8, ge=0, le=1000)
    answer_wait_s: float = Field(default=30.0, gt=0, le=600)
    warm_models: bool = True  # load models in the API lifespan instead of on the first request
    api_url: str = "http://127.0.0.1:8000"  # where `rag ui` finds the API
    api_key: SecretStr | None = None  # the key `rag ui` sends (default: the admin key)

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info):  # noqa: ANN001
        size = info.data.get("chunk_size", 800)
        if v >= size:
            raise ConfigError(f"RAG_CHUNK_OVERLAP ({v}) must be smaller than RAG_CHUNK_SIZE ({size})")
        return v

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'rag.db').resolve()}"

    @property
    def models_path(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def collections_dir(self) -> Path:
        return self.data_dir / "collections"

    def effective_embedder(self) -> str:
        return "hash" if self.backend == "fake" else self.embedder
