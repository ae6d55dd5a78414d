"""Language-aware text helpers shared by ingest, retrieval, prompts and metrics.

Korean is agglutinative: "서울의", "서울은" and "서울" are one word with different particles,
so lexical matching tokenizes Korean into morphemes with kiwipiepy and keeps content
morphemes only (nouns, verb and adjective stems, foreign words, numbers). Other scripts use
a lower-cased word regex with English stop words removed."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_WORD = re.compile(r"\w+", re.UNICODE)
# Kiwi tags worth matching on: nouns, verb/adjective stems, roots, foreign words, numbers.
_KEEP_TAGS = ("NN", "NR", "NP", "VV", "VA", "XR", "SL", "SN", "SH", "MAG")

STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does for from had has have how i if in "
    "into is it its of on or s so such t that the their them then there these they this to was "
    "were what when where which who whom whose why will with would you your".split()
)


def has_hangul(text: str) -> bool:
    return bool(_HANGUL.search(text))


def is_korean(text: str) -> bool:
    """True when Hangul makes up a fair share of the letters (question language detection)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    return sum(1 for c in letters if _HANGUL.match(c)) / len(letters) >= 0.3


@lru_cache(maxsize=1)
def kiwi():
    """The Korean morphological analyser, loaded once per process (about 1 s). Without its
    multi-word dictionary (names of several words, "알렉스 로드리게스"): it costs 200 of the 500
    resident MB, and without it BM25 matches such a name word by word (a query with the surname
    alone matches too) while rag.entities.korean_mentions joins the adjacent proper nouns itself."""
    from kiwipiepy import Kiwi

    return Kiwi(load_multi_dict=False)


def tokenize(text: str) -> list[str]:
    """Tokens for BM25: Korean morphemes where there is Hangul, lower-cased words elsewhere."""
    text = unicodedata.normalize("NFKC", text)
    if not has_hangul(text):
        return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    out: list[str] = []
    for tok in kiwi().tokenize(text):
        if tok.tag.startswith(_KEEP_TAGS):
            form = tok.form.lower()
            if form not in STOPWORDS:
                out.append(form)
    return out


def korean_sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentence boundaries of Korean text, as character offsets, from kiwi's splitter
    (it knows endings such as -다, -요, -죠 that carry no punctuation)."""
    return [(s.start, s.end) for s in kiwi().split_into_sents(text)]


def without_particles(span: str) -> str:
    """A Korean answer span without the particles and copula endings that close it ("경주는"
    -> "경주", "1995년에" -> "1995년", "수도였다" -> "수도"): the reader's SentencePiece pieces
    join a noun's last syllable and its particle ("년에" is one piece), so a span cannot end
    between them. The answer a person wants, and KorQuAD's gold, is the bare phrase."""
    if not has_hangul(span):
        return span
    tokens = kiwi().tokenize(span)
    end = len(tokens)
    while end > 1 and tokens[end - 1].tag.startswith(("J", "E", "VCP")):
        end -= 1
    cut = tokens[end].start if end < len(tokens) else len(span)
    return span[:cut].rstrip() or span
