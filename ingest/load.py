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

from rag.errors import InputError
from rag.types import Document

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}
SUFFIXES = TEXT_SUFFIXES | {".html", ".htm", ".pdf", ".docx", ".jsonl"}


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
    if suffix == ".jsonl":
        return list(load_jsonl(path))
    if suffix in TEXT_SUFFIXES:
        text, title = read_text(path), ""
    elif suffix in (".html", ".htm"):
        text, title = html_text(read_text(path))
    elif suffix == ".pdf":
        text, title = pdf_text(path)
    else:
        text, title = docx_text(path)
    if not text.strip():
        raise InputError("no text could be extracted (empty, or a scanned PDF without a text layer)")
    return [make_document(source, title or first_heading(text) or path.stem, text, {"path": source})]


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "cp949", "utf-16"):  # cp949: Korean files saved by older Windows tools
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise InputError("not valid text in UTF-8, CP949 or UTF-16")


def first_heading(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return ""


def html_text(html: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "nav", "footer"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    lines = (ln.strip() for ln in soup.get_text("\n").splitlines())
    return "\n".join(ln for ln in lines if ln), title


def pdf_text(path: Path) -> tuple[str, str]:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    pages = [(p.extract_text() or "").strip() for p in reader.pages]
    title = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or ""
    return "\n\n".join(p for p in pages if p), str(title)


def docx_text(path: Path) -> tuple[str, str]:
    import docx

    d = docx.Document(str(path))
    paras = [p.text.strip() for p in d.paragraphs if p.text.strip()]
    return "\n\n".join(paras), d.core_properties.title or ""


def load_jsonl(path: Path) -> Iterator[Document]:
    """JSONL corpora: our own {"doc_id","title","text"} and BEIR's {"_id","title","text"}.
    The record id becomes the document's source, so gold labels can name it."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"line {n} is not JSON ({e.msg})") from e
            rid = rec.get("doc_id") or rec.get("_id") or rec.get("id")
            text = rec.get("text")
            if rid is None or not isinstance(text, str):
                raise InputError(f'line {n} needs "doc_id" (or "_id") and "text"')
            if text.strip():
                title = str(rec.get("title") or "")
                yield make_document(str(rid), title, text, {"path": str(path.resolve())})
