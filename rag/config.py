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
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = None  # default: sqlite:///<data_dir>/rag.db
    # Joined and converted decoder weights (~1 GB each); shareable between data folders.
    model_dir: Path | None = None  # default: <data_dir>/models

    # "fake" swaps every model for a deterministic stand-in (tests, demos without models).
    backend: Backend = "real"
    # multilingual-e5-small is the default because Korean must work; MiniLM is English-only.
    embedder: EmbedderName = "e5"
    decoder: DecoderName = "qwen2.5-coder-0.5b"
    adapter: str = "default"  # "default" = the adapter shipped for the decoder, "none", or a path
    threads: int = Field(default=0, ge=0)  # 0 = every core the process may use
    # What the decoder and readers compute in; auto = bfloat16 where the CPU has bf16
    # instructions, float32 where torch would emulate it (rag.models.compute_dtype).
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"

    chunk_size: int = Field(default=800, ge=100, le=8000)  # characters
    chunk_overlap: int = Field(default=120, ge=0)
    embed_batch: int = Field(default=32, ge=1)

    top_k: int = Field(default=4, ge=1, le=50)  # passages given to the decoder
    candidates: int = Field(default=30, ge=1)  # per retriever, before fusion
    rrf_k: int = 60
    max_new_tokens: int = Field(default=48, ge=1, le=1024)
    # Answer selection (RagService.select_answer): the decoder's replies starting with its
    # `branches` most likely first tokens; the support probe keeps the best-supported one.
    # English questions with a support probe only. 1 = plain greedy decoding, streamed: the
    # default, because the gain measured on train (answer-all F1 0.431 -> 0.511 with 3) did
    # not hold on dev squad2 (0.467 -> 0.456; docs/results.md).
    branches: int = Field(default=1, ge=1, le=8)
    max_question_chars: int = Field(default=2000, ge=10)
    # SQL tool (rag/sql*.py): the decoder that writes SQL (None = RAG_DECODER) and per-query limits.
    sql_decoder: DecoderName | None = None
    sql_timeout_s: float = Field(default=5.0, gt=0, le=300)
    sql_max_rows: int = Field(default=1000, ge=1, le=100_000)
    sql_max_new_tokens: int = Field(default=200, ge=16, le=1024)
    # RAG_GRAPH=on/off: extract entities into the knowledge graph at ingest, and let the
    # router expand multi-hop questions through it (rag/graph_retrieve.py).
    graph: bool = True
    # Reranking and the grounding check (rag/rerank.py, rag/verify.py, rag/calibrate.py).
    # rerank: our cross-encoder over the top `rerank_candidates` fused hits, "off", or the
    # decoder's query likelihood. Korean questions: MiniLM cannot read Hangul, so "skip"
    # keeps retrieval order (or "query-likelihood" uses the decoder, slower).
    # Off by default: even retrained (session 18) the cross-encoder ranks below retrieval order
    # alone and about even fused with it, for ~1 s per query (docs/results.md).
    rerank: Literal["cross-encoder", "query-likelihood", "off"] = "off"
    rerank_candidates: int = Field(default=20, ge=1, le=200)
    # weight of the reranker's order against retrieval's (weighted RRF); 1 = reranker order only.
    # 0.5: alone the reranker ranks below retrieval on all three dev sets, fused it is about even
    # (docs/results.md, session 18)
    rerank_fusion: float = Field(default=0.5, ge=0.0, le=1.0)
    rerank_korean: Literal["skip", "query-likelihood"] = "skip"
    # What to do with answer sentences the judge finds unsupported: drop them, abstain, or
    # only record verdicts ("off" still records nothing; "report" records but keeps the text).
    verify: Literal["drop", "abstain", "report", "off"] = "abstain"
    judge_threshold: float = Field(default=0.5, ge=0.0, le=1.0)  # P(supported) below this = unsupported
    # Who decides English claims: the support probe on the decoder's state (rag/state_judge.py;
    # the cross-encoder where no probe ships for the decoder) or the cross-encoder alone.
    judge: Literal["decoder-state", "cross-encoder"] = "decoder-state"
    # The answerability probe on the decoder's prompt state (rag/answerability.py): "probe" uses
    # the one shipped for the decoder (if any) as the sufficiency score; "off" ignores it.
    answerability: Literal["probe", "off"] = "probe"
    # Who answers English questions (rag/reader.py). "reader-first": the extractive reader reads
    # the passages first and its span is the answer when P(answerable) from its no-answer margin
    # reaches reader_threshold; otherwise the decoder answers (and the probe gates). "decoder":
    # the decoder always. Korean questions always go to the decoder (MiniLM cannot read Hangul).
    answerer: Literal["reader-first", "decoder"] = "reader-first"
    reader_threshold: float = Field(default=0.5, ge=0.0, le=1.0)  # 0.5: span and "no answer" tie
    # The judge's bar for the reader's spans. None = the value fitted with the shipped reader
    # on held-out train articles (rag/models_trained/reader/held_out.json, `rag train reader`):
    # the support probe was trained on the decoder's replies and scores right spans lower.
    reader_judge_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # True: a span the reader is unsure of (below reader_threshold) is still answered when the
    # second reader (multilingual-e5-small, rag/models_trained/reader-e5) names the same answer
    # with P(answerable) >= reader_confirm_threshold (None: its held-out value at 8% of
    # unanswerable questions answered, held_out.json). Off by default: on dev squad2 it raises
    # F1 0.402 -> 0.440 but answers 11 of 100 unanswerable questions instead of 8, past the
    # product's bar of one in ten (docs/results.md, session 13).
    reader_confirm: bool = False
    reader_confirm_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # Calibrated abstention: answer only when the sufficiency score reaches this threshold.
    # None = the collection's fitted value (rag calibrate), else the shipped default.
    abstain_threshold: float | None = Field(default=None, ge=0.0, le=1.0)

    # REST API (rag.api) and front end (ui/). The admin key bootstraps key management;
    # only its hash is stored. require_auth=False is for a single-user laptop only.
    admin_key: SecretStr | None = None
    require_auth: bool = True
    max_upload_mb: float = Field(default=20.0, gt=0)
    max_upload_files: int = Field(default=50, ge=1)
    rate_limit_per_minute: int = Field(default=120, ge=1)  # per API key
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
