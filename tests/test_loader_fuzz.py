"""Loaders under hostile input (ingest.load, ingest.parse): random and mutated files of every
format, and the classic bombs. Every input must end as documents or an InputError that says
what is wrong: no other exception, no hang (the parser worker's time budget), bounded memory
(its memory budget). `RAG_FUZZ_EXAMPLES=2000 pytest tests/test_loader_fuzz.py` is the long run
(docs/reliability.md); CI runs the default count."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import load, parse
from rag.errors import InputError

EXAMPLES = int(os.environ.get("RAG_FUZZ_EXAMPLES", "40"))


def pdf(text: str = "The Harbor Point Lighthouse is 31 meters tall.", stream: bytes | None = None) -> bytes:
    """A small valid PDF with one page of text (xref offsets computed)."""
    content = stream if stream is not None else f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = io.BytesIO(), []
    out.write(b"%PDF-1.4\n")
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def docx(paragraphs=("The Harbor Point Lighthouse is 31 meters tall.", "한라산의 높이는 1,947미터이다.")) -> bytes:
    import docx as python_docx

    d = python_docx.Document()
    for p in paragraphs:
        d.add_paragraph(p)
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


SEEDS = {
    ".txt": "The lighthouse was automated in 1962.\n한라산은 제주도에 있다.\n".encode(),
    ".md": "# Lighthouse\n\nIt is **31 meters** tall.\n\n- built 1871\n".encode(),
    ".html": "<html><head><title>T</title></head><body><p>Tea is grown in <b>Jeju</b>.</p>"
             "<script>x()</script></body></html>".encode(),
    ".jsonl": (json.dumps({"doc_id": "a", "title": "A", "text": "first record"}) + "\n"
               + json.dumps({"_id": "b", "text": "두 번째 기록"}) + "\n").encode(),
    ".pdf": pdf(),
    ".docx": docx(),
}


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """Random bytes, or the seed with a few bytes flipped, inserted, deleted or cut off."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=2048))
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


def outcome(path) -> str:
    """'documents' or 'refused'; anything else raises and fails the test."""
    try:
        docs = load.load_file(path)
    except InputError as e:
        assert str(e), "an InputError must say what is wrong"
        return "refused"
    assert docs and all(d.text.strip() for d in docs)
    return "documents"


@pytest.mark.parametrize("suffix", sorted(SEEDS))
def test_seed_files_load(tmp_path, suffix):
    path = tmp_path / f"seed{suffix}"
    path.write_bytes(SEEDS[suffix])
    assert outcome(path) == "documents"


@pytest.mark.parametrize("suffix", sorted(SEEDS))
def test_random_and_mutated_files_end_as_documents_or_a_clear_error(tmp_path_factory, suffix):
    folder = tmp_path_factory.mktemp("fuzz")
    seen = {"documents": 0, "refused": 0}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated(SEEDS[suffix]))
    def check(data):
        path = folder / f"input{suffix}"
        path.write_bytes(data)
        t = time.monotonic()
        seen[outcome(path)] += 1
        assert time.monotonic() - t < parse.TIME_BUDGET_S + 5

    check()
    assert sum(seen.values()) >= min(EXAMPLES, 10)
    print(f"\n{suffix}: {sum(seen.values())} inputs, {seen['documents']} read, {seen['refused']} refused "
          "with a reason, 0 other exceptions, 0 over the time budget")


def test_a_parser_that_hangs_is_stopped_and_the_next_file_still_loads(tmp_path, monkeypatch):
    """A worker that never answers stands for any parser loop: it is killed at the time
    budget, the file is refused by name, and the next file gets a fresh worker."""
    import sys

    parse._stop()
    monkeypatch.setattr(parse, "TIME_BUDGET_S", 1.0)
    monkeypatch.setattr(parse, "worker_command", lambda: [sys.executable, "-c", "import time; time.sleep(3600)"])
    path = tmp_path / "loop.pdf"
    path.write_bytes(SEEDS[".pdf"])
    t = time.monotonic()
    with pytest.raises(InputError, match="longer than 1 s"):
        load.load_file(path)
    assert time.monotonic() - t < 10 and parse._worker is None  # killed, not left running
    monkeypatch.undo()
    assert outcome(path) == "documents"


def test_a_docx_zip_bomb_is_refused_within_the_memory_budget(tmp_path, monkeypatch):
    """document.xml inflating to 768 MB (a megabyte on disk) against a worker budget of 512 MB
    (2 GB in use): the worker runs out of its budget, not the machine; the file is refused
    with the reason and the next one loads in a fresh worker."""
    parse._stop()
    monkeypatch.setattr(parse, "MEMORY_BUDGET_MB", 512)
    path = tmp_path / "bomb.docx"
    good = zipfile.ZipFile(io.BytesIO(SEEDS[".docx"]))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for item in good.infolist():
            if item.filename != "word/document.xml":
                z.writestr(item, good.read(item))
        with z.open("word/document.xml", "w", force_zip64=True) as f:
            f.write(b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
                    b'wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>')
            block = b"A" * (1 << 24)
            for _ in range(48):  # 768 MB of one text node
                f.write(block)
            f.write(b"</w:t></w:r></w:p></w:body></w:document>")
    assert path.stat().st_size < 20 << 20
    with pytest.raises(InputError, match="needs more than 512 MB"):
        load.load_file(path)
    monkeypatch.undo()
    ok = tmp_path / "ok.docx"
    ok.write_bytes(SEEDS[".docx"])
    assert outcome(ok) == "documents"


def test_a_pdf_stream_bomb_is_refused_or_read_within_budget(tmp_path):
    squeeze, block = zlib.compressobj(9), b"0" * (1 << 24)
    bomb = b"".join([squeeze.compress(block) for _ in range(64)] + [squeeze.flush()])  # 1 GB in one stream
    body = pdf(stream=bomb).replace(b"<< /Length", b"<< /Filter /FlateDecode /Length", 1)
    path = tmp_path / "bomb.pdf"
    path.write_bytes(body)
    assert outcome(path) in ("documents", "refused")


@pytest.mark.parametrize("suffix,body", [
    (".html", b"<div>" * 200_000 + b"deep" + b"</div>" * 200_000),
    (".docx", None),  # XML nested 100,000 deep
    (".jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n"),
])
def test_deeply_nested_markup(tmp_path, suffix, body):
    if body is None:
        good = zipfile.ZipFile(io.BytesIO(SEEDS[".docx"]))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for item in good.infolist():
                z.writestr(item, good.read(item) if item.filename != "word/document.xml" else
                           b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
                           + b"<w:body>" * 100_000 + b"</w:body>" * 100_000 + b"</w:document>")
        body = out.getvalue()
    path = tmp_path / f"deep{suffix}"
    path.write_bytes(body)
    assert outcome(path) in ("documents", "refused")


def test_a_huge_single_line_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "line.txt"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # 1 GB, sparse: costs no disk
    t = time.monotonic()
    with pytest.raises(InputError, match="over 256 MB"):
        load.load_file(path)
    assert time.monotonic() - t < 1
    line = tmp_path / "line.jsonl"
    with open(line, "wb") as f:
        f.write(b'{"doc_id": "x", "text": "')
        f.seek(70 << 20)
        f.write(b'"}\n')
    with pytest.raises(InputError, match="longer than 64 MB"):
        load.load_file(line)
