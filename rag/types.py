"""Core data types. Frozen dataclasses: change them with dataclasses.replace, never in place.

These cross every module boundary (ingest, retrieval, generation, evaluation, the API), so
they hold plain data only: no model handles, no database sessions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Stage = Literal["dense", "lexical", "graph", "fused", "reranked"]


@dataclass(frozen=True)
class Document:
    """A loaded document. `id` is the sha256 of its text: the same text is the same document;
    an edited file is a new version that replaces the old one with the same `source`."""

    id: str
    source: str
    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A span of a document: `doc.text[start:end] == chunk.text`.

    `id` is the stable integer id shared by the database row, the FAISS vector and the
    graph facts (-1 until the store assigns it). `source` and `title` are copied from the
    document so a hit can be cited without another lookup."""

    id: int
    doc_id: str
    text: str
    start: int
    end: int
    ordinal: int
    source: str = ""
    title: str = ""


@dataclass(frozen=True)
class Triple:
    subject: str
    relation: str
    object: str
    chunk_id: int


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float
    stage: Stage


@dataclass(frozen=True)
class Citation:
    marker: int
    chunk_id: int
    source: str
    quote: str


@dataclass(frozen=True)
class Verdict:
    claim: str
    supported: bool
    score: float
    evidence_chunk_id: int | None


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    citations: tuple[Citation, ...]
    context: tuple[Hit, ...]
    abstained: bool
    model: str
    timings: dict[str, float]
    verdicts: tuple[Verdict, ...] = ()
    trace: dict[str, Any] = field(default_factory=dict)

    @property
    def level(self) -> str:
        """answered (confident), caveat (shown, marked low confidence, with its evidence
        sentence: trace["caveat"]) or abstained (with its reason: trace["abstain_reason"])."""
        if self.abstained:
            return "abstained"
        return "caveat" if self.trace.get("caveat") else "answered"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form used by the CLI (--json), the API and eval records."""
        d = asdict(self)
        d["level"] = self.level
        d["context"] = [
            {"chunk_id": h.chunk.id, "source": h.chunk.source, "title": h.chunk.title,
             "text": h.chunk.text, "score": h.score, "stage": h.stage}
            for h in self.context
        ]
        return d


@dataclass(frozen=True)
class EvalRecord:
    """One line of an evaluation's records.jsonl: inputs, outputs and scores."""

    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    scores: dict[str, Any]
