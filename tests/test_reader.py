"""The extractive reader (rag.answer.reader): span labels, span search, the pipeline's use of it
(stub reader on the fake backend), and the shipped weights on the sample corpus."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rag.answer import reader as rd
from rag.answer.verify import THRESHOLD
from rag.jsonl import read_jsonl
from rag.train import reader as tr

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"
LIGHTHOUSE = ("The Harbor Point Lighthouse was completed in 1874 on a granite ledge at the mouth of the bay. "
              "It was designed by the engineer Margaret Ellison, who chose a conical cast-iron tower because "
              "it could be shipped in sections and assembled on site.")
TEA = "Tea grows best on well-drained hillsides; the leaves are picked by hand and dried in the sun."


@pytest.fixture(scope="module")
def tok():
    return rd.tokenizer()


def test_features_point_at_the_answer_tokens_or_at_cls(tok):
    long_context = " ".join(["Filler sentence about nothing in particular."] * 60) + " The keeper was Thomas Reed."
    rows = [{"question": "Who designed it?", "context": LIGHTHOUSE, "start": LIGHTHOUSE.index("Margaret"),
             "answer": "Margaret Ellison"},
            {"question": "Who painted it?", "context": LIGHTHOUSE, "start": -1, "answer": ""},
            {"question": "Who was the keeper?", "context": long_context,
             "start": long_context.index("Thomas"), "answer": "Thomas Reed"}]
    f = tr.features(tok, rows)
    spans = [tok.decode(ids[s:e + 1]) if s else None
             for ids, s, e in zip(f["input_ids"], f["start_positions"], f["end_positions"])]
    assert spans[0] == "margaret ellison" and spans[1] is None
    # the long context overflows into several windows: only the one holding the answer points at it
    assert len(spans) > 3 and spans[2:].count("thomas reed") == 1 and spans[2:].count(None) == len(spans) - 3


def test_best_span_respects_order_length_and_the_passage_part():
    seq = [None, 0, 0, None, 1, 1, 1, 1, None]  # [CLS] q q [SEP] p p p p [SEP]
    offsets = [(0, 0), (0, 3), (4, 7), (0, 0), (0, 5), (6, 9), (10, 14), (15, 20), (0, 0)]
    start = np.array([9.0, 8.0, 0, 0, 1.0, 5.0, 0, 0, 0])   # question tokens score high: not allowed
    end = np.array([9.0, 0, 8.0, 0, 0, 0, 4.0, 1.0, 0])
    assert rd._best_span(start, end, seq, offsets) == (6, 14, 9.0)
    # an end before the best start is not a span: the best valid pair wins instead
    end2 = np.array([0, 0, 0, 0, 6.0, 0, 0, 0, 0])
    assert rd._best_span(start, end2, seq, offsets)[:2] == (0, 5)


def test_answerability_is_the_logistic_of_the_margin():
    span = rd.Span(0, "x", 0, 1, score=3.0, null=1.0)
    assert span.cited == "x [1]"  # the marker of the first passage
    assert span.margin == 2.0 and rd.answerability(span) == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert rd.answerability(None) == 0.0


@pytest.mark.skipif(not TRAIN.exists(), reason="needs ../shared/data/train")
def test_training_split_keeps_whole_articles_out_and_labels_spans():
    train, held = tr.split_articles(TRAIN)
    assert len(held) == 3 and not train & held and tr.split_articles(TRAIN) == (train, held)
    rows = tr.examples(TRAIN, held)
    answered = [r for r in rows if r["start"] >= 0]
    assert answered and len(answered) < len(rows)  # unanswerable questions and distractors say "no answer"
    assert all(r["context"][r["start"]:r["start"] + len(r["answer"])] == r["answer"] for r in answered)


@pytest.mark.skipif(not TRAIN.exists(), reason="needs ../shared/data/train")
def test_korquad_examples_locate_every_answer():
    train, held = tr.split_articles(TRAIN, holdout=12, folder="korquad")
    assert len(held) == 12 and not train & held
    rows = tr.examples(TRAIN, set(sorted(held)[:2]), answer_removed=True, folder="korquad")
    answered = [r for r in rows if r["start"] >= 0]
    assert answered and len(answered) < len(rows)  # other paragraphs and answer-removed ones say "no answer"
    assert all(r["context"][r["start"]:r["start"] + len(r["answer"])] == r["answer"] for r in answered)


@pytest.mark.skipif(not TRAIN.exists(), reason="needs ../shared/data/train")
def test_held_out_folder_makes_questions_unanswerable_by_withholding_their_paragraph(tmp_path):
    _, held = tr.split_articles(TRAIN, holdout=12, folder="korquad")
    out = tr.held_out_folder(TRAIN, "korquad", held, tmp_path, per_article=30)
    corpus = {d["doc_id"]: d for d in read_jsonl(out / "corpus.jsonl")}
    qa = list(read_jsonl(out / "qa.jsonl"))
    assert {d["title"] for d in corpus.values()} == held
    unanswerable = [q for q in qa if not q["answerable"]]
    assert 0.1 < len(unanswerable) / len(qa) < 0.5 and all(not q["answers"] for q in unanswerable)
    for q in qa:
        text = " ".join(d["text"] for d in corpus.values() if d["title"] == q["title"]).lower()
        if q["answerable"]:
            assert q["doc_id"] in corpus and any(a.lower() in corpus[q["doc_id"]]["text"].lower() for a in q["answers"])
        else:
            assert q["doc_id"] not in corpus
            source = next(x for x in read_jsonl(TRAIN / "korquad" / "qa.jsonl") if x["qid"] == q["qid"])
            assert not any(a.lower() in text for a in source["answers"])  # the answer is nowhere in the article's rest
    assert max(sum(q["title"] == t for q in qa) for t in held) <= 30
    assert tr.held_out_folder(TRAIN, "korquad", held, tmp_path / "again", per_article=30).joinpath(
        "qa.jsonl").read_text() == (out / "qa.jsonl").read_text()  # the same folder on every run


class _StubReader(rd.Reader):
    """Stands in for rag.answer.reader.Reader's model: finds `name` where a passage holds it, with a
    fixed margin (the gate, Reader.reading, is the real one)."""

    def __init__(self, margin: float, judge_threshold: float | None = None, name: str = "Margaret Ellison"):
        # no weights to load
        self.margin, self.calls, self.judge_threshold, self.name_read = margin, 0, judge_threshold, name

    def read(self, question, passages):
        self.calls += 1
        n = self.name_read
        return [rd.Span(i, n, p.index(n), p.index(n) + len(n), self.margin, 0.0) for i, p in enumerate(passages) if n in p]


def _with_reader(service, margin: float, judge_threshold: float | None = None) -> _StubReader:
    service._lazy["reader"] = stub = _StubReader(margin, judge_threshold)
    return stub


def test_a_confident_reader_answers_with_its_span_and_cites_its_passage(sample_service):
    stub = _with_reader(sample_service, 4.0)
    a = sample_service.ask("Who designed the Harbor Point Lighthouse?", "default")
    assert stub.calls == 1 and not a.abstained
    assert a.text.startswith("Margaret Ellison [") and a.citations[0].source.endswith("lighthouse.txt")
    assert a.trace["raw"].startswith("Margaret Ellison [") and a.model == rd.Reader.name
    assert a.trace["answerability"] == pytest.approx(rd.answerability(rd.Span(0, "", 0, 0, 4.0, 0.0)))


def test_an_unsure_reader_hands_the_question_to_the_decoder(sample_service):
    stub = _with_reader(sample_service, -3.0)  # P(answerable) 0.05 < rd.THRESHOLD 0.5
    a = sample_service.ask("How many steps lead to the lantern room of the lighthouse?", "default")
    assert stub.calls == 1 and "142 steps" in a.text and a.model != rd.Reader.name  # the (fake) decoder's answer
    assert a.trace["reader"]["answerability"] < 0.5 and "answerability" not in a.trace


def test_the_reader_answers_only_at_its_threshold(sample_service, monkeypatch):
    monkeypatch.setattr(rd, "THRESHOLD", 0.99)
    _with_reader(sample_service, 4.0)  # P 0.98: below 0.99, so the decoder answers
    a = sample_service.ask("How many steps lead to the lantern room of the lighthouse?", "default")
    assert "142 steps" in a.text


def test_the_readers_spans_are_judged_at_the_threshold_fitted_with_the_reader(sample_service):
    _with_reader(sample_service, 4.0, judge_threshold=0.25)
    a = sample_service.ask("Who designed the Harbor Point Lighthouse?", "default")
    assert a.model == rd.Reader.name and a.trace["judge_threshold"] == 0.25 and a.verdicts
    # the decoder's answers keep the judge's own threshold
    _with_reader(sample_service, -3.0, judge_threshold=0.25)
    d = sample_service.ask("How many steps lead to the lantern room of the lighthouse?", "default")
    assert d.model != rd.Reader.name and d.trace["judge_threshold"] == THRESHOLD


def test_korean_questions_go_to_the_korean_reader(sample_service):
    english = _with_reader(sample_service, 4.0)
    sample_service._lazy["korean_reader"] = korean = _StubReader(4.0, name="1,947미터")
    korean.name = rd.model_name("e5")
    k = sample_service.ask("한라산의 높이는 얼마인가요?", "default")
    assert english.calls == 0 and korean.calls == 1
    assert k.model == korean.name and k.text.startswith("1,947미터 [") and k.citations[0].source.endswith("jeju.txt")
    assert k.trace["reader"]["span"] == "1,947미터"


def test_without_a_korean_reader_korean_questions_go_to_the_decoder(sample_service):
    english = _with_reader(sample_service, 4.0)
    sample_service._lazy["korean_reader"] = None
    k = sample_service.ask("한라산의 높이는 얼마인가요?", "default")
    assert english.calls == 0 and "1,947미터" in k.text and "reader" not in k.trace


@pytest.mark.skipif(not (rd.trained_path() / rd.WEIGHTS).exists(), reason="no shipped reader weights")
def test_shipped_reader_finds_the_span_and_prefers_no_answer_elsewhere():
    reader = rd.Reader(threads=1)
    spans = reader.read("Who designed the Harbor Point Lighthouse?", [TEA, LIGHTHOUSE])
    assert spans[0].passage == 1 and "Margaret Ellison" in spans[0].text and spans[0].margin > 0
    year = reader.read("When was the Harbor Point Lighthouse completed?", [LIGHTHOUSE])[0]
    assert year.text == "1874" and rd.answerability(year) >= 0.5
    # the passage is on topic but says nothing about the architect's birthplace
    none = reader.read("In which city was Margaret Ellison born?", [LIGHTHOUSE])
    assert not none or rd.answerability(none[0]) < 0.5


def test_a_very_long_question_still_leaves_room_for_the_passage(tok):
    f = tr.features(tok, [{"question": "why " * 400, "context": LIGHTHOUSE, "start": -1, "answer": ""}])
    assert len(f["input_ids"]) >= 1 and all(len(ids) == rd.MAX_LENGTH for ids in f["input_ids"])


def test_the_judge_threshold_comes_from_the_readers_held_out_report(tmp_path):
    assert rd.Reader(tmp_path).judge_threshold is None  # nothing fitted
    (tmp_path / "held_out.json").write_text('{"auroc": 0.7, "judge_threshold": 0.3}')
    assert rd.Reader(tmp_path).judge_threshold == 0.3


@pytest.mark.skipif(not TRAIN.exists(), reason="needs ../shared/data/train")
def test_the_multihop_members_data_adds_halueval_rows_and_answer_removed_paragraphs():
    _, held = tr.split_articles(TRAIN)
    squad = tr.examples(TRAIN, held)
    rows = tr.examples(TRAIN, held, halueval=20, answer_removed=True)
    squad_questions = {r["question"] for r in squad}
    multihop = [r for r in rows if r["question"] not in squad_questions]
    assert sum(r["start"] >= 0 for r in multihop) == 20  # the HaluEval questions, each with its answer span
    assert all(r["context"][r["start"]:r["start"] + len(r["answer"])] == r["answer"] for r in rows if r["start"] >= 0)
    # an answer-removed paragraph: "no answer", and none of the question's gold answers left in it
    golds = {q["question"]: q["answers"] for q in read_jsonl(TRAIN / "squad2" / "qa.jsonl") if q["title"] in held}
    removed = [r for r in rows if r["start"] < 0 and r["question"] in golds and golds[r["question"]]
               and r["context"] not in {s["context"] for s in squad}]
    assert removed and all(not any(a.lower() in r["context"].lower() for a in golds[r["question"]]) for r in removed)
    assert len(rows) > len(squad)
    # HaluEval's multi-hop rows alone (no SQuAD article): each with its answer, most also without it
    multi = tr.examples(TRAIN, set(), halueval=40)
    spans = [r for r in multi if r["start"] >= 0]
    assert len(spans) == 40 and 20 < len(multi) - 40 <= 40
    assert all(r["context"][r["start"]:r["start"] + len(r["answer"])] == r["answer"] for r in spans)
    assert not any(re.search(r"[a-z][.!?][A-Z]", r["context"]) for r in multi)  # paragraphs re-spaced


def test_without_answer_removes_the_sentences_that_hold_it():
    rest = tr.without_answer(LIGHTHOUSE, ["Margaret Ellison"])
    assert rest == "The Harbor Point Lighthouse was completed in 1874 on a granite ledge at the mouth of the bay."
    assert tr.without_answer("Only Margaret Ellison is named here.", ["margaret ellison"]) is None


@pytest.mark.skipif(not (rd.trained_path() / rd.WEIGHTS).exists(), reason="no shipped reader weights")
def test_the_reader_averages_its_members_logits(tmp_path):
    """Two copies of one member read exactly as that member alone; the shipped pair differs from
    its first member alone (both members load and count)."""
    import shutil

    first = tmp_path / "one"
    first.mkdir()
    shutil.copy(rd.trained_path() / rd.WEIGHTS, first / rd.WEIGHTS)
    twice = tmp_path / "twice"
    twice.mkdir()
    for name in rd.MEMBERS:
        shutil.copy(rd.trained_path() / rd.WEIGHTS, twice / name)
    q, passages = "Who designed the Harbor Point Lighthouse?", [TEA, LIGHTHOUSE]
    one, two = rd.Reader(first, threads=1), rd.Reader(twice, threads=1)
    assert len(one.load()) == 1 and len(two.load()) == len(rd.MEMBERS) == 2
    a, b = one.read(q, passages)[0], two.read(q, passages)[0]
    assert (a.text, a.passage) == (b.text, b.passage) and a.margin == pytest.approx(b.margin, abs=1e-4)
    shipped, alone = rd.Reader(threads=1), rd.Reader(threads=1, members=(rd.WEIGHTS,))  # a subset, to compare
    assert len(alone.load()) == 1 and alone.read(q, passages)[0].margin == pytest.approx(a.margin, abs=1e-4)
    if len(shipped.load()) == 2:
        assert shipped.read(q, passages)[0].margin != pytest.approx(a.margin, abs=1e-3)
        # per-member logits, averaged by hand, decode to what read() gives (the comparison script's path)
        enc, logits = shipped.logits(q, passages)
        assert logits.shape[:2] == (2, 2) and not np.allclose(logits[0], logits[1])
        assert rd.spans(enc, *logits.mean(axis=0), passages) == shipped.read(q, passages)


def test_unmatched_names_finds_the_questions_names_missing_near_the_span():
    at = LIGHTHOUSE.index("Margaret")
    span = rd.Span(0, "Margaret Ellison", at, at + 16, 1.0, 0.0)
    # the answer's sentence says "It": the name is one sentence back, which counts
    assert rd.unmatched_names("Who designed the Harbor Point Lighthouse?", LIGHTHOUSE, span) == []
    assert rd.unmatched_names("Who designed the Harbor Point Lighthouse?", LIGHTHOUSE, span, window=0) == ["Harbor", "Point", "Lighthouse"]
    # an entity swap, and a number the passage does not hold
    assert rd.unmatched_names("Who designed the Fort Wayne Lighthouse in 1875?", LIGHTHOUSE, span) == ["1875", "Fort", "Wayne"]
    assert rd.unmatched_names("Who?", LIGHTHOUSE, span) == []


def test_a_multi_hop_question_may_name_the_entity_of_another_passage():
    """Bridge questions name the other passage's entity: for them a name found in any passage
    read counts; for single-hop ones only the span's neighbourhood does (entity swaps)."""
    film = "Big Stone Gap is a 2014 romantic comedy film directed by Adriana Trigiani."
    director = "Adriana Trigiani is an Italian American author based in Greenwich Village."
    q = 'The director of the romantic comedy "Big Stone Gap" is based in what New York city?'
    reader = _StubReader(4.0)
    reader.read = lambda question, passages: [rd.Span(1, "Greenwich Village", passages[1].index("Greenwich"),
                                                      passages[1].index("Greenwich") + 17, 4.0, 0.0)]
    single, multi = reader.reading(q, [film, director]), reader.reading(q, [film, director], multi_hop=True)
    assert single.unmatched == ["Big Stone Gap", "Big", "Stone", "Gap", "New", "York"] and not single.answers(0.5)
    assert multi.unmatched == ["New", "York"] and not multi.answers(0.5)  # no passage names New York
    assert reader.reading(q.replace(" New York", ""), [film, director], multi_hop=True).answers(0.5)
    assert not reader.reading(q.replace(" New York", ""), [film, director], multi_hop=True).answers(0.99)
    assert rd.Reading(None, 0.0, []).answers(0.0) is False
    # the held-out report fits thresholds on the same score: -1 where the gate never answers
    assert single.gate == -1.0 and rd.Reading(None, 0.0, []).gate == -1.0


