"""Value linking and sample display in the SQL prompt (rag.sql.schema): no model needed."""

from __future__ import annotations

import sqlite3

import pytest

from rag.sql.agent import drop_unused_joins, fix_columns
from rag.sql.execute import ReadOnlyDatabase
from rag.sql.schema import (
    introspect,
    link_tables,
    match_values,
    question_phrases,
    render_schema,
)


@pytest.fixture
def atlas(tmp_path):
    path = tmp_path / "atlas.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE country (code TEXT PRIMARY KEY, name TEXT, region TEXT, area REAL);
        CREATE TABLE language (country_code TEXT REFERENCES country(code), language TEXT, official TEXT);
        CREATE TABLE show (id INTEGER PRIMARY KEY, title TEXT, writer TEXT);
    """)
    regions = ["Caribbean", "Western Europe", "Caribbean", "Western Europe", "Caribbean", "Western Europe"]
    for i, region in enumerate(regions):
        con.execute("INSERT INTO country VALUES (?, ?, ?, ?)", (f"C{i}", f"Land {i}", region, 100.0 * i))
        con.execute("INSERT INTO language VALUES (?, ?, ?)", (f"C{i}", "Caribbean" if i == 0 else "English",
                                                            "T" if i % 2 else "F"))
    con.executemany("INSERT INTO show VALUES (?, ?, ?)", [(1, "The Rise of the Blue Beetle!", "Joseph Kuhr"),
                                                         (2, "Evil Under the Sea!", "Todd Casey")])
    con.commit()
    con.close()
    db = ReadOnlyDatabase(str(path), timeout_s=1.0)
    yield db, introspect(db)
    db.dispose()


def test_phrases_are_word_ngrams_without_stopword_only_ones():
    phrases = question_phrases("How many shows were written by Joseph Kuhr?")
    assert "joseph kuhr" in phrases and "kuhr" in phrases
    assert "by" not in phrases and "were" not in phrases


def test_question_values_are_found_in_their_stored_spelling(atlas):
    db, schema = atlas
    assert match_values(db, schema, "How many shows did joseph kuhr write?") == {"show": {"writer": ("Joseph Kuhr",)}}
    # a quoted title without its final "!" still finds the row
    assert match_values(db, schema, 'Who wrote "The Rise of the Blue Beetle"?') == {
        "show": {"title": ("The Rise of the Blue Beetle!",)}}
    assert match_values(db, schema, "What is the total area?") == {}


def test_a_value_in_two_columns_stays_where_the_question_names_the_column(atlas):
    db, schema = atlas
    found = match_values(db, schema, "What is the total area of the countries in the Caribbean region?")
    assert found == {"country": {"region": ("Caribbean",)}}  # not language.language = 'Caribbean'
    # with no column named, both places are kept for the decoder to choose from
    both = match_values(db, schema, "Anything about Caribbean?")
    assert both == {"country": {"region": ("Caribbean",)}, "language": {"language": ("Caribbean",)}}


def test_matched_values_link_their_table_and_lead_the_samples(atlas):
    db, schema = atlas
    question = "How many shows did Todd Casey write?"
    found = match_values(db, schema, question)
    assert "show" in link_tables(question, schema, 1, found)
    text = render_schema(schema, ["show"], found)
    assert "writer TEXT  -- e.g. 'Todd Casey'" in text  # and not 'Joseph Kuhr', the free-text sample


def test_free_text_samples_are_hidden_but_categories_and_numbers_shown(atlas):
    _db, schema = atlas
    text = render_schema(schema, ["country", "language"])
    assert "region TEXT,  -- e.g. 'Caribbean', 'Western Europe'" in text  # 2 values, 3 rows each
    assert "official TEXT,  -- e.g. 'F', 'T'" in text or "official TEXT  -- e.g. 'F', 'T'" in text
    assert "area REAL  -- e.g. 0.0, 100.0, 200.0" in text
    assert "'Land 0'" not in text  # names would only tempt the decoder to copy them


COLUMNS = {"country": ["code", "name", "region", "area"], "language": ["country_code", "language", "official"],
           "city": ["id", "name", "country_code"]}


def test_a_join_nothing_uses_is_dropped():
    sql = ("SELECT T1.region FROM country AS T1 JOIN city AS T2 ON T1.code = T2.country_code "
           "WHERE T1.name = 'Anguilla'")
    out, dropped = drop_unused_joins(sql, "Which region is Anguilla in?", COLUMNS)
    assert dropped == ["city"]
    assert out == "SELECT T1.region FROM country AS T1 WHERE T1.name = 'Anguilla'"


@pytest.mark.parametrize("sql, question", [
    # a column of the joined table is selected or filtered on
    ("SELECT T1.name FROM country AS T1 JOIN language AS T2 ON T1.code = T2.country_code "
     "WHERE T2.language = 'English'", "Which countries speak English?"),
    # an unqualified column the joined table has
    ("SELECT name FROM country AS T1 JOIN language AS T2 ON T1.code = T2.country_code WHERE official = 'T'",
     "Names of countries with an official language?"),
    # the question names the table: the join is the filter
    ("SELECT T1.name FROM country AS T1 JOIN city AS T2 ON T1.code = T2.country_code",
     "Which countries have a city?"),
    # aggregates, grouping and DISTINCT can need the join's rows
    ("SELECT T1.name, count(*) FROM country AS T1 JOIN city AS T2 ON T1.code = T2.country_code GROUP BY T1.code",
     "How many per country?"),
    ("SELECT DISTINCT T1.name FROM country AS T1 JOIN city AS T2 ON T1.code = T2.country_code", "Which ones?"),
    # outer joins are left alone
    ("SELECT T1.name FROM country AS T1 LEFT JOIN city AS T2 ON T1.code = T2.country_code", "Names?"),
])
def test_a_join_that_may_matter_is_kept(sql, question):
    assert drop_unused_joins(sql, question, COLUMNS) == (sql, [])


def test_a_column_under_the_wrong_alias_or_in_another_case_style_is_fixed():
    sql = ("SELECT SUM(T2.area) FROM country AS T1 JOIN language AS T2 ON T1.code = T2.country_code "
           "WHERE T1.Region = 'Caribbean'")
    out, fixes = fix_columns(sql, COLUMNS)
    assert fixes == ["T2.area -> T1.area"] and out.startswith("SELECT SUM(T1.area) FROM")
    cols = {"country": ["Code", "LifeExpectancy"]}
    out, fixes = fix_columns("SELECT AVG(life_expectancy) FROM country", cols)
    assert out == "SELECT AVG(LifeExpectancy) FROM country" and fixes == ["life_expectancy -> LifeExpectancy"]


@pytest.mark.parametrize("sql", [
    "SELECT T1.name FROM country AS T1",  # nothing wrong
    "SELECT T1.nonsense FROM country AS T1 JOIN city AS T2 ON T1.code = T2.country_code",  # no table has it
    "SELECT T1.name FROM country AS T1 JOIN city AS T2 ON T1.code = T2.code",  # a wrong join stays wrong
    "SELECT T3.name FROM country AS T1 JOIN city AS T2 ON T1.code = T2.country_code "
    "JOIN language AS T3 ON T1.code = T3.country_code",  # name: in both country and city, ambiguous
])
def test_a_column_fix_that_is_not_certain_is_not_made(sql):
    assert fix_columns(sql, COLUMNS) == (sql, [])


def test_value_lookup_quotes_the_question_safely(atlas):
    db, schema = atlas
    path = db.path
    before = path.read_bytes()
    hostile = "Shows by O'Brien'); DROP TABLE show; -- or \"x%' OR '1'='1\"?"
    assert match_values(db, schema, hostile) == {}
    assert path.read_bytes() == before
    assert db.execute("SELECT count(*) FROM show").rows == ((2,),)


def test_value_lookup_stops_when_its_time_budget_is_spent(atlas):
    db, schema = atlas
    assert match_values(db, schema, "How many shows did Todd Casey write?", budget_s=0.0) == {}
