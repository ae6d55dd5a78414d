"""Loaders, one per format, each returning Documents. File reading happens here and only here.

Supported: .txt .md .markdown .rst .html .htm .pdf .docx and JSONL corpora (lines of
{"doc_id"|"_id"|"id", "title", "text"}). Directories are walked recursively. A file that
can't be read is reported by name with the reason and skipped; the rest still go in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.formats import read_text
from rag.errors import InputError
from rag.types import Document

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}
SUFFIXES = TEXT_SUFFIXES | {".html", ".htm", ".pdf", ".docx", ".jsonl"}
# Plain text is read whole in this process: a file beyond this is refused, not read into
# memory (HTML, PDF and DOCX are bounded by ingest.parse's worker instead).
MAX_TEXT_MB = 256
MAX_JSONL_LINE_MB = 64  # one record of a JSONL corpus


@dataclass(frozen=True)
class LoadError:
    path: str
    reason: str


def content_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_document(source: str, title: str, text: str, meta: dict | None = None) -> Document:
    return Document(content_id(text), source, title, text, meta or {})


def iter_files(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
        else:
            yield p


def load_paths(paths: list[Path]) -> tuple[list[Document], list[LoadError]]:
    docs: list[Document] = []
    errors: list[LoadError] = []
    for path in iter_files(paths):
        try:
            docs.extend(load_file(path))
        except InputError as e:
            errors.append(LoadError(str(path), str(e)))
        except Exception as e:  # noqa: BLE001 - a parser's own exception still means "this file is unreadable"
            errors.append(LoadError(str(path), f"could not be read ({type(e).__name__}: {e})"))
    return docs, errors


def load_file(path: Path) -> list[Document]:
    if not path.exists():
        raise InputError("no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"unsupported file type {suffix or '(none)'}; supported: {', '.join(sorted(SUFFIXES))}")
    source = str(path.resolve())
    size_mb = path.stat().st_size / (1 << 20)
    if suffix in TEXT_SUFFIXES | {".html", ".htm"} and size_mb > MAX_TEXT_MB:
        raise InputError(f"it is {size_mb:.0f} MB; text files over {MAX_TEXT_MB} MB are not read (split it)")
    if suffix == ".jsonl":
        docs = list(load_jsonl(path))
        if not docs:
            raise InputError("no records with text (an empty corpus)")
        return docs
    if suffix in TEXT_SUFFIXES:
        text, title = read_text(path), ""
    else:
        from ingest.parse import parse

        text, title = parse({".htm": "html"}.get(suffix, suffix[1:]), source)
    if not text.strip():
        raise InputError("no text could be extracted (empty, or a scanned PDF without a text layer)")
    return [make_document(source, title or first_heading(text) or path.stem, text, {"path": source})]


def first_heading(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return ""


def load_jsonl(path: Path) -> Iterator[Document]:
    """JSONL corpora: our own {"doc_id","title","text"} and BEIR's {"_id","title","text"}.
    The record id becomes the document's source, so gold labels can name it."""
    limit = MAX_JSONL_LINE_MB << 20

    def lines(f):
        n = 0
        while True:
            n += 1
            try:
                line = f.readline(limit + 1)
            except UnicodeDecodeError as e:
                raise InputError(f"line {n} is not UTF-8 ({e.reason})") from None
            if not line:
                return
            yield n, line

    with open(path, encoding="utf-8") as f:
        for n, line in lines(f):
            if len(line) > limit:
                raise InputError(f"line {n} is longer than {MAX_JSONL_LINE_MB} MB")
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"line {n} is not JSON ({e.msg})") from e
            except RecursionError:
                raise InputError(f"line {n} nests too deeply") from None
            if not isinstance(rec, dict):
                raise InputError(f"line {n} is not a JSON object")
            rid = rec.get("doc_id") or rec.get("_id") or rec.get("id")
            text = rec.get("text")
            if rid is None or not isinstance(text, str):
                raise InputError(f'line {n} needs "doc_id" (or "_id") and "text"')
            if text.strip():
                title = str(rec.get("title") or "")
                yield make_document(str(rid), title, text, {"path": str(path.resolve())})
