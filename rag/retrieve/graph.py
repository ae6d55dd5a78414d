"""Graph-expanded, iterative multi-hop retrieval, and the router that decides when to use it.

For "The director of the film X is based in which city?" the passage about X is found by
hybrid search, but the passage about its director shares no words with the question. So:
1. link the question's entities to graph nodes (exact n-gram keys, then rapidfuzz on the
   question's name-like spans);
2. round 1: hybrid ranking fused with the passages *about* the linked entities (hop 0);
3. bridge: the entities that round 1's best passages mention and that have passages of
   their own (hop 1, weighted by the rank of the passage that names them, hubs discounted);
4. round 2: hybrid search again with the question plus each bridge entity's name;
5. everything fused by weighted RRF with the hybrid ranking, which keeps first say.
The router (`route`) decides how far graph candidates may climb: for a question that links
to an entity with passages of its own or looks multi-hop they compete for every rank; for a
single-hop question the hybrid ranking's first `head` passages keep their places, so its
precision at the top is kept and the graph only fills the ranks below. The choice and its
reason go into `trace`.
Limits: rules, not a trained router; relations are not typed, so hops follow any edge."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from rag.entities import _TOKEN, entity_key, mentions
from rag.store.graph import KnowledgeGraph
from rag.retrieve.hybrid import HybridRetriever, rrf
from rag.text import has_hangul
from rag.types import Hit

# Questions that chain or compare entities (HotpotQA's bridge and comparison types, and
# their Korean counterparts). Single-hop fact questions rarely match these.
_MULTI_HOP = re.compile(
    r"\b(the|a|an|this|that|which|what|whose)\s+(?:[\w'-]+\s+){0,3}?[\w'-]+\s+(who|that|which|whose|where|when)\s+"
    r"(?!is\b|are\b|was\b|were\b)\w+|"  # "the woman who portrayed X": a bridge through an unnamed entity
    r"\b(older|younger|earlier|both|same|also|first)\b.*\b(or|and)\b|"  # comparisons
    r"(인|한|된|던) (사람|인물|회사|도시|영화|나라|감독|작가|가수|단체)|둘 중|더 (먼저|오래|늦게)")
_QUESTION_START = frozenset("what who whom whose which when where why how is are was were did does do in on "
                            "at for of the a an name".split())


FOCUSED_PASSAGES = 4


@dataclass(frozen=True)
class Link:
    key: str
    surface: str
    score: float  # 1.0 exact, lower for fuzzy
    titled: bool  # the entity has passages about it (a document title)
    passages: int = 0  # how many: one short article points somewhere, a long one hardly does


@dataclass(frozen=True)
class Route:
    use_graph: bool
    reason: str


def scan(text: str, kg: KnowledgeGraph, titled_only: bool = False, max_n: int = 8) -> dict[str, Link]:
    """Graph nodes named in a text by exact key match of word n-grams (the longest wins; a
    single word only when capitalised mid-sentence). A capitalised word matching no node may
    be the surname of a titled person ("the Nixon administration" -> Richard Nixon)."""
    toks = list(_TOKEN.finditer(text))
    found: dict[str, Link] = {}
    covered: set[int] = set()
    for n in range(min(max_n, len(toks)), 0, -1):
        for i in range(len(toks) - n + 1):
            if covered & set(range(i, i + n)):
                continue
            span = text[toks[i].start():toks[i + n - 1].end()]
            if n == 1 and not (span[:1].isupper() and (i > 0 or span.lower() not in _QUESTION_START)):
                continue
            k = entity_key(span)
            if k not in kg or k.isdigit():
                if n == 1 and len(k) > 2 and _alone(toks, i, text):
                    owners = kg.surnames().get(k, ())
                    if 0 < len(owners) <= 2:
                        covered.add(i)
                        for o in owners:
                            found.setdefault(o, Link(o, span, 0.8 / len(owners), True, len(kg.g.nodes[o]["title"])))
                continue
            titled = bool(kg.g.nodes[k]["title"])
            named = any(t.group()[:1].isupper() for t in toks[i:i + n] if t.group().lower() not in _QUESTION_START)
            if (named or has_hangul(span) or titled) and (titled or not titled_only):
                covered |= set(range(i, i + n))
                found[k] = Link(k, span, 1.0, titled, len(kg.g.nodes[k]["title"]))
    return found


def _alone(toks: list, i: int, text: str) -> bool:
    """A capitalised word with no capitalised neighbour ("the Nixon administration"), not a
    word inside a longer name ("Secretary for Health")."""
    def cap(j: int) -> bool:
        return 0 <= j < len(toks) and toks[j].group()[:1].isupper()
    return not cap(i - 1) and not cap(i + 1)


def link(question: str, kg: KnowledgeGraph, fuzzy_min: float = 88.0) -> list[Link]:
    """Graph nodes named in the question: `scan`, then fuzzy matches (rapidfuzz) of the
    question's name-like spans that found no exact node."""
    found = scan(question, kg)
    for surface, _pos in mentions(question):
        k = entity_key(surface)
        if not k or k in found:
            continue
        if k in kg:
            found[k] = Link(k, surface, 1.0, bool(kg.g.nodes[k]["title"]), len(kg.g.nodes[k]["title"]))
        elif len(k) >= 4:
            hit = fuzzy_match(k, kg, fuzzy_min)
            if hit and hit[0] not in found:
                about = kg.g.nodes[hit[0]]["title"]
                found[hit[0]] = Link(hit[0], surface, hit[1] / 100.0, bool(about), len(about))
    return list(found.values())


