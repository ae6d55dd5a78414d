"""The question-answering pipeline, and the service object that owns its parts.

`RagService` is built once per process (CLI command, API lifespan) from Settings and
loads each model lazily on first use. `ask()` reads like the diagram in docs/design.md:
retrieve -> (rerank) -> gate -> reader's span, or prompt -> generate -> citations -> (verify) -> Answer."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from rag.collection import IndexCache
from rag.config import Settings
from rag.embed import Embedder, make_embedder
from rag.errors import InputError
from rag.generate import Generator, HFGenerator, ScriptedGenerator
from rag.prompt import abstain_message, build_messages, is_abstention, parse_citations, strip_markers
from rag.retrieve import HybridRetriever
from rag.store import Store
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
        self._lazy: dict[str, object] = {}  # reranker, verifier: built on first use (None = off)

    # -- components (lazy) -----------------------------------------------------------------
    def embedder(self, name: str | None = None) -> Embedder:
        name = name or self.settings.effective_embedder()
        if name not in self._embedders:
            self._embedders[name] = make_embedder(name, self.settings.threads, self.settings.embed_batch)
        return self._embedders[name]

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            if self.settings.backend == "fake":
                self._generator = ScriptedGenerator()
            else:
                self._generator = HFGenerator(self.settings.decoder, self.settings.models_path,
                                              adapter_path(self.settings), self.settings.threads, self.settings.dtype)
        return self._generator

    def retriever(self, collection: str, mode: str = "auto") -> HybridRetriever:
        """mode auto: hybrid, plus graph expansion where the router sends a question (RAG_GRAPH);
        graph: hybrid plus graph expansion for every question; hybrid|dense|lexical: that alone."""
        col = self.store.get_collection(collection)
        idx = self.indexes.get(col)
        base = HybridRetriever(idx, self.embedder(col.embedder), lambda ids: self.store.chunks(collection, ids),
                               self.settings.candidates, self.settings.rrf_k,
                               "hybrid" if mode in ("auto", "graph") else mode)
        if mode == "graph" or (mode == "auto" and self.settings.graph):
            from rag.graph_retrieve import GraphRetriever

            return GraphRetriever(base, idx.extras["graph"], always=mode == "graph", head=self.settings.top_k)
        return base

    @property
    def reranker(self):
        if "reranker" not in self._lazy:
            from rag.rerank import make_reranker

            self._lazy["reranker"] = make_reranker(self.settings, lambda: self.generator)
        return self._lazy["reranker"]

    @property
    def verifier(self):
        if "verifier" not in self._lazy:
            from rag.verify import make_verifier

            self._lazy["verifier"] = make_verifier(self.settings, self.generator)
        return self._lazy["verifier"]

    @property
    def answerability(self):
        """The answerability probe fitted on the current decoder (rag.answerability), or None."""
        if "answerability" not in self._lazy:
            from rag.answerability import load_probe

            on = self.settings.answerability == "probe" and self.settings.backend != "fake"
            self._lazy["answerability"] = load_probe(self.generator.name) if on else None
        return self._lazy["answerability"]

    @property
    def reader(self):
        """The extractive reader (rag.reader) when English questions are read by it first, or None."""
        if "reader" not in self._lazy:
            reader = None
            if self.settings.backend != "fake" and self.settings.answerer == "reader-first":
                from rag.reader import Reader

                reader = Reader(threads=self.settings.threads, dtype=self.settings.dtype)
            self._lazy["reader"] = reader
        return self._lazy["reader"]

    @property
    def second_reader(self):
        """The reader of another encoder that may confirm the first one's unsure span
        (rag.reader.confirms), or None: RAG_READER_CONFIRM off, or no weights shipped."""
        if "second_reader" not in self._lazy:
            second = None
            if self.reader is not None and self.settings.reader_confirm and self.settings.backend != "fake":
                from rag.reader import WEIGHTS, Reader, second_path

                if (second_path() / WEIGHTS).exists():
                    second = Reader(second_path(), threads=self.settings.threads, members=(WEIGHTS,),
                                    dtype=self.settings.dtype)
            self._lazy["second_reader"] = second
        return self._lazy["second_reader"]

    def second_opinion(self):
        """The second reader and the P(answerable) at which it confirms (RAG_READER_CONFIRM_THRESHOLD,
        else the value fitted with it; None, not fitted: it confirms nothing), or (None, None)."""
        second = self.second_reader
        if second is None:
            return None, None
        threshold = self.settings.reader_confirm_threshold
        return second, (second.target_threshold if threshold is None else threshold)

    def rerank(self, question: str, hits: list[Hit], k: int) -> list[Hit]:
        """Rerank the first `rerank_candidates` retrieved hits; the rest keep retrieval order."""
        n = self.settings.rerank_candidates
        if self.reranker is None or not hits:
            return hits[:k]
        return (self.reranker.rerank(question, hits[:n], min(n, len(hits))) + hits[n:])[:k]

    # -- use cases -------------------------------------------------------------------------
    def search(self, question: str, collection: str, k: int | None = None) -> list[Hit]:
        question = self.check_question(question)
        return self.rank(question, collection, k or self.settings.top_k)

    def rank(self, question: str, collection: str, k: int, trace: dict | None = None) -> list[Hit]:
        """The full pipeline's ranking of passages (every retrieval stage that is enabled).
        `trace` receives the retriever's explanation (e.g. the graph router's choice)."""
        retriever = self.retriever(collection)
        depth = max(k, self.settings.rerank_candidates) if self.settings.rerank != "off" else k
        hits = self.rerank(question, retriever.retrieve(question, depth), k)
        if trace is not None:
            trace.update(getattr(retriever, "trace", {}))
        return hits

    def ask(self, question: str, collection: str) -> Answer:
        answer = None
        for item in self.ask_stream(question, collection):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def ask_stream(self, question: str, collection: str) -> Iterator[str | Answer]:
        """Yields answer text pieces as the decoder writes them, then the final Answer."""
        question = self.check_question(question)
        # A collection with a registered SQL database answers table questions from it (rag.sql);
        # "both" tries the database first and falls back to the documents when it finds nothing.
        from rag.sql_registry import answer_from_database, database_route

        if (db_route := database_route(self, question, collection)) != "documents":
            db_answer = answer_from_database(self, question, collection)
            if db_answer is not None and (not db_answer.abstained or db_route == "database"):
                yield db_answer
                return
        s = self.settings
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        # Rank more than the decoder sees: the tail feeds recall metrics and the trace.
        route: dict = {}
        ranked = self.rank(question, collection, max(s.top_k, RANKED), route)
        hits = ranked[: s.top_k]
        timings["retrieve_s"] = time.perf_counter() - t0
        trace: dict = {"retrieved": [h.chunk.id for h in ranked],
                       "retrieved_sources": [h.chunk.source for h in ranked], **route}
        from rag.calibrate import threshold_for

        probe = self.answerability
        reader_first = self.reader is not None and not is_korean(question)
        trace["abstain_threshold"] = threshold_for(s, self.store, collection, probe, reader_first)
        model = self.generator.name
        if not relevant(question, hits):
            trace["abstain_reason"] = "retrieval found no passage sharing a content word with the question"
            timings["total_s"] = time.perf_counter() - t0
            yield Answer(question, abstain_message(question), (), tuple(hits), True, model, timings, trace=trace)
            return
        messages = build_messages(question, hits)
        t1 = time.perf_counter()
        span = self.read(question, hits, trace) if reader_first else None
        if span is not None:
            model = self.reader.name  # who wrote the answer (the decoder still checks it)
            raw = span.cited
            timings["ttft_s"] = time.perf_counter() - t1
            yield raw
        elif self.selects_answers(question):
            raw = self.select_answer(question, messages, hits, trace)
            timings["ttft_s"] = time.perf_counter() - t1  # the chosen reply comes whole
            yield raw
        else:
            pieces = []
            tap = {"tap_layer": probe.layer} if probe else {}  # generators without a probe keep the plain call
            for piece in self.generator.stream(messages, s.max_new_tokens, **tap):
                if not isinstance(piece, str):  # the decoder's prompt state, for the probe
                    trace["answerability"] = probe.score(piece)
                    continue
                if not pieces:
                    timings["ttft_s"] = time.perf_counter() - t1
                pieces.append(piece)
                yield piece
            raw = "".join(pieces).strip()
        timings["generate_s"] = time.perf_counter() - t1
        trace["raw"] = raw
        answer = self.finish(question, raw, hits, model, timings, trace)
        timings["total_s"] = time.perf_counter() - t0
        yield answer

    def selects_answers(self, question: str) -> bool:
        """Answer selection runs where the support probe can judge the candidates: English
        questions, a decoder that can branch, a state judge shipped for it."""
        return (self.settings.branches > 1 and not is_korean(question) and hasattr(self.generator, "branch")
                and self.verifier is not None and self.verifier.state_judge is not None)

    def read(self, question: str, hits: list[Hit], trace: dict):
        """The reader's best span (rag.reader.Span) when it prefers it to "no answer" by
        reader_threshold, else None and the decoder answers. Why reader first: on SQuAD-style
        single-passage questions its span beats the 0.5B decoder's phrase (dev answer-all F1
        0.567 vs 0.467) and needs no decoding; questions that need several passages read
        together (HotpotQA) get low margins and go on to the decoder (docs/results.md).
        A span whose sentence (one either side) lacks a name or number of the question goes to
        the decoder too (rag.reader.unmatched_names: SQuAD 2.0's entity swaps); for a question
        the graph router called multi-hop, a name in another passage read counts as found.
        An unsure span is still the answer when the second reader confirms it (rag.reader.confirms)."""
        from rag.graph_retrieve import routed
        from rag.reader import decide

        second, confirm_threshold = self.second_opinion()
        d = decide(self.reader, second, question, [h.chunk.text for h in hits], routed(trace),
                   self.settings.reader_threshold, confirm_threshold)
        r = d.reading
        if r.span is None:
            return None
        trace["reader"] = {"span": r.span.text, "passage": r.span.passage + 1, "margin": round(r.span.margin, 4),
                           "answerability": r.answerability, "unmatched": r.unmatched}
        if d.second is not None:
            trace["reader"]["second"] = {"span": d.second.span.text if d.second.span else "",
                                         "answerability": d.second.answerability, "unmatched": d.second.unmatched,
                                         "threshold": confirm_threshold, "confirmed": d.confirmed}
        if not d.answered:
            return None
        trace["answerability"] = d.answerability
        return r.span

    def select_answer(self, question: str, messages: list[dict[str, str]], hits: list[Hit], trace: dict) -> str:
        """The reply the support probe finds best supported among the decoder's replies that
        start with its most likely first tokens (greedy first; ties keep the earlier one).
        Why: the 0.5B decoder often picks the wrong span of the right passage, and the right
        one is often a less likely first token away (the probe was trained to tell a gold span
        from another span of the same paragraph). Measured (docs/results.md): answer-all F1
        0.431 -> 0.511 on train questions, but 0.467 -> 0.456 on dev squad2, so it is off by
        default (RAG_BRANCHES=1). A greedy reply that abstains is kept: the decoder's "I don't
        know" is not overruled."""
        from rag.state_judge import claim_text

        judge, probe = self.verifier.state_judge, self.answerability
        b = self.generator.branch(messages, self.settings.branches, self.settings.max_new_tokens,
                                  [probe.layer] if probe else [], [judge.probe.layer], claim_text)
        if probe:
            trace["answerability"] = probe.score(b.prompt_state[probe.layer])
        scores = [judge.probe.score(st[judge.probe.layer]) if st else None for st in b.claim_states]
        trace["branches"] = [{"text": t, "support": sc} for t, sc in zip(b.texts, scores)]
        best = pick_reply(b.texts, scores)
        if best is None:
            return b.texts[0]
        trace["chosen_branch"] = best
        return b.texts[best]

    def finish(self, question: str, raw: str, hits: list[Hit], model: str, timings: dict, trace: dict) -> Answer:
        """From the decoder's raw reply to an Answer: citations checked, abstention made plain."""
        if is_abstention(raw):
            trace["abstain_reason"] = "the model found no answer in the passages"
            return Answer(question, abstain_message(question), (), tuple(hits), True, model, timings, trace=trace)
        text, cites = parse_citations(raw, hits)
        if not cites:
            cites = attribute(strip_markers(text), hits)
            if cites:
                text = f"{strip_markers(text)} [{cites[0].marker}]"
        answer = Answer(question, text, cites, tuple(hits), False, model, timings, trace=trace)
        # Grounding check and calibrated abstention (rag.verify, rag.calibrate).
        from rag.calibrate import DEFAULT_THRESHOLD, ground

        t = time.perf_counter()
        judge_threshold = None
        if self.reader is not None and model == self.reader.name:
            judge_threshold = self.settings.reader_judge_threshold
            if judge_threshold is None:
                judge_threshold = self.reader.judge_threshold
        answer = ground(answer, self.verifier, self.settings.verify, trace.get("abstain_threshold", DEFAULT_THRESHOLD),
                        judge_threshold)
        timings["verify_s"] = time.perf_counter() - t
        return answer

    def check_question(self, question: str) -> str:
        q = (question or "").strip()
        if not q:
            raise InputError("the question is empty")
        if len(q) > self.settings.max_question_chars:
            raise InputError(f"the question is {len(q)} characters long; the limit is "
                             f"{self.settings.max_question_chars} (RAG_MAX_QUESTION_CHARS)")
        return q


def pick_reply(texts: Sequence[str], supports: Sequence[float | None]) -> int | None:
    """Answer selection's rule: the index of the best-supported reply that is not an abstention
    (ties keep the earlier one, greedy first), or None when the greedy reply (texts[0])
    abstains or no reply could be scored."""
    ok = [i for i, t in enumerate(texts) if supports[i] is not None and not is_abstention(t)]
    if is_abstention(texts[0]) or not ok:
        return None
    return max(ok, key=lambda i: supports[i])


def relevant(question: str, hits: list[Hit]) -> bool:
    """Cheap pre-generation gate: some passage must share a content word with the question.
    Without it the decoder is asked to answer from passages that cannot help."""
    q = set(tokenize(question))
    return bool(hits) and any(q & set(tokenize(h.chunk.text + " " + h.chunk.title)) for h in hits)


def attribute(answer: str, hits: list[Hit]) -> tuple[Citation, ...]:
    """Cite the first passage that contains the answer (case and spacing aside). The decoder is
    asked for the phrase only, so this is how most answers get their citation: deterministic,
    and checkable. An answer found in no passage stays uncited (the grounding check judges it)."""
    from rag.prompt import best_quote

    def norm(t: str) -> str:
        return " ".join(t.lower().split())

    low = norm(answer)
    for n, h in enumerate(hits, 1):
        if low and low in norm(h.chunk.text):
            return (Citation(n, h.chunk.id, h.chunk.source, best_quote(answer, h.chunk.text)),)
    return ()


def adapter_path(settings: Settings) -> Path | None:
    """The LoRA adapter to load: the one shipped for the configured decoder, a given path, or none."""
    if settings.adapter == "none":
        return None
    if settings.adapter == "default":
        p = Path(__file__).parent / "adapters" / settings.decoder
        return p if (p / "adapter_config.json").exists() else None
    return Path(settings.adapter)

