"""Sentence-respecting chunking with overlap and exact character offsets.

LangChain's TextSplitter does the packing (size, overlap, start offsets); we give it
sentences instead of its default character separators. English-like text splits after
. ! ? and line breaks; Korean text uses kiwi's sentence splitter, which knows endings such
as -다, -요 and -죠 that often come without punctuation. A sentence longer than a chunk is
cut at spaces."""

from __future__ import annotations

import re

from langchain_text_splitters import TextSplitter

from rag.text import has_hangul, korean_sentence_spans
from rag.types import Chunk, Document

_SENT_END = re.compile(r"(?<=[.!?。])[\"')\]]*\s+|\n\s*\n|\n(?=\s*[-*#\d])")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence; spans are contiguous and cover the whole text."""
    if has_hangul(text):
        starts = [s for s, _ in korean_sentence_spans(text)]
    else:
        starts = [m.end() for m in _SENT_END.finditer(text)]
    cuts = sorted({0, *[s for s in starts if 0 < s < len(text)], len(text)})
    return list(zip(cuts, cuts[1:]))


class SentenceSplitter(TextSplitter):
    def __init__(self, chunk_size: int, chunk_overlap: int):
        super().__init__(chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True,
                         strip_whitespace=True)

    def split_text(self, text: str) -> list[str]:
        pieces: list[str] = []
        for s, e in sentence_spans(text):
            pieces.extend(self._cut_long(text[s:e]))
        return self._merge_splits(pieces, "")

    def _cut_long(self, sentence: str) -> list[str]:
        if len(sentence) <= self._chunk_size:
            return [sentence]
        out, cur = [], ""
        for word in re.findall(r"\S+\s*", sentence):
            if cur and len(cur) + len(word) > self._chunk_size:
                out.append(cur)
                cur = ""
            cur += word
        return out + ([cur] if cur else [])


def split_document(doc: Document, chunk_size: int = 800, chunk_overlap: int = 120) -> list[Chunk]:
    splitter = SentenceSplitter(chunk_size, chunk_overlap)
    chunks: list[Chunk] = []
    cursor = 0
    for piece in splitter.split_text(doc.text):
        # locate each piece at or after the previous start: exact offsets even when a
        # sentence repeats elsewhere in the document
        start = doc.text.find(piece, cursor)
        if start < 0:  # cannot happen for pieces cut from doc.text; kept as a hard guard
            raise AssertionError("chunk not found in its document")
        chunks.append(Chunk(-1, doc.id, piece, start, start + len(piece), len(chunks), doc.source, doc.title))
        cursor = start + 1
    return chunks
