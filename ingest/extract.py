"""Entity and relation extraction from chunks, for the knowledge graph. Rules only, no model.

Per chunk:
- the document title is an entity the chunk is *about* (role 'title'): encyclopedic corpora
  (HotpotQA, SQuAD, Wikipedia dumps) title each paragraph with its subject;
- the mentions found by rag.entities (capitalised spans, quoted titles, Korean NNP runs);
  a one-word mention that is the last word of a longer name in the same chunk or title
  ("Trigiani" after "Adriana Trigiani") is an alias of that name;
- relations: title -mentions-> each entity; inside a sentence, two consecutive entities
  joined by a short verb phrase give that phrase as the relation ("directed by"), other
  pairs in the sentence a 'co_occurs' relation (at most MAX_PER_SENTENCE entities each).
Speed: about a millisecond per English chunk; Korean pays for kiwipiepy (see bench).
Limits: no coreference beyond the alias rule, no typed entities, relations are surface text."""

from __future__ import annotations

import re

from rag.entities import entity_key, mentions, sentences
from rag.store.graph import Facts
from rag.text import STOPWORDS
from rag.types import Chunk, Triple

MAX_PER_SENTENCE = 8
_MAX_REL_WORDS = 4
_REL_BREAK = re.compile(r"[,;:()\[\]\"“”]")


def extract(chunks: list[Chunk]) -> list[Facts]:
    return [extract_chunk(c) for c in chunks]


def extract_chunk(chunk: Chunk) -> Facts:
    title = chunk.title.replace("_", " ").strip()
    found = _resolve_aliases(mentions(chunk.text), title)
    entities: list[tuple[str, str]] = [("title", title)] if entity_key(title) else []
    seen = {entity_key(title)}
    for surface, _pos, _end in found:
        k = entity_key(surface)
        if k and k not in seen and not k.isdigit():
            seen.add(k)
            entities.append(("mention", surface))
    triples: list[Triple] = []
    if entity_key(title):
        triples += [Triple(title, "mentions", s, chunk.id) for role, s in entities if role == "mention"]
    for a, b in sentences(chunk.text):
        ms = [m for m in found if a <= m[1] < b and entity_key(m[0])][:MAX_PER_SENTENCE]
        triples += _sentence_relations(chunk, ms)
    return Facts(chunk.id, tuple(entities), tuple(dict.fromkeys(triples)))


def _resolve_aliases(found: list[tuple[str, int]], title: str) -> list[tuple[str, int, int]]:
    """Map a one-word mention onto the longer name in this chunk (or the title) it ends.
    Returns (resolved name, start, end of the surface in the text)."""
    long_names = [title] + [s for s, _ in found if len(s.split()) > 1]
    by_last: dict[str, str] = {}
    for name in long_names:
        words = re.sub(r"\s*\([^)]*\)$", "", name).split()
        if len(words) > 1:
            by_last.setdefault(entity_key(words[-1]), name)
    out = []
    for s, p in found:
        end = p + len(s)
        if len(s.split()) == 1 and entity_key(s) in by_last:
            s = by_last[entity_key(s)]
        out.append((s, p, end))
    return out


def _sentence_relations(chunk: Chunk, ms: list[tuple[str, int, int]]) -> list[Triple]:
    out = []
    for i, (s1, _p1, e1) in enumerate(ms):
        for j, (s2, p2, _e2) in enumerate(ms[i + 1:], i + 1):
            rel = "co_occurs"
            if j == i + 1 and p2 >= e1:
                rel = _relation(chunk.text[e1:p2]) or rel
            if entity_key(s1) != entity_key(s2):
                out.append(Triple(s1, rel, s2, chunk.id))
    return out


def _relation(between: str) -> str | None:
    """A short linking phrase between two entities ('directed by', 'is located in'), if any."""
    if _REL_BREAK.search(between):
        return None
    words = re.findall(r"\w+", between.lower())
    if not words or len(words) > _MAX_REL_WORDS or all(w in STOPWORDS for w in words):
        return None
    return " ".join(words)
