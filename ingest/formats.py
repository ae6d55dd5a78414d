"""How each format becomes text. Plain text is decoded in the ingesting process (read_text);
the parsers of HTML, PDF and DOCX run in ingest.parse's worker process (PARSERS: each takes
a path and returns (text, title))."""

from __future__ import annotations

from pathlib import Path

from rag.errors import InputError


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "cp949", "utf-16"):  # cp949: Korean files saved by older Windows tools
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise InputError("not valid text in UTF-8, CP949 or UTF-16")


def html_file(path: str) -> tuple[str, str]:
    return html_text(read_text(Path(path)))


def html_text(html: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "nav", "footer"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    lines = (ln.strip() for ln in soup.get_text("\n").splitlines())
    return "\n".join(ln for ln in lines if ln), title


def pdf_text(path: str) -> tuple[str, str]:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    pages = [(p.extract_text() or "").strip() for p in reader.pages]
    title = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or ""
    return "\n\n".join(p for p in pages if p), str(title)


def docx_text(path: str) -> tuple[str, str]:
    import docx

    d = docx.Document(str(path))
    paras = [p.text.strip() for p in d.paragraphs if p.text.strip()]
    return "\n\n".join(paras), d.core_properties.title or ""


PARSERS = {"html": html_file, "pdf": pdf_text, "docx": docx_text}
