import json

import pytest

from ingest.chunk import sentence_spans, split_document
from ingest.load import load_file, load_paths, make_document
from rag.errors import InputError
from tests.conftest import SAMPLE


@pytest.mark.parametrize("text", [
    "First sentence. Second one! Third? " * 30,
    "서울은 대한민국의 수도이다 인구는 약 970만 명이다 부산은 항구 도시입니다 정말 아름답죠 " * 15,
    "no punctuation at all " * 100,
])
def test_chunks_keep_exact_offsets_and_size(text):
    doc = make_document("s", "t", text)
    chunks = split_document(doc, 200, 40)
    assert len(chunks) > 1
    for c in chunks:
        assert doc.text[c.start:c.end] == c.text
        assert len(c.text) <= 200
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    # overlap: consecutive chunks share text
    assert any(chunks[i + 1].start < chunks[i].end for i in range(len(chunks) - 1))


def test_korean_sentences_split_on_endings_without_punctuation():
    spans = sentence_spans("부산은 항구 도시입니다 정말 아름답죠 서울은 수도이다")
    assert len(spans) == 3


def test_chunks_end_at_sentence_boundaries():
    text = "Alpha beta gamma. " * 5 + "Delta epsilon zeta. " * 5
    for c in split_document(make_document("s", "t", text), 60, 0):
        assert c.text.endswith(".")


def test_loaders_for_every_sample_format():
    docs, errors = load_paths([SAMPLE])
    assert not errors
    by_name = {d.source.rsplit("/", 1)[-1]: d for d in docs}
    assert set(by_name) >= {"solar_system.md", "lighthouse.txt", "tea.html", "hangul.md", "jeju.txt"}
    assert by_name["tea.html"].title == "A short history of tea"
    assert "<p>" not in by_name["tea.html"].text
    assert "세종대왕" in by_name["hangul.md"].text


def test_pdf_and_docx(tmp_path):
    import docx
    from pypdf import PdfWriter

    d = docx.Document()
    d.add_paragraph("The museum opens at nine in the morning.")
    d.save(tmp_path / "a.docx")
    assert "nine in the morning" in load_file(tmp_path / "a.docx")[0].text
    w = PdfWriter()
    w.add_blank_page(100, 100)
    with open(tmp_path / "blank.pdf", "wb") as f:
        w.write(f)
    with pytest.raises(InputError, match="no text"):
        load_file(tmp_path / "blank.pdf")


def test_bad_files_are_reported_and_the_rest_loaded(tmp_path):
    (tmp_path / "good.txt").write_text("Some good text here.")
    (tmp_path / "bad.xyz").write_text("?")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (tmp_path / "c.jsonl").write_text(json.dumps({"_id": "d1", "title": "T", "text": "beir text"}) + "\n")
    docs, errors = load_paths([tmp_path])
    assert sorted(d.source.rsplit("/", 1)[-1] for d in docs) == ["d1", "good.txt"]
    reasons = {e.path.rsplit("/", 1)[-1]: e.reason for e in errors}
    assert "unsupported file type .xyz" in reasons["bad.xyz"]
    assert "broken.pdf" in reasons
