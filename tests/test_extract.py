"""Entity/relation extraction rules (English and Korean) and entity resolution keys."""

from __future__ import annotations

from ingest.extract import extract_chunk
from rag.entities import entity_key, mentions
from rag.types import Chunk


def _chunk(text: str, title: str, cid: int = 1) -> Chunk:
    return Chunk(cid, "d", text, 0, len(text), 0, "src", title)


def test_english_mentions_capitalised_spans_quotes_and_initials():
    text = ('Starting in 2011, he worked as head of story on Bob Peterson\'s film "The Good Dinosaur". '
            "J. R. R. Tolkien lived in New York City. The Bank of America is big.")
    surfaces = [s for s, _ in mentions(text)]
    assert "Bob Peterson's" in surfaces
    assert "The Good Dinosaur" in surfaces
    assert "J. R. R. Tolkien" in surfaces
    assert "New York City" in surfaces
    assert "Bank of America" in surfaces
    assert "Starting" not in surfaces  # a capitalised verb opening a sentence is not a name
    assert not any(s in ("The", "He") for s in surfaces)


def test_entity_key_merges_case_punctuation_and_alias_variants():
    assert entity_key("The Beatles") == entity_key("beatles") == entity_key("Beatles'")
    assert entity_key("J. R. R. Tolkien") == entity_key("J.R.R. Tolkien") == "jrr tolkien"
    assert entity_key("Big Stone Gap (film)") == entity_key("Big Stone Gap") == "big stone gap"
    assert entity_key("Bob Peterson's") == entity_key("BOB PETERSON")
    assert entity_key("1973_oil_crisis") == "1973 oil crisis"
    assert entity_key("서울 특별시") == entity_key("서울특별시")
    assert entity_key("Adriana Trigiani") != entity_key("Greenwich Village")


def test_extract_english_chunk_title_aliases_and_relations():
    text = ("Adriana Trigiani is an Italian American author based in Greenwich Village, New York City. "
            "Trigiani wrote novels. Big Stone Gap was directed by Adriana Trigiani.")
    f = extract_chunk(_chunk(text, "Adriana Trigiani", 7))
    assert f.chunk_id == 7
    assert ("title", "Adriana Trigiani") in f.entities
    keys = {entity_key(s) for _r, s in f.entities}
    assert {"greenwich village", "new york city", "big stone gap"} <= keys
    assert "trigiani" not in keys  # the surname alone resolves to the full name
    rels = {(entity_key(t.subject), t.relation, entity_key(t.object)) for t in f.triples}
    assert ("adriana trigiani", "mentions", "greenwich village") in rels
    assert ("big stone gap", "directed by", "adriana trigiani") in rels
    assert all(t.chunk_id == 7 for t in f.triples)


def test_sentence_openers_dates_and_common_words_are_not_entities():
    text = ("Today the lighthouse is a museum. Green tea and black tea come from one plant; green tea is "
            "not oxidised. The writer Lu Yu composed The Classic of Tea around 760 CE.")
    keys = {entity_key(s) for _r, s in extract_chunk(_chunk(text, "Tea", 1)).entities}
    assert {"lu yu", "classic of tea"} <= keys
    assert not keys & {"today", "green", "ce"}


def test_a_pronoun_subject_relates_the_entity_the_text_is_about():
    text = ("The Harbor Point Lighthouse was completed in 1874. It was designed by the engineer Margaret "
            "Ellison. Mars is the fourth planet. It is often called the Red Planet.")
    f = extract_chunk(_chunk(text, "The Harbor Point Lighthouse", 2))
    rels = {(entity_key(t.subject), t.relation, entity_key(t.object)) for t in f.triples}
    assert ("harbor point lighthouse", "designed by", "margaret ellison") in rels
    assert ("mars", "often called", "red planet") in rels  # "It" is the previous sentence's subject
    assert not any(r[0] == "harbor point lighthouse" and r[1] != "mentions" and r[2] == "red planet" for r in rels)


def test_extract_korean_proper_nouns_with_kiwi():
    text = "이순신 장군은 조선 중기의 무신으로, 한산도 대첩에서 승리했다. 서울특별시 종로구에 동상이 있다."
    f = extract_chunk(_chunk(text, "이순신", 3))
    keys = {entity_key(s) for _r, s in f.entities}
    assert {"이순신", "조선", "한산도"} <= keys
    assert any(k.startswith("서울특별시") for k in keys)
    assert "장군" not in keys and "무신" not in keys  # common nouns are not entities
    rels = {(entity_key(t.subject), t.relation, entity_key(t.object)) for t in f.triples}
    assert ("이순신", "mentions", "한산도") in rels
    assert not any(t.relation in ("은", "는") for t in f.triples)  # a particle is not a relation
