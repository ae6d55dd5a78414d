"""The ask path end to end on the deterministic fakes."""

import pytest

from rag.errors import InputError, NotFoundError
from rag.answer.prompt import ABSTAIN_MESSAGE, ABSTAIN_MESSAGE_KO


def test_answer_is_cited_from_the_right_document(sample_service):
    a = sample_service.ask("How many steps lead to the lantern room of the lighthouse?", "default")
    assert not a.abstained
    assert "142 steps" in a.text
    assert a.citations and a.citations[0].source.endswith("lighthouse.txt")
    assert "142" in a.citations[0].quote
    assert {"retrieve_s", "generate_s", "total_s"} <= set(a.timings)


def test_korean_question_gets_a_korean_answer(sample_service):
    a = sample_service.ask("한라산의 높이는 얼마인가요?", "default")
    assert not a.abstained and "1,947미터" in a.text
    assert a.citations[0].source.endswith("jeju.txt")


def test_unrelated_question_abstains_plainly(sample_service):
    a = sample_service.ask("Who won the 1998 football world championship final?", "default")
    assert a.abstained and a.text == ABSTAIN_MESSAGE and a.citations == ()
    k = sample_service.ask("내일 날씨는 어떤가요?", "default")
    assert k.abstained and k.text == ABSTAIN_MESSAGE_KO


def test_stream_yields_text_then_the_answer(sample_service):
    items = list(sample_service.ask_stream("In which year was the light automated and the last keeper left?", "default"))
    assert all(isinstance(x, str) for x in items[:-1]) and len(items) > 2
    assert "1962" in items[-1].text


def test_bad_questions_and_unknown_collection(sample_service):
    with pytest.raises(InputError):
        sample_service.ask("   ", "default")
    with pytest.raises(InputError, match="at most"):
        sample_service.ask("x" * 5000, "default")
    with pytest.raises(NotFoundError, match="rag ingest"):
        sample_service.ask("anything at all?", "nope")


def test_answer_to_dict_is_json_ready(sample_service):
    import json

    d = sample_service.ask("What is the largest planet?", "default").to_dict()
    json.dumps(d)
    assert {"question", "text", "citations", "abstained", "timings", "context"} <= set(d)


class _PhraseOnly:
    """A decoder that answers with a bare phrase, as the real prompt asks."""

    name = "phrase-only"

    def __init__(self, reply):
        self.reply = reply

    def stream(self, messages, max_new_tokens):
        yield self.reply


def test_phrase_without_marker_is_cited_to_the_passage_that_contains_it(sample_service):
    sample_service._generator = _PhraseOnly("142  Steps")
    a = sample_service.ask("How many steps lead to the lantern room of the lighthouse?", "default")
    assert not a.abstained and a.text.startswith("142 Steps [")
    marker = a.citations[0].marker
    assert a.text.endswith(f"[{marker}]") and a.context[marker - 1].chunk.source.endswith("lighthouse.txt")


def test_phrase_found_in_no_passage_stays_uncited(sample_service):
    sample_service._generator = _PhraseOnly("a purple elephant")
    a = sample_service.ask("How many steps lead to the lantern room of the lighthouse?", "default")
    assert a.citations == () and "[" not in a.text


def test_a_reworded_answer_cites_the_passage_with_its_numbers_and_words():
    from rag.pipeline import attribute
    from rag.types import Chunk, Hit

    def hit(i, text):
        return Hit(Chunk(i, "d", text, 0, len(text), 0, f"{i}.txt", ""), 1.0, "fused")

    hits = [hit(5, "Hallasan on Jeju is 1,947 metres high."), hit(6, "The tower is 31 metres tall; its lens came from Paris.")]
    (c,) = attribute("31 meters", hits)  # the decoder's spelling, not the passage's
    assert c.marker == 2 and c.chunk_id == 6 and "31 metres" in c.quote
    assert attribute("42 meters", hits) == ()  # a number no passage holds: uncited, the check judges it
    assert attribute("London fog", hits) == ()

