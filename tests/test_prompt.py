from rag.answer.prompt import build_messages, is_abstention, parse_citations
from rag.types import Chunk, Hit


def hits():
    return [Hit(Chunk(i + 100, "d", t, 0, len(t), 0, f"src{i}", "T"), 1.0, "fused")
            for i, t in enumerate(["Seoul has 9.7 million people.", "Busan is a port city."])]


def test_prompt_numbers_passages():
    msgs = build_messages("How many people live in Seoul?", hits())
    assert "[1] T: Seoul has 9.7 million people." in msgs[-1]["content"]
    assert "[2] T: Busan" in msgs[-1]["content"]


def test_invalid_citations_are_dropped_and_valid_ones_resolved():
    text, cites = parse_citations("9.7 million [1][7] people [3, 2].", hits())
    assert text == "9.7 million [1] people [2]."
    assert [(c.marker, c.chunk_id, c.source) for c in cites] == [(1, 100, "src0"), (2, 101, "src1")]
    assert cites[0].quote == "Seoul has 9.7 million people."


def test_abstention_phrases():
    for t in ["I don't know", "I do not know.", "모르겠습니다", "", "  ", "[1]", " [2]."]:
        assert is_abstention(t)
    assert not is_abstention("9.7 million [1]")
