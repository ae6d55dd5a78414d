"""Entity and relation extraction from chunks, for the knowledge graph. Rules only, no model.

Per chunk:
- the document title is an entity the chunk is *about* (role 'title'): encyclopedic corpora
  (HotpotQA, SQuAD, Wikipedia dumps) title each paragraph with its subject;
- the mentions found by rag.entities (capitalised spans, quoted titles, Korean NNP runs);
  a one-word mention that is the last word of a longer name in the same chunk or title
  ("Trigiani" after "Adriana Trigiani") is an alias of that name;
- relations: title -mentions-> each entity; inside a sentence, two consecutive entities
  joined by a short verb phrase give that phrase as the relation ("directed by"), other
  pairs in the sentence a 'co_occurs' relation (at most MAX_PER_SENTENCE entities each); a
  sentence opening with a pronoun ("It was designed by ...") relates the title entity to the
  sentence's first entity by the verb phrase between them.
Speed: about a millisecond per English chunk; Korean pays for kiwipiepy (see bench).
Limits: no coreference beyond the alias rule, no typed entities, relations are surface text."""

from __future__ import annotations

import re

from rag.entities import entity_key, mentions, sentences
from rag.store.graph import Facts
from rag.text import STOPWORDS, tokenize
from rag.types import Chunk, Triple

MAX_PER_SENTENCE = 8
_MAX_REL_WORDS = 4
_REL_BREAK = re.compile(r"[,;:()\[\]\"“”]")
_PREPOSITIONS = frozenset("by in of at on from to for with into as about near under after before".split())
_AUXILIARIES = frozenset("is was are were be been being has have had the a an its his her their also".split())
# A sentence opening with one of these is about the previous sentence's subject (its first
# entity), or, in the chunk's first sentence, about the document's subject (its title).
_PRONOUNS = frozenset("it he she they this".split())
_KO_PARTICLE = re.compile(r"^\s*(?:은|는|이|가|을|를|의|에서|에게|에|와|과|도|으로|로)(?=\s|$)")


def extract(chunks: list[Chunk]) -> list[Facts]:
    return [extract_chunk(c) for c in chunks]


def extract_chunk(chunk: Chunk) -> Facts:
    title = chunk.title.replace("_", " ").strip()
    title_key = entity_key(title)
    found = _resolve_aliases(mentions(chunk.text), title)
    entities: list[tuple[str, str]] = [("title", title)] if title_key else []
    seen = {title_key}
    for surface, _pos, _end in found:
        k = entity_key(surface)
        if k and k not in seen and not k.isdigit():
            seen.add(k)
            entities.append(("mention", surface))
    triples: list[Triple] = []
    if title_key:
        triples += [Triple(title, "mentions", s, chunk.id) for role, s in entities if role == "mention"]
    subject = title if title_key else None  # what a pronoun opening a sentence refers to
    for a, b in sentences(chunk.text):
        ms = [m for m in found if a <= m[1] < b and entity_key(m[0])][:MAX_PER_SENTENCE]
        triples += _sentence_relations(chunk, ms)
        first = re.match(r"\s*(\w+)", chunk.text[a:b])
        if first and first.group(1).lower() in _PRONOUNS:
            # "It was designed by the engineer Margaret Ellison": the verb phrase relates the subject
            if ms and subject and entity_key(ms[0][0]) != entity_key(subject):
                rel = _relation(chunk.text[a + first.end():ms[0][1]])
                if rel:
                    triples.append(Triple(subject, rel, ms[0][0], chunk.id))
        elif ms and ms[0][1] - a < 40:  # a sentence that opens with an entity: the next pronoun's subject
            subject = ms[0][0]
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
    """The verb phrase linking two entities ("was designed by the engineer" -> "designed by"),
    if the text between them is one: no punctuation, up to the last preposition, without
    auxiliaries and articles, at most _MAX_REL_WORDS words, and holding a content word (Korean
    particles alone, "는", are not a relation)."""
    between = _KO_PARTICLE.sub("", between)  # the particle of the entity before: "제주도는" -> "는"
    if _REL_BREAK.search(between) or not tokenize(between):
        return None
    words = re.findall(r"\w+", between.lower())
    last_prep = max((i for i, w in enumerate(words) if w in _PREPOSITIONS), default=None)
    if last_prep is not None:
        words = words[:last_prep + 1]  # "made in", not "made in the city of"
    while words and words[0] in _AUXILIARIES:
        words = words[1:]
    while words and words[-1] in _AUXILIARIES:  # "composed the" -> "composed"
        words = words[:-1]
    if not words or len(words) > _MAX_REL_WORDS or all(w in STOPWORDS for w in words):
        return None
    return " ".join(words)
