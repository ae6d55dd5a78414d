"""Entity mentions in text by fast offline rules, and the key that resolves name variants.

Used on both sides of the knowledge graph: ingest finds the mentions of every chunk, and
retrieval finds the mentions of a question to link them to graph nodes. No model, no LLM:
- English (and other Latin-script text): capitalised spans ("Adriana Trigiani", "Bank of
  America"), with lower-case connectors inside, minus sentence-initial function words;
  quoted titles ("La Luna").
- Korean: runs of kiwipiepy NNP (proper noun) morphemes ("서울특별시", "이순신").
Limits: common nouns are not entities; a capitalised word at the start of a sentence is
kept unless it is a known function or time word, a verb form, or a word the same text also
writes in lower case, so "Starting in 2011", "Today the ..." and "Green tea (... green tea)"
are dropped but "Pixar said" is kept. Precision is traded for speed: the retriever weighs nodes by degree.

`entity_key` is the entity resolution: case, punctuation, initials, possessives, a leading
"the" and a trailing Wikipedia-style "(disambiguator)" do not make a different entity."""

from __future__ import annotations

import re
import unicodedata

from rag.text import has_hangul, kiwi

_TOKEN = re.compile(r"(?:[A-Z]\.){2,}|[\w][\w'’.\-&]*[\w]|[\w]", re.UNICODE)
_QUOTED = re.compile(r"[\"“]([^\"”]{2,80})[\"”]")
# Lower-case words allowed inside a name ("Bank of America", "Ludwig van Beethoven"). Not "in"
# or "and": "Tata Consultancy Services in Kochi" and "Smith and Jones" are two names each.
_CONNECT = frozenset("of the de la le du di da del der den van von y for".split())
# Capitalised words that are not names (sentence openers, pronouns, months, titles of address).
_NOT_NAMES = frozenset("""
a an the this that these those there here it its he she his her him they them their we our
i you your in on at by for from of to as and or but if when while after before during since
until with without about into over under between among what which who whom whose where why how
is are was were be been do does did has have had not no yes also however although though then
thus so both either neither each every all some many most more other such one two three four
five six seven eight nine ten first second third mr mrs ms dr st
january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday
today yesterday tomorrow tonight now nowadays currently recently later earlier meanwhile
ce bce bc ad am pm utc gmt
""".split())
_PAREN = re.compile(r"\s*\([^)]*\)\s*$")
_INITIALS = re.compile(r"\b((?:\w\s?\.\s?){2,})")


def entity_key(name: str) -> str:
    """The resolution key: one key per entity across case, punctuation and simple aliases.
    'The Beatles', 'beatles', "Beatles'" -> 'beatles'; 'J. R. R. Tolkien', 'J.R.R. Tolkien'
    -> 'jrr tolkien'; 'Big Stone Gap (film)' -> 'big stone gap'; '1973_oil_crisis' ->
    '1973 oil crisis'. Korean keys drop spaces ('서울 특별시' == '서울특별시')."""
    s = unicodedata.normalize("NFKC", name).replace("_", " ").strip()
    s = _PAREN.sub("", s) or s
    s = _INITIALS.sub(lambda m: re.sub(r"[\s.]", "", m.group(1)) + " ", s)
    s = re.sub(r"['’]s\b", "", s)
    s = re.sub(r"[^\w]+", " ", s.casefold()).strip()
    if s.startswith("the ") and len(s) > 4:
        s = s[4:]
    if has_hangul(s):
        s = s.replace(" ", "")
    return s


def sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans, cheaply: kiwi for Korean, punctuation for the rest."""
    if has_hangul(text):
        from rag.text import korean_sentence_spans

        return korean_sentence_spans(text)
    spans, start = [], 0
    for m in re.finditer(r"(?<=[.!?])(?<!\b[A-Z]\.)(?<!\b(?:Mr|Dr|St|Jr|Sr)\.)\s+(?=[A-Z\"“(0-9])|\n+", text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if b > a]


def mentions(text: str) -> list[tuple[str, int]]:
    """Entity mentions as (surface, character offset), in text order, duplicates kept."""
    found = latin_mentions(text)
    if has_hangul(text):
        found += korean_mentions(text)
    found.sort(key=lambda m: m[1])
    return found


def latin_mentions(text: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    # Words this text also writes in lower case are common words: "Green tea ..." opening a
    # sentence is not a name when "green tea" appears later.
    lower = {w for w in re.findall(r"\b[a-z][\w'’\-]*", text)}
    for a, b in sentences(text) if not has_hangul(text) else [(0, len(text))]:
        out.extend(_capitalised_spans(text, a, b, lower))
    for m in _QUOTED.finditer(text):
        q = m.group(1).strip()
        if 0 < len(q.split()) <= 8 and q[:1].isalnum():
            out.append((q, m.start(1)))
    return out


def _capitalised_spans(text: str, a: int, b: int, lower: set[str] = frozenset()) -> list[tuple[str, int]]:
    toks = list(_TOKEN.finditer(text, a, b))
    out, i = [], 0
    while i < len(toks):
        if not _is_cap(toks[i].group()):
            i += 1
            continue
        j = i + 1
        while j < len(toks):
            w = toks[j].group()
            gap = text[toks[j - 1].end():toks[j].start()]
            initial = len(toks[j - 1].group()) == 1 and gap.strip() == "."
            if (gap.strip(" -'’") and not initial) or "\n" in gap:
                break  # a comma, bracket or line break ends the name
            if _is_cap(w) or (w.isdigit() and j > i):
                j += 1
            elif w.lower() in _CONNECT and j + 1 < len(toks) and _is_cap(toks[j + 1].group()):
                j += 1
            else:
                break
        span = toks[i:j]
        if len(span) == 1 and span[0].start() == a and (re.search(r"(ing|ed|ly)$", span[0].group())
                                                          or span[0].group().lower() in lower):
            span = []  # "Starting in 2011, ...", "Green tea ...": capitalised because they open the sentence
        while span and span[0].group().lower() in _NOT_NAMES:
            span = span[1:]
        while span and (span[-1].group().lower() in _CONNECT or span[-1].group().lower() in _NOT_NAMES):
            span = span[:-1]
        if span:
            s, e = span[0].start(), span[-1].end()
            surface = text[s:e].rstrip(".")
            if len(surface) > 1:
                out.append((surface, s))
        i = j
    return out


def _is_cap(w: str) -> bool:
    return w[:1].isupper() or (len(w) > 1 and w[0].isdigit() and w[-1].isalpha() and any(c.isupper() for c in w))


def korean_mentions(text: str) -> list[tuple[str, int]]:
    """Runs of adjacent NNP morphemes (kiwipiepy) are one proper noun."""
    out: list[tuple[str, int]] = []
    run: list = []
    for tok in kiwi().tokenize(text) + [None]:
        if tok is not None and tok.tag == "NNP" and (not run or tok.start <= run[-1].start + run[-1].len + 1):
            run.append(tok)
            continue
        if run:
            s, e = run[0].start, run[-1].start + run[-1].len
            out.append((text[s:e], s))
            run = []
        if tok is not None and tok.tag == "NNP":
            run = [tok]
    return out
