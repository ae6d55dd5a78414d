"""The use cases (ingest is ingest/build.py; search and ask are here), and the service object
that owns their parts.

`RagService` is built once per process (CLI command, API lifespan) from Settings and loads
each model lazily on first use (or all at once with `warm()`). `ask_stream` reads like the
diagram in docs/design.md, one call per stage:
database route -> retrieve -> relevance gate -> reader's span, or decoder -> citations,
grounding check and the answer ladder (answered / caveat / abstained) -> Answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rag.answer.abstain import DEFAULT_THRESHOLD, abstention, ground, threshold_for
from rag.answer.prompt import (MAX_NEW_TOKENS, ScriptedGenerator, abstain_message, best_quote, build_messages,
                               is_abstention, parse_citations, strip_markers)
from rag.config import Settings
from rag.errors import InputError
from rag.models.decoder import Generator
from rag.models.llama import serving_generator
from rag.models.embed import Embedder, make_embedder
from rag.models.weights import ADAPTERS_DIR
from rag.retrieve.hybrid import HybridRetriever
from rag.retrieve.rerank import CANDIDATES as RERANK_CANDIDATES
from rag.sql.registry import ask_database
from rag.store.collection import IndexCache
from rag.store.metadata import Store
from rag.text import is_korean, tokenize
from rag.types import Answer, Citation, Hit

RANKED = 10  # how many ranked passages an answer's trace keeps


class RagService:
    def __init__(self, settings: Settings):
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.db_url)
        self.indexes = IndexCache(settings.data_dir)
        self._embedders: dict[str, Embedder] = {}
        self._generator: Generator | None = None
        self._lazy: dict[str, object] = {}  # reranker, verifier, probe, readers: built on first use (None = off)
        self._building = threading.RLock()  # a component built from another (the verifier from the decoder)

    # -- components (lazy) -----------------------------------------------------------------
    def embedder(self, name: str | None = None) -> Embedder:
        name = name or self.settings.effective_embedder()
        if name not in self._embedders:
            self._embedders[name] = make_embedder(name, self.settings.threads, cache_dir=self.settings.models_path)
        return self._embedders[name]

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            if self.settings.backend == "fake":
                self._generator = ScriptedGenerator()
            else:
                self._generator = serving_generator(self.settings.decoder, self.settings.models_path,
                                                    adapter_path(self.settings), self.settings.threads,
                                                    self.settings.decoder_quant)
        return self._generator

    def retriever(self, collection: str, mode: str = "auto") -> HybridRetriever:
        """mode auto: hybrid, plus graph expansion where the router sends a question (RAG_GRAPH);
        graph: hybrid plus graph expansion for every question; hybrid|dense|lexical: that alone."""
        col = self.store.get_collection(collection)
        idx = self.indexes.get(col)
        base = HybridRetriever(idx, self.embedder(col.embedder), lambda ids: self.store.chunks(collection, ids),
                               mode="hybrid" if mode in ("auto", "graph") else mode)
        if mode == "graph" or (mode == "auto" and self.settings.graph):
            from rag.retrieve.graph import GraphRetriever

            return GraphRetriever(base, idx.extras["graph"], always=mode == "graph", head=self.settings.top_k)
        return base

    def _component(self, name: str, build):
        if name not in self._lazy:
            with self._building:  # two first requests at once build it once
                if name not in self._lazy:
                    self._lazy[name] = build()
        return self._lazy[name]

    @property
    def reranker(self):
        from rag.retrieve.rerank import make_reranker

        return self._component("reranker", lambda: make_reranker(self.settings))

    @property
    def verifier(self):
        from rag.answer.verify import make_verifier

        return self._component("verifier", lambda: make_verifier(self.settings, self.generator))

    @property
    def answerability(self):
        """The answerability probe fitted on the current decoder (rag.answer.answerability), or None."""
        from rag.answer.answerability import load_probe

        return self._component("answerability", lambda: None if self.settings.backend == "fake"
                               else load_probe(self.generator.name))

    @property
    def confidence(self):
        """The answer-confidence model for English answers (rag.answer.confidence), or None."""
        from rag.answer.confidence import load_confidence

        return self._component("confidence", lambda: None if self.settings.backend == "fake" else load_confidence())

    @property
    def korean_confidence(self):
        """The answer-confidence model for Korean answers (fitted on Korean train answers), or None."""
        from rag.answer.confidence import KOREAN_PATH, load_confidence

        return self._component("korean_confidence", lambda: None if self.settings.backend == "fake"
                               else load_confidence(KOREAN_PATH))

    @property
    def reader(self):
        """The extractive reader (rag.answer.reader) that reads English questions first, or None."""
        def build():
            if self.settings.backend == "fake":
                return None
            from rag.answer.reader import Reader

            return Reader(threads=self.settings.threads, dtype=self.settings.dtype)

        return self._component("reader", build)

    @property
    def korean_reader(self):
        """The Korean reader (e5 trained on KorQuAD), or None when it is not shipped. warm() does
        not load it: it holds about 500 MB, which a service that is never asked in Korean should
        not pay; the first Korean question loads it (a few seconds, once; Reader.load locks)."""
        def build():
            from rag.answer.reader import WEIGHTS, korean_path, korean_reader

            if self.settings.backend == "fake" or not (korean_path() / WEIGHTS).exists():
                return None
            return korean_reader(threads=self.settings.threads, dtype=self.settings.dtype)

        return self._component("korean_reader", build)

    def reader_for(self, question: str):
        """The reader that reads this question first: the Korean one for Korean questions."""
        return self.korean_reader if is_korean(question) else self.reader

    def confidence_for(self, question: str):
        """The confidence model that grades this question's answers, or None (the bar of sufficiency)."""
        if self.reader_for(question) is None:
            return None
        return self.korean_confidence if is_korean(question) else self.confidence

    def warm(self) -> None:
        """Load every model now (the API's lifespan): lazy first use from two request threads
        at once would race, and the first question should not pay for loading."""
        for name in {self.settings.effective_embedder(), *(c.embedder for c in self.store.collections())}:
            self.embedder(name).embed_query("warm up")
        tokenize("warm up 준비")  # the Korean morphology model behind BM25 takes seconds to load
        if hasattr(self.generator, "load"):
            self.generator.load()
        if self.reader is not None:
            self.reader.load()
        if self.verifier is not None:
            self.verifier.load()

    # -- use cases -------------------------------------------------------------------------
    def search(self, question: str, collection: str, k: int | None = None) -> list[Hit]:
        question = self.check_question(question)
        return self.rank(question, collection, k or self.settings.top_k)

    def rank(self, question: str, collection: str, k: int, trace: dict | None = None) -> list[Hit]:
        """The full pipeline's ranking of passages (every retrieval stage that is enabled).
        `trace` receives the retriever's explanation (e.g. the graph router's choice)."""
        retriever = self.retriever(collection)
        depth = max(k, RERANK_CANDIDATES) if self.reranker is not None else k
        hits = self.rerank(question, retriever.retrieve(question, depth), k)
        if trace is not None:
            trace.update(getattr(retriever, "trace", {}))
        return hits

    def rerank(self, question: str, hits: list[Hit], k: int) -> list[Hit]:
        """Rerank the first RERANK_CANDIDATES retrieved hits; the rest keep retrieval order."""
        n = RERANK_CANDIDATES
        if self.reranker is None or not hits:
            return hits[:k]
        return (self.reranker.rerank(question, hits[:n], min(n, len(hits))) + hits[n:])[:k]

    def ask(self, question: str, collection: str) -> Answer:
        answer = None
        for item in self.ask_stream(question, collection):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def ask_stream(self, question: str, collection: str) -> Iterator[str | Answer]:
        """Yields answer text pieces as they are written, then the final Answer."""
        question = self.check_question(question)
        db_answer = ask_database(self, question, collection)  # only collections with a registered database
        if db_answer is not None:
            yield db_answer
            return
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        hits, trace = self.retrieve(question, collection)
        timings["retrieve_s"] = time.perf_counter() - t0
        if not relevant(question, hits):
            trace.update(abstention("no_passage"))
            timings["total_s"] = time.perf_counter() - t0
            yield Answer(question, abstain_message(question), (), tuple(hits), True, self.generator.name, timings,
                         trace=trace)
            return
        t1 = time.perf_counter()
        span = self.read(question, hits, trace)  # the extractive reader's span, when it is sure
        if span is not None:
            model, raw = self.reader_for(question).name, span.cited
            timings["ttft_s"] = time.perf_counter() - t1
            yield raw
        else:
            model = self.generator.name
            raw = yield from self.generate(question, hits, trace, timings, t1)
        timings["generate_s"] = time.perf_counter() - t1
        trace["raw"] = raw
        answer = self.finish(question, raw, hits, model, timings, trace)  # citations, check, abstention
        timings["total_s"] = time.perf_counter() - t0
        yield answer

    # -- stages ----------------------------------------------------------------------------
    def retrieve(self, question: str, collection: str) -> tuple[list[Hit], dict]:
        """The passages the answer is made from, and the trace that starts with them. More are
        ranked than read: the tail feeds recall metrics and the trace."""
        route: dict = {}
        ranked = self.rank(question, collection, max(self.settings.top_k, RANKED), route)
        trace: dict = {"retrieved": [h.chunk.id for h in ranked],
                       "retrieved_sources": [h.chunk.source for h in ranked], **route}
        reader_first = self.reader_for(question) is not None
        trace["abstain_threshold"], trace["caveat_threshold"] = threshold_for(
            self.settings, self.store, collection, self.answerability, reader_first, self.confidence_for(question))
        return ranked[: self.settings.top_k], trace

    def read(self, question: str, hits: list[Hit], trace: dict):
        """The reader's best span (rag.answer.reader.Span) when it is sure of it, else None and
        the decoder answers. Why reader first: on SQuAD-style single-passage questions its span
        beats the 0.5B decoder's phrase (dev answer-all F1 0.567 vs 0.467) and needs no
        decoding; questions that need several passages read together (HotpotQA) get low
        margins and go on to the decoder (docs/results.md). A span whose sentence (one either
        side) lacks a name or number of the question goes to the decoder too (SQuAD 2.0's
        entity swaps); for a question the graph router called multi-hop, a name in another
        passage read counts as found. Korean questions have their own reader (reader_for)."""
        reader = self.reader_for(question)
        if reader is None:
            return None
        from rag.retrieve.graph import routed

        r = reader.reading(question, [h.chunk.text for h in hits], routed(trace))
        if r.span is None:
            return None
        trace["reader"] = {"span": r.span.text, "passage": r.span.passage + 1, "margin": round(r.span.margin, 4),
                           "answerability": r.answerability, "unmatched": r.unmatched}
        if not r.answers():
            return None
        trace["answerability"] = r.answerability
        return r.span

    def generate(self, question: str, hits: list[Hit], trace: dict, timings: dict, t1: float) -> Iterator[str]:
        """The decoder's reply, streamed; returns it whole (ttft_s counts from t1). The
        answerability probe reads the decoder's state during the prefill generation does anyway."""
        probe = self.answerability
        tap = {"tap_layer": probe.layer} if probe else {}  # generators without a probe keep the plain call
        pieces = []
        for piece in self.generator.stream(build_messages(question, hits), MAX_NEW_TOKENS, **tap):
            if not isinstance(piece, str):  # the decoder's prompt state, for the probe
                trace["answerability"] = probe.score(piece)
                continue
            if not pieces:
                timings["ttft_s"] = time.perf_counter() - t1
            pieces.append(piece)
            yield piece
        return "".join(pieces).strip()

    def finish(self, question: str, raw: str, hits: list[Hit], model: str, timings: dict, trace: dict) -> Answer:
        """From the raw reply to an Answer: citations checked, the grounding check and the
        calibrated abstention applied (rag.answer.abstain), abstention made plain."""
        if is_abstention(raw):
            trace.update(abstention("model_found_none"))
            return Answer(question, abstain_message(question), (), tuple(hits), True, model, timings, trace=trace)
        text, cites = parse_citations(raw, hits)
        if not cites:
            cites = attribute(strip_markers(text), hits)
            if cites:
                text = f"{strip_markers(text)} [{cites[0].marker}]"
        answer = Answer(question, text, cites, tuple(hits), False, model, timings, trace=trace)
        t = time.perf_counter()
        reader = self.reader_for(question)
        reader_path = reader is not None and model == reader.name
        # The reader's spans have their own bar for the judge (fitted with the reader).
        judge_threshold = reader.judge_threshold if reader_path else None
        confidence = self.confidence_for(question)
        answer = ground(answer, self.verifier, self.settings.verify, trace.get("abstain_threshold", DEFAULT_THRESHOLD),
                        judge_threshold, trace.get("caveat_threshold"), confidence, reader_path)
        timings["verify_s"] = time.perf_counter() - t
        return answer

    def check_question(self, question: str) -> str:
        q = (question or "").strip()
        if not q:
            raise InputError("the question is empty")
        if len(q) > self.settings.max_question_chars:
            raise InputError(f"the question is {len(q):,} characters long; a question can have at most "
                             f"{self.settings.max_question_chars:,} characters")
        return q