def fuzzy_match(key: str, kg: KnowledgeGraph, cutoff: float) -> tuple[str, float] | None:
    from rapidfuzz import fuzz, process

    keys = kg.g.graph.setdefault("_keys", list(kg.g.nodes))  # cached per loaded graph
    hit = process.extractOne(key, keys, scorer=fuzz.ratio, score_cutoff=cutoff)
    return (hit[0], float(hit[1])) if hit else None


def route(question: str, links: list[Link]) -> Route:
    """Graph expansion for entity-centred or multi-hop questions only."""
    # An entity whose passages are a whole long article (SQuAD's titles, a big manual) says
    # little about which passage is meant: it does not make a question entity-centred.
    titled = [lk for lk in links if lk.titled and lk.passages <= FOCUSED_PASSAGES]
    if len(titled) >= 2:
        return Route(True, f"links {len(titled)} entities with passages of their own "
                           f"({', '.join(lk.surface for lk in titled[:4])}): comparison or bridge question")
    if titled:
        return Route(True, f"entity-centred: {titled[0].surface!r} has passages of its own; expand to "
                           "the entities those passages name")
    if _MULTI_HOP.search(question):
        return Route(True, "multi-hop phrasing (a relative clause about an unnamed entity, or a comparison): "
                           "take bridge entities from the first round's best passages")
    if not links:
        return Route(False, "no entity of the question is in the graph and single-hop phrasing")
    return Route(False, "entities without passages of their own and single-hop phrasing")


def routed(trace: dict) -> bool:
    """Whether the router read the question as multi-hop or entity-centred, from the trace
    RagService.rank fills (False when no graph retriever ran)."""
    return bool(trace.get("graph", {}).get("routed", False))


