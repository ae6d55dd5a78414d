"""A registered database's schema: introspection, storage form, schema linking, prompt form.

`introspect` reads tables, columns, types, primary and foreign keys with SQLAlchemy's
inspector and a few distinct sample values per column (through the read-only executor).
`link_tables` picks the tables a question is about, so the decoder's prompt holds only
those (plus the tables that join them); `render_schema` writes them as CREATE TABLE lines,
the form coder models have seen most.

`match_values` looks up the question's phrases among the text cells of the database
(value linking, as in BRIDGE and CodeS): a small decoder that sees `Region -- e.g. 'Caribbean'`
filters on the right column with the stored spelling, where with generic samples it guessed
the column or copied an unrelated sample into its WHERE clause.

Limits: linking is lexical (identifier parts and matched values against question words,
with crude English plural folding); a question that names nothing in the schema gets every
table when there are few, else the largest ones. Samples are the first distinct values, not
a statistical sample. Value matching is exact (case-insensitive) on word n-grams, plus a
prefix match for quoted titles; it scans each text column once per question, which is cheap
for laptop-sized databases and stops at a time budget on large ones.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass

from sqlalchemy import inspect
from sqlglot import exp

from rag.sql.execute import QueryError, ReadOnlyDatabase
from rag.text import STOPWORDS


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    primary_key: bool = False
    samples: tuple[str, ...] = ()
    categorical: bool = False  # few distinct values (a status, a continent): samples show the vocabulary


@dataclass(frozen=True)
class ForeignKey:
    column: str
    ref_table: str
    ref_column: str


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[ColumnInfo, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()


@dataclass(frozen=True)
class DbSchema:
    dialect: str
    tables: tuple[TableInfo, ...]
    schema_name: str | None = None

    def table(self, name: str) -> TableInfo:
        return next(t for t in self.tables if t.name.lower() == name.lower())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DbSchema:
        tables = tuple(
            TableInfo(t["name"], tuple(ColumnInfo(c["name"], c["type"], c["primary_key"], tuple(c["samples"]),
                                                  c.get("categorical", False))
                                       for c in t["columns"]),
                      tuple(ForeignKey(**f) for f in t["foreign_keys"]))
            for t in d["tables"])
        return cls(d["dialect"], tables, d.get("schema_name"))


CATEGORICAL_MAX = 20  # distinct values


def introspect(db: ReadOnlyDatabase, samples: int = 3) -> DbSchema:
    insp = inspect(db.engine)
    schema_name = None if db.dialect == "sqlite" else insp.default_schema_name
    tables = []
    for name in sorted(insp.get_table_names()):
        if name.lower().startswith("sqlite_"):
            continue
        pk = set(insp.get_pk_constraint(name).get("constrained_columns") or ())
        cols = []
        for c in insp.get_columns(name):
            vals = _samples(db, name, c["name"], samples) if samples else ()
            cols.append(ColumnInfo(c["name"], str(c["type"]), c["name"] in pk, vals,
                                   bool(samples) and _categorical(db, name, c["name"])))
        fks = tuple(ForeignKey(col, fk["referred_table"], ref)
                    for fk in insp.get_foreign_keys(name)
                    for col, ref in zip(fk["constrained_columns"], fk["referred_columns"]))
        tables.append(TableInfo(name, tuple(cols), fks))
    return DbSchema(db.dialect, tuple(tables), schema_name)


def _samples(db: ReadOnlyDatabase, table: str, column: str, n: int) -> tuple[str, ...]:
    col = exp.column(column, quoted=True)
    q = exp.select(col).distinct().from_(exp.table_(table, quoted=True)).where(col.is_(exp.null()).not_()).limit(n)
    try:
        rows = db.execute(q.sql(dialect=db.dialect), max_rows=n).rows
    except QueryError:
        return ()
    return tuple(str(r[0])[:40] for r in rows)


def _categorical(db: ReadOnlyDatabase, table: str, column: str) -> bool:
    """Few distinct values, each used about twice or more (not a name or a title)."""
    col = exp.column(column, quoted=True)
    q = exp.select(exp.Count(this=exp.Distinct(expressions=[col])), exp.Count(this=col.copy())).from_(
        exp.table_(table, quoted=True))
    try:
        distinct, filled = db.execute(q.sql(dialect=db.dialect), max_rows=1).rows[0]
    except QueryError:
        return False
    return 0 < distinct <= CATEGORICAL_MAX and 2 * distinct <= filled


# -- schema linking --------------------------------------------------------------------------
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_WORDS = re.compile(r"[A-Za-z0-9]+")


def _stem(w: str) -> str:
    w = w.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("es") and w[-3] in "sxz":
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def _parts(name: str) -> list[str]:
    return [p for chunk in re.split(r"[_\W]+", name) for p in _CAMEL.split(chunk) if p]


def identifier_words(name: str) -> set[str]:
    """'GovernmentForm' -> {government, form, governmentform}; 'car_makers' -> {car, maker, carmaker}."""
    parts = _parts(name)
    words = {_stem(p) for p in parts}
    words.add(_stem("".join(parts)))
    return {w for w in words if w and w not in STOPWORDS}


def names_table(question: str, table: str) -> bool:
    """Does the question name the table as a whole ('high schoolers' -> Highschooler, not
    'TV channel' -> TV_series)?"""
    return _stem("".join(_parts(table))) in question_words(question)


def question_words(question: str) -> set[str]:
    ws = [w for w in _WORDS.findall(question)]
    out = {_stem(w) for w in ws if w.lower() not in STOPWORDS}
    out |= {_stem(a + b) for a, b in zip(ws, ws[1:])}  # "high schoolers" -> "highschooler"
    return out


# {table: {column: values of that column the question mentions}}
ValueMatches = dict[str, dict[str, tuple[str, ...]]]

_TEXT_TYPE = re.compile(r"char|text|clob|string|enum", re.I)


def _is_text(c: ColumnInfo) -> bool:
    return bool(_TEXT_TYPE.search(c.type or "TEXT"))  # SQLite allows columns without a type


_QUOTED = re.compile(r"[\"“”]([^\"“”]{3,80})[\"“”]")
_EDGE_PUNCT = "?.,!;:'\"“”‘’"


def question_phrases(question: str, max_words: int = 6) -> list[str]:
    """Lower-cased word n-grams of the question that could be a stored value ('joseph kuhr')."""
    words = [w.strip(_EDGE_PUNCT) for w in question.split()]
    words = [w for w in words if w]
    out: set[str] = set()
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + max_words) + 1):
            gram = words[i:j]
            if all(w.lower() in STOPWORDS for w in gram):
                continue
            phrase = " ".join(gram).lower()
            if len(phrase) >= 3 and not _is_number(phrase):
                out.add(phrase)
    return sorted(out)


def match_values(db: ReadOnlyDatabase, schema: DbSchema, question: str, per_column: int = 3,
                 budget_s: float = 2.0) -> ValueMatches:
    """Cells of text columns that equal a phrase of the question (or start with a quoted title).

    Each column is one scan (about 40 ms for all of Spider's world_1 here); on a database big
    enough to spend `budget_s`, the remaining columns are not searched, so a question never
    waits long for this hint."""
    deadline = time.monotonic() + budget_s
    phrases = question_phrases(question)
    quoted = [q.strip().lower() for q in _QUOTED.findall(question)]
    if not phrases and not quoted:
        return {}
    out: ValueMatches = {}
    for t in schema.tables:
        for c in t.columns:
            if not _is_text(c):
                continue
            if time.monotonic() >= deadline:
                return _named_columns(_longest(out), question)
            col = exp.func("LOWER", exp.column(c.name, quoted=True))
            cond = col.isin(*[exp.Literal.string(p) for p in phrases]) if phrases else exp.false()
            for q in quoted:  # a title quoted without its final "!" still finds its row
                cond = cond.or_(exp.Like(this=col.copy(), expression=exp.Literal.string(_like_prefix(q))))
            sel = (exp.select(exp.column(c.name, quoted=True)).distinct()
                   .from_(exp.table_(t.name, db=schema.schema_name, quoted=True)).where(cond).limit(per_column))
            try:
                rows = db.execute(sel.sql(dialect=db.dialect), max_rows=per_column).rows
            except QueryError:
                continue
            vals = tuple(str(r[0]) for r in rows if r[0] is not None)
            if vals:
                out.setdefault(t.name, {})[c.name] = vals
    return _named_columns(_longest(out), question)


def _keep(matches: ValueMatches, keep) -> ValueMatches:
    """The matches for which keep(table, column, value) holds, empty columns and tables dropped."""
    out: ValueMatches = {}
    for table, cols in matches.items():
        for col, vals in cols.items():
            kept = tuple(v for v in vals if keep(table, col, v))
            if kept:
                out.setdefault(table, {})[col] = kept
    return out


def _named_columns(matches: ValueMatches, question: str) -> ValueMatches:
    """A value found in several columns ('Caribbean': a region and a language) stays only in
    the columns the question names ("the Caribbean region"), when it names any."""
    q = question_words(question)
    where: dict[str, list[tuple[str, str]]] = {}
    for table, cols in matches.items():
        for col, vals in cols.items():
            for v in vals:
                where.setdefault(v.lower(), []).append((table, col))

    def keep(table: str, col: str, v: str) -> bool:
        places = where[v.lower()]
        named = [p for p in places if q & identifier_words(p[1])]
        return len(places) == 1 or not named or (table, col) in named

    return _keep(matches, keep)


def _longest(matches: ValueMatches) -> ValueMatches:
    """Drop a match that is part of a longer one ('amc' inside 'amc hornet sportabout (sw)')."""
    every = {v.lower() for cols in matches.values() for vals in cols.values() for v in vals}
    return _keep(matches, lambda _t, _c, v: not any(
        v.lower() != w and re.search(rf"(?<!\w){re.escape(v.lower())}(?!\w)", w) for w in every))


def _like_prefix(text: str) -> str:
    return text.replace("\\", "").replace("%", "").replace("_", "") + "%"


def table_score(question: str, table: TableInfo, matches: ValueMatches | None = None) -> float:
    q = question_words(question)
    low = question.lower()
    score = 2.0 * len(q & identifier_words(table.name))
    for c in table.columns:
        score += 1.0 * bool(q & identifier_words(c.name))
        score += 1.5 * any(len(v) > 2 and v.lower() in low for v in c.samples)
    # A stored value the question names is the strongest sign the table is needed.
    score += 3.0 * len((matches or {}).get(table.name, {}))
    return score


def link_tables(question: str, schema: DbSchema, max_tables: int = 4,
                matches: ValueMatches | None = None) -> list[str]:
    """Names of the tables to show the decoder for this question, in schema order."""
    scored = sorted(((table_score(question, t, matches), t.name) for t in schema.tables), reverse=True)
    chosen = [n for s, n in scored if s > 0][:max_tables]
    if not chosen:
        chosen = [n for _s, n in scored[:max_tables]]
    # Add tables that connect two chosen ones by foreign keys (join tables), once.
    edges = {(t.name, fk.ref_table) for t in schema.tables for fk in t.foreign_keys}
    linked = lambda a, b: (a, b) in edges or (b, a) in edges  # noqa: E731
    for t in schema.tables:
        if t.name in chosen:
            continue
        neighbours = [c for c in chosen if linked(t.name, c)]
        if len(neighbours) >= 2:
            chosen.append(t.name)
    # A chosen table whose foreign key points at an unchosen one: include the target, since
    # questions about "the maker of a model" often need the name held there.
    for name in list(chosen):
        for fk in schema.table(name).foreign_keys:
            if fk.ref_table not in chosen and len(chosen) < max_tables + 2 and any(
                    t.name == fk.ref_table for t in schema.tables):
                chosen.append(schema.table(fk.ref_table).name)
    return [t.name for t in schema.tables if t.name in chosen]


def render_schema(schema: DbSchema, tables: list[str] | None = None, matches: ValueMatches | None = None) -> str:
    """CREATE TABLE statements with sample values as comments, for the prompt; values the
    question mentions come first, in their stored spelling."""
    out = []
    for t in schema.tables:
        if tables is not None and t.name not in tables:
            continue
        lines = []
        found = (matches or {}).get(t.name, {})
        for c in t.columns:
            line = f"  {c.name} {c.type}{' PRIMARY KEY' if c.primary_key else ''}"
            hits = found.get(c.name, ())
            # Samples of a free-text column (names, titles, codes) only tempt a small decoder to
            # copy one into its WHERE clause; numbers show the type, categories the vocabulary.
            shown = c.categorical or not _is_text(c) or all(map(_is_number, c.samples))
            general = c.samples if shown else ()
            samples = (hits + tuple(v for v in general if v not in hits))[:max(3, len(hits))]
            if samples:
                line += ",  -- e.g. " + ", ".join(repr(v) if not _is_number(v) else v for v in samples)
            else:
                line += ","
            lines.append(line)
        lines += [f"  FOREIGN KEY ({fk.column}) REFERENCES {fk.ref_table}({fk.ref_column})," for fk in t.foreign_keys]
        if lines:  # drop the trailing comma, keeping any comment after it
            lines[-1] = lines[-1].replace(",  --", "  --", 1) if ",  --" in lines[-1] else lines[-1].rstrip(",")
        out.append(f"CREATE TABLE {t.name} (\n" + "\n".join(lines) + "\n);")
    return "\n".join(out)


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False