def relevant(question: str, hits: list[Hit]) -> bool:
    """Cheap pre-generation gate: some passage must share a content word with the question.
    Without it the decoder is asked to answer from passages that cannot help."""
    q = set(tokenize(question))
    return bool(hits) and any(q & set(tokenize(h.chunk.text + " " + h.chunk.title)) for h in hits)


def attribute(answer: str, hits: list[Hit]) -> tuple[Citation, ...]:
    """Cite the first passage that contains the answer (case and spacing aside). The decoder is
    asked for the phrase only, so this is how most answers get their citation: deterministic,
    and checkable. A reworded answer ("31 meters" for "31 metres") cites the passage holding all
    of its numbers and most of its words; an answer found in no passage stays uncited (the
    grounding check judges it)."""
    def norm(t: str) -> str:
        return " ".join(t.lower().split())

    low = norm(answer)
    for n, h in enumerate(hits, 1):
        if low and low in norm(h.chunk.text):
            return (Citation(n, h.chunk.id, h.chunk.source, best_quote(answer, h.chunk.text)),)
    words = set(tokenize(answer))
    numbers = {w for w in words if any(c.isdigit() for c in w)}
    shares = [(len(words & found) / len(words), -n) for n, h in enumerate(hits, 1)
              if words and numbers <= (found := set(tokenize(h.chunk.text)))]
    share, neg_marker = max(shares, default=(0.0, 0))  # the best share; the first passage on a tie
    if share < 0.5:
        return ()
    marker = -neg_marker
    h = hits[marker - 1]
    return (Citation(marker, h.chunk.id, h.chunk.source, best_quote(answer, h.chunk.text)),)


def adapter_path(settings: Settings) -> Path | None:
    """The LoRA adapter to load: the one shipped for the configured decoder, a given path, or none."""
    if settings.adapter == "none":
        return None
    if settings.adapter == "default":
        p = ADAPTERS_DIR / settings.decoder
        return p if (p / "adapter_config.json").exists() else None
    return Path(settings.adapter)