def test_a_confident_span_for_a_question_naming_what_its_passage_does_not_goes_to_the_decoder(sample_service):
    stub = _with_reader(sample_service, 4.0)
    a = sample_service.ask("Who designed the Harbor Point Lighthouse of Fort Wayne?", "default")
    assert stub.calls == 1 and a.model != rd.Reader.name
    assert a.trace["reader"]["unmatched"] == ["Fort", "Wayne"] and a.trace["reader"]["answerability"] > 0.9


def test_members_must_share_the_encoder_their_record_names(tmp_path):
    """A reader's base comes from training.json (MiniLM without a record); members trained from
    different encoders cannot be averaged token by token, so loading refuses them."""
    import json

    from rag.errors import ModelError

    first, second = rd.MEMBERS
    (tmp_path / first).write_bytes(b"")
    assert rd.member_base(tmp_path, rd.MEMBERS) == "minilm" and rd.Reader(tmp_path).name == rd.Reader.name
    (tmp_path / "training.json").write_text(json.dumps({first: {"base": rd.BASES["e5"]}}))
    reader = rd.Reader(tmp_path)
    assert reader.base == "e5" and reader.name == "extractive-reader:multilingual-e5-small" != rd.Reader.name
    (tmp_path / second).write_bytes(b"")
    with pytest.raises(ModelError, match="different encoders"):
        rd.Reader(tmp_path)


