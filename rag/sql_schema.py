"""A registered database's schema: introspection, storage form, schema linking, prompt form.

`introspect` reads tables, columns, types, primary and foreign keys with SQLAlchemy's
inspector and a few distinct sample values per column (through the read-only executor).
`link_tables` picks the tables a question is about, so the decoder's prompt holds only
those (plus the tables that join them); `render_schema` writes them as CREATE TABLE lines,
the form coder models have seen most.

Limits: linking is lexical (identifier parts and sample values against question words,
with crude English plural folding); a question that names nothing in the schema gets every
table when there are few, else the largest ones. Samples are the first distinct values, not
a statistical sample.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from sqlalchemy import inspect
from sqlglot import exp

from rag.sql_exec import QueryError, ReadOnlyDatabase
from rag.text import STOPWORDS


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    primary_key: bool = False
    samples: tuple[str, ...] = ()


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
            TableInfo(t["name"], tuple(ColumnInfo(c["name"], c["type"], c["primary_key"], tuple(c["samples"]))
                                       for c in t["columns"]),
                      tuple(ForeignKey(**f) for f in t["foreign_keys"]))
            for t in d["tables"])
        return cls(d["dialect"], tables, d.get("schema_name"))


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
            cols.append(ColumnInfo(c["name"], str(c["type"]), c["name"] in pk, vals))
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


def identifier_words(name: str) -> set[str]:
    """'GovernmentForm' -> {government, form, governmentform}; 'car_makers' -> {car, maker, carmaker}."""
    parts = [p for chunk in re.split(r"[_\W]+", name) for p in _CAMEL.split(chunk) if p]
    words = {_stem(p) for p in parts}
    words.add(_stem("".join(parts)))
    return {w for w in words if w and w not in STOPWORDS}


def question_words(question: str) -> set[str]:
    ws = [w for w in _WORDS.findall(question)]
    out = {_stem(w) for w in ws if w.lower() not in STOPWORDS}
    out |= {_stem(a + b) for a, b in zip(ws, ws[1:])}  # "high schoolers" -> "highschooler"
    return out


def table_score(question: str, table: TableInfo) -> float:
    q = question_words(question)
    low = question.lower()
    score = 2.0 * len(q & identifier_words(table.name))
    for c in table.columns:
        score += 1.0 * bool(q & identifier_words(c.name))
        score += 1.5 * any(len(v) > 2 and v.lower() in low for v in c.samples)
    return score


def link_tables(question: str, schema: DbSchema, max_tables: int = 4) -> list[str]:
    """Names of the tables to show the decoder for this question, in schema order."""
    scored = sorted(((table_score(question, t), t.name) for t in schema.tables), reverse=True)
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


def render_schema(schema: DbSchema, tables: list[str] | None = None) -> str:
    """CREATE TABLE statements with sample values as comments, for the prompt."""
    out = []
    for t in schema.tables:
        if tables is not None and t.name not in tables:
            continue
        lines = []
        for c in t.columns:
            line = f"  {c.name} {c.type}{' PRIMARY KEY' if c.primary_key else ''}"
            if c.samples:
                line += ",  -- e.g. " + ", ".join(repr(v) if not _is_number(v) else v for v in c.samples)
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