@dataclass
class GraphRetriever:
    hybrid: HybridRetriever
    graph: KnowledgeGraph
    always: bool = False  # --mode graph: expand every question, no router
    pool: int = 100  # hybrid candidates per retriever
    first_round: int = 4  # best round-1 passages whose entities become bridges
    bridges: int = 3  # bridge entities searched again in round 2
    graph_weight: float = 1.0
    round2_weight: float = 0.5
    # How far graph candidates may climb: the passages of the hybrid ranking's first `head`
    # documents keep their places for questions the router calls single-hop (0: no expansion),
    # `routed_head` for multi-hop / entity-centred ones. RagService sets `head` to top_k, the
    # number of passages the decoder reads, so a single-hop question's context is exactly the
    # hybrid one and the graph only fills the ranks below it. Train (e5): 3 and 4 documents tie
    # (SQuAD recall@5 0.976 vs hybrid 0.972, HotpotQA @10 0.921 vs 0.859); 5 loses HotpotQA @5.
    head: int = 4
    routed_head: int = 0
    trace: dict = field(default_factory=dict)

    def retrieve(self, question: str, k: int) -> list[Hit]:
        h, kg = self.hybrid, self.graph
        n = max(k, self.pool)
        dense, lexical = [i for i, _ in h.dense(question, n)], [i for i, _ in h.lexical(question, n)]
        fused = rrf([dense, lexical], h.rrf_k)  # deep: what the graph's candidates are fused with
        m = max(k, h.candidates)
        plain = rrf([dense[:m], lexical[:m]], h.rrf_k)  # exactly HybridRetriever's ranking
        hybrid_rank = [i for i, _ in fused]
        links = link(question, kg) if kg.g.number_of_nodes() else []
        decision = route(question, links)
        routed = decision.use_graph or self.always
        protect = self.routed_head if routed else self.head
        reason = "graph mode: expansion forced" if self.always else decision.reason
        if not routed:
            reason += (f": graph candidates only below the first {protect} hybrid passages, to keep "
                       "precision at the top" if protect else ": hybrid ranking only, to keep precision")
        use = routed or protect > 0
        # "routed" (read by routed()): the router read a multi-hop or entity-centred question; the
        # reader's names check then accepts names found in any passage read (rag.answer.reader.Reader.reading)
        self.trace = {"graph": {"used": use, "routed": routed, "reason": reason,
                                "protected_head": protect if use else None, "linked": [lk.surface for lk in links]}}
        if not use:
            return self._hits(plain[:k], "fused")

        # hop 0: passages about the question's entities (an entity with many passages, such
        # as a long article, says little about which one is meant)
        hop0: dict[int, float] = {}
        for lk in links:
            about = kg.g.nodes[lk.key]["title"]
            for c in about:
                hop0[c] = hop0.get(c, 0.0) + lk.score / math.sqrt(len(about))
        hop0_rank = _ranked(hop0, hybrid_rank)
        round1 = [i for i, _ in rrf([hybrid_rank, hop0_rank], h.rrf_k)][:self.first_round]

        # hop 1: entities named by round 1's best passages that have passages of their own
        linked = {lk.key for lk in links}
        in_round1 = set(round1)
        bridge: dict[str, float] = {}
        texts = h.lookup(round1)
        for r, cid in enumerate(round1):
            named = kg.entities_in(cid) | (set(scan(texts[cid].text, kg, titled_only=True)) if cid in texts else set())
            for e in named:
                about = kg.g.nodes[e]["title"]
                if e in linked or not about or about <= in_round1:
                    continue
                hub = math.log2(2 + len(kg.g.nodes[e]["mention"]))
                bridge[e] = bridge.get(e, 0.0) + 1.0 / ((r + 1) * hub)
        # a bridge whose own passage the hybrid search already ranks well is likelier the one meant
        pos = {c: r for r, c in enumerate(hybrid_rank)}
        for e in bridge:
            best = min((pos.get(c, len(pos)) for c in kg.g.nodes[e]["title"]), default=len(pos))
            bridge[e] += 0.5 / (1 + best / 10)
        picked = sorted(bridge, key=lambda e: (-bridge[e], e))[:self.bridges]
        hop1: dict[int, float] = {}
        for e in picked:
            about = kg.g.nodes[e]["title"]
            for c in about:
                hop1[c] = hop1.get(c, 0.0) + bridge[e] / math.sqrt(len(about))
        graph_rank = _ranked(hop0, hybrid_rank) + [c for c in _ranked(hop1, hybrid_rank) if c not in hop0]

        # round 2: search again with each bridge entity's name added to the question
        rankings, weights = [hybrid_rank, graph_rank], [1.0, self.graph_weight]
        for e in picked:
            q2 = f"{question} {kg.g.nodes[e]['name']}"
            r2 = rrf([[i for i, _ in h.dense(q2, k)], [i for i, _ in h.lexical(q2, k)]], h.rrf_k)
            rankings.append([i for i, _ in r2])
            weights.append(self.round2_weight)
        final = rrf(rankings, h.rrf_k, weights)
        if protect:
            head = self._head(plain, protect)
            top = {c for c, _ in head}
            final = head + [(c, sc) for c, sc in final if c not in top]
        final = final[:k]
        self.trace["graph"]["bridges"] = [kg.g.nodes[e]["name"] for e in picked]
        graph_ids = set(hop0) | set(hop1)
        hits = self._hits(final, "fused")
        return [Hit(x.chunk, x.score, "graph") if x.chunk.id in graph_ids and x.chunk.id not in hybrid_rank[:k]
                else x for x in hits]

    def _head(self, fused: list[tuple[int, float]], docs: int) -> list[tuple[int, float]]:
        """The hybrid ranking up to (not including) the first passage of its (docs+1)-th
        document: a document's second chunk often ranks just below the head, so counting
        chunks would let graph candidates push the document itself out of the top k."""
        chunks = self.hybrid.lookup([c for c, _ in fused[:4 * docs]])
        seen: set[str] = set()
        head = []
        for c, sc in fused[:4 * docs]:
            src = chunks[c].source if c in chunks else str(c)
            if src not in seen and len(seen) == docs:
                break
            seen.add(src)
            head.append((c, sc))
        return head

    def _hits(self, ranked: list[tuple[int, float]], stage: str) -> list[Hit]:
        chunks = self.hybrid.lookup([i for i, _ in ranked])
        return [Hit(chunks[i], s, stage) for i, s in ranked if i in chunks]


def _ranked(scores: dict[int, float], tiebreak: list[int]) -> list[int]:
    """Ids by score, ties broken by the hybrid ranking (then id, for determinism)."""
    pos = {c: r for r, c in enumerate(tiebreak)}
    return sorted(scores, key=lambda c: (-scores[c], pos.get(c, len(pos)), c))