def test_the_shipped_reader_reads_the_same_spans_in_float32_and_bfloat16():
    """RAG_DTYPE (rag.models.weights.compute_dtype) changes how the reader computes, not what it reads."""
    import torch

    question = "Who designed the Harbor Point Lighthouse?"
    found = {}
    for dtype in ("float32", "bfloat16"):
        reader = rd.Reader(threads=1, dtype=dtype)
        assert all(p.dtype == getattr(torch, dtype) for m in reader.load() for p in m.parameters())
        found[dtype] = [(s.passage, s.text, round(s.margin)) for s in reader.read(question, [TEA, LIGHTHOUSE])]
    assert found["float32"] == found["bfloat16"] and "Margaret Ellison" in found["float32"][0][1]


def test_korean_spans_end_before_their_particles():
    from rag.text import without_particles

    assert [without_particles(s) for s in ("경주는", "2013년에", "수도였다", "1,947미터의")] == \
        ["경주", "2013년", "수도", "1,947미터"]
    # what has no particle, and English, is left as it is
    assert without_particles("고춧가루, 마늘, 젓갈") == "고춧가루, 마늘, 젓갈" and without_particles("Warsaw's") == "Warsaw's"
    passage = "경주는 약 천 년 동안 신라의 수도였다."
    seq, offsets = [None, 0, None, 1, 1], [(0, 0), (0, 2), (0, 0), (0, 3), (3, 10)]

    class Enc(dict):
        def sequence_ids(self, w):
            return seq

    enc = Enc(offset_mapping=[offsets], overflow_to_sample_mapping=[0])
    span = rd.spans(enc, np.array([[0, 0, 0, 5.0, 0]]), np.array([[0, 0, 0, 5.0, 0]]), [passage])[0]
    assert (span.text, span.start, span.end) == ("경주", 0, 2)
