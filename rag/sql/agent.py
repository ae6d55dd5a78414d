"""Answering questions from a registered SQL database: route -> SQL -> rows -> checked answer.

    question -> stored values it names + linked tables -> prompt (schema of linked tables,
             matched values, generic few-shot) -> decoder -> fix misattributed columns
             -> drop joins nothing uses
             -> validate (rag.sql.guard) -> execute read-only (rag.sql.execute)
             -> on error or no rows: one repair with the error in the prompt
             -> prose from the rows -> consistency check -> Answer citing SQL and rows

The consistency check is lexical: every number and every capitalised name in the prose must
occur in the rows (names may also come from the question, which the prose may echo). A
prose answer that fails it is dropped and the rows themselves are the answer; no rows is an
abstention. Limits: the router is a keyword heuristic, not a classifier; the few-shot
examples are generic (a library database written for this module), not tuned per database.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from rag.errors import UnsafeSQLError
from rag.sql.execute import QueryError, QueryResult, ReadOnlyDatabase
from rag.sql.guard import table_columns, validate_sql
from rag.sql.schema import (
    DbSchema,
    ValueMatches,
    link_tables,
    match_values,
    names_table,
    render_schema,
    table_score,
)
from rag.types import Answer, Citation

Route = Literal["documents", "database", "both"]

SYSTEM = ("You are an expert SQL writer. Given a database schema and a question, write one {dialect} "
          "SELECT query that answers it. Use only the tables and columns in the schema. Select only the "
          "columns the question asks for. Reply with the SQL only, in a ```sql block.")

# Generic worked examples on a made-up schema (never the evaluation databases).
_FEW_SHOT_SCHEMA = """CREATE TABLE author (
  id INTEGER PRIMARY KEY,
  name TEXT,  -- e.g. 'Ann Lee', 'Bo Chen'
  country TEXT  -- e.g. 'Canada', 'Chile'
);
CREATE TABLE book (
  id INTEGER PRIMARY KEY,
  title TEXT,  -- e.g. 'Blue Rivers', 'Night Train'
  author_id INTEGER,
  price REAL,  -- e.g. 12.5, 20.0
  year INTEGER,  -- e.g. 1999, 2004
  FOREIGN KEY (author_id) REFERENCES author(id)
);"""
FEW_SHOT = [
    ("How many books were published after 2000?", "SELECT count(*) FROM book WHERE year > 2000"),
    ("List the name of each author and the number of books they wrote.",
     "SELECT T1.name, count(*) FROM author AS T1 JOIN book AS T2 ON T1.id = T2.author_id GROUP BY T1.id"),
    ("What is the title of the most expensive book?", "SELECT title FROM book ORDER BY price DESC LIMIT 1"),
    ("Which countries have authors with no books?",
     "SELECT country FROM author WHERE id NOT IN (SELECT author_id FROM book)"),
]

_CUES = re.compile(r"\b(how many|number of|count|average|mean|total|sum|maximum|minimum|most|least|highest|"
                   r"lowest|largest|smallest|list|each|per|top \d+|more than|less than|at least)\b", re.I)


def route(question: str, schema: DbSchema | None, has_documents: bool) -> Route:
    """Documents, the database, or both (database first, documents if it finds nothing)."""
    if schema is None:
        return "documents"
    if not has_documents:
        return "database"
    score = max((table_score(question, t) for t in schema.tables), default=0.0)
    if score >= 2 and _CUES.search(question):
        return "database"
    return "both" if score >= 1 else "documents"


def sql_messages(question: str, schema: DbSchema, tables: list[str],
                 matches: ValueMatches | None = None) -> list[dict[str, str]]:
    dialect = "SQLite" if schema.dialect == "sqlite" else "PostgreSQL"
    msgs = [{"role": "system", "content": SYSTEM.format(dialect=dialect)}]
    shots = "\n\n".join(f"Question: {q}\n```sql\n{s}\n```" for q, s in FEW_SHOT)
    msgs.append({"role": "user", "content": f"Schema:\n{_FEW_SHOT_SCHEMA}\n\nExamples:\n{shots}\n\n"
                                            f"Schema:\n{render_schema(schema, tables, matches)}\n\nQuestion: {question}"})
    return msgs


_BLOCK = re.compile(r"```(?:sql|sqlite)?\s*(.*?)(?:```|$)", re.S | re.I)
_START = re.compile(r"\b(SELECT|WITH)\b", re.I)


def extract_sql(text: str) -> str:
    """The SQL in the decoder's reply: a fenced block if any, else from the first SELECT/WITH."""
    m = _BLOCK.search(text)
    sql = m.group(1) if m else text
    s = _START.search(sql)
    sql = sql[s.start():] if s else sql
    return sql.strip().rstrip(";").strip()


def drop_unused_joins(sql: str, question: str, columns: Mapping[str, Iterable[str]],
                      dialect: str = "sqlite") -> tuple[str, list[str]]:
    """The query without inner joins to tables that neither the query uses nor the question names.

    A small decoder joins a neighbouring table by habit ("the continent of Anguilla" joined
    with city); such a join only repeats or filters the rows the user asked for. It is kept
    when its columns appear anywhere outside its own ON clause (an unqualified column that the
    table has counts), when the question names the table ("students who have friends": the join
    is the filter), and in queries that aggregate, group or use DISTINCT, where a join can be
    the point. Returns the SQL (unchanged if nothing was dropped) and the dropped tables."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except SqlglotError:
        return sql, []
    cols = {t.lower(): {c.lower() for c in cs} for t, cs in columns.items()}
    dropped = []
    for sel in list(tree.find_all(exp.Select)):
        if sel.args.get("group") or sel.args.get("distinct") or sel.find(exp.AggFunc) or sel.find(exp.Star):
            continue
        for join in list(sel.args.get("joins") or []):
            table = join.this
            if not isinstance(table, exp.Table) or join.side or join.kind not in ("", "INNER"):
                continue
            alias, name = table.alias_or_name.lower(), table.name.lower()
            if names_table(question, table.name):
                continue
            used = any(
                c.find_ancestor(exp.Join) is not join and (c.table.lower() == alias if c.table
                                                          else c.name.lower() in cols.get(name, ()))
                for c in sel.find_all(exp.Column))
            if not used:
                join.pop()
                dropped.append(table.name)
    return (tree.sql(dialect=dialect), dropped) if dropped else (sql, [])


def _norm(name: str) -> str:
    return re.sub(r"[_\W]+", "", name).lower()


def fix_columns(sql: str, columns: Mapping[str, Iterable[str]], dialect: str = "sqlite") -> tuple[str, list[str]]:
    """The query with misattributed or misspelt columns put right where only one fix fits.

    Small decoders often qualify a column with the wrong alias (`T2.SurfaceArea` when T1 is
    `country`) or write it in another case style (`life_expectancy` for `LifeExpectancy`).
    A column its table lacks is renamed to the one column of that table with the same letters,
    else re-qualified with the one other table of the same SELECT that has it (never inside a
    join's ON clause: a wrong join condition is a wrong join); anything less certain is left
    for the validator to reject. Returns the SQL and the fixes made."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except SqlglotError:
        return sql, []
    cols = {t.lower(): {c.lower(): c for c in cs} for t, cs in columns.items()}
    fixes = []
    for sel in tree.find_all(exp.Select):
        scope = {}  # alias -> (alias as written, table), for this SELECT's FROM and JOINs only
        for src in [sel.args.get("from_"), *(sel.args.get("joins") or [])]:
            if src is not None and isinstance(src.this, exp.Table):
                scope[src.this.alias_or_name.lower()] = (src.this.alias_or_name, src.this.name.lower())
        for col in sel.find_all(exp.Column):
            if col.find_ancestor(exp.Select) is not sel or isinstance(col.this, exp.Star):
                continue
            name = col.name.lower()
            if col.table:
                own = scope.get(col.table.lower())
                if own is None or own[1] not in cols or name in cols[own[1]]:
                    continue
                homes = [own[1]]
            else:
                homes = [t for _a, t in scope.values() if t in cols]
                if any(name in cols[t] for t in homes):
                    continue
            renamed = {c for t in homes for k, c in cols[t].items() if _norm(k) == _norm(name)}
            if len(renamed) == 1:
                fixes.append(f"{col.sql(dialect=dialect)} -> {next(iter(renamed))}")
                col.set("this", exp.to_identifier(next(iter(renamed))))
            elif col.table and not col.find_ancestor(exp.Join):  # a wrong ON clause is a wrong join: leave it
                others = [a for key, (a, t) in scope.items() if key != col.table.lower() and name in cols.get(t, ())]
                if len(others) == 1:
                    fixes.append(f"{col.sql(dialect=dialect)} -> {others[0]}.{col.name}")
                    col.set("table", exp.to_identifier(others[0]))
    return (tree.sql(dialect=dialect), fixes) if fixes else (sql, [])


@dataclass
class SqlAttempt:
    raw: str
    sql: str  # as extracted
    safe_sql: str | None = None  # as validated and executed
    error: str | None = None
    result: QueryResult | None = None
    fixed_columns: list[str] = field(default_factory=list)  # what fix_columns changed
    dropped_joins: list[str] = field(default_factory=list)  # tables drop_unused_joins took out


@dataclass
class SqlOutcome:
    attempts: list[SqlAttempt] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    values: ValueMatches = field(default_factory=dict)  # cells the question names, by table and column
    seconds: float = 0.0

    @property
    def final(self) -> SqlAttempt | None:
        """The attempt to answer from: the last one with rows, else the last that ran."""
        ran = [a for a in self.attempts if a.result is not None]
        with_rows = [a for a in ran if a.result.rows]
        return (with_rows or ran or [None])[-1]


MAX_NEW_TOKENS = 200  # one SQL statement, with room for a join or two


class SqlAgent:
    """Writes, checks and runs SQL for one database with one decoder."""

    def __init__(self, generator, db: ReadOnlyDatabase, schema: DbSchema, max_new_tokens: int = MAX_NEW_TOKENS,
                 max_tables: int = 4):
        self.generator = generator
        self.db = db
        self.schema = schema
        self.allowed = table_columns(schema)
        self.max_new_tokens = max_new_tokens
        self.max_tables = max_tables

    def run(self, question: str) -> SqlOutcome:
        t0 = time.perf_counter()
        values = match_values(self.db, self.schema, question)
        out = SqlOutcome(tables=link_tables(question, self.schema, self.max_tables, values), values=values)
        messages = sql_messages(question, self.schema, out.tables, values)
        first = self._attempt(messages, question)
        out.attempts.append(first)
        if first.error or (first.result is not None and not first.result.rows):
            problem = first.error or "it returned no rows"
            # The first try often failed because linking left out a table: repair with a wider
            # schema (every table of a small database), and say plainly not to repeat the query.
            wide = ([t.name for t in self.schema.tables] if len(self.schema.tables) <= 2 * self.max_tables
                    else link_tables(question, self.schema, 2 * self.max_tables, values))
            repair = sql_messages(question, self.schema, wide, values) + [
                {"role": "assistant", "content": f"```sql\n{first.sql}\n```"},
                {"role": "user", "content": f"That query is wrong: {problem}. Write a different, corrected "
                                            "query. Use only the tables and columns in the schema; join "
                                            "tables through their foreign keys where needed."}]
            out.attempts.append(self._attempt(repair, question))
        out.seconds = time.perf_counter() - t0
        return out

    def _attempt(self, messages: list[dict[str, str]], question: str) -> SqlAttempt:
        raw = self.generator.generate(messages, self.max_new_tokens).text
        att = SqlAttempt(raw, extract_sql(raw))
        att.sql, att.fixed_columns = fix_columns(att.sql, self.allowed, self.schema.dialect)
        att.sql, att.dropped_joins = drop_unused_joins(att.sql, question, self.allowed, self.schema.dialect)
        try:
            att.safe_sql = validate_sql(att.sql, self.allowed, dialect=self.schema.dialect,
                                        max_rows=self.db.max_rows, schema_name=self.schema.schema_name)
            att.result = self.db.execute(att.safe_sql)
        except (UnsafeSQLError, QueryError) as e:
            att.error = str(e)
        return att


# -- from rows to an answer -----------------------------------------------------------------
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_NAME = re.compile(r"\b[A-Z][\w'’.-]*[\w]")


def _numbers(text: str) -> list[float]:
    out = []
    for m in _NUMBER.findall(text):
        try:
            out.append(float(m.replace(",", "")))
        except ValueError:
            pass
    return out


def unsupported_claims(prose: str, question: str, result: QueryResult) -> list[str]:
    """Numbers and names in `prose` that the rows (or, for names, the question) don't contain."""
    cells = [c for row in result.rows for c in row]
    text = " ".join(str(c) for c in cells).lower()
    nums = [float(c) for c in cells if isinstance(c, (int, float)) and not isinstance(c, bool)]
    nums += _numbers(text) + [float(len(result.rows))]
    bad = []
    for m in _NUMBER.finditer(prose):
        raw = m.group().rstrip(",")
        try:
            v = float(raw.replace(",", ""))
        except ValueError:
            continue
        places = len(raw.split(".")[1]) if "." in raw else 0
        if not any(abs(v - n) < 1e-9 or round(n, places) == v for n in nums):
            bad.append(raw)
    low_q = question.lower()
    for sentence in re.split(r"(?<=[.!?])\s+", prose):
        for i, m in enumerate(_NAME.finditer(sentence)):
            word = m.group().rstrip(".").lower()
            if i == 0 and m.start() == 0:
                continue  # sentence-initial capital is grammar, not a name
            if word not in text and word not in low_q:
                bad.append(m.group())
    return bad


ANSWER_SYSTEM = ("Answer the question in one short sentence using only the rows from the database. "
                 "Copy names and numbers exactly as they appear in the rows.")


def rows_table(result: QueryResult, limit: int = 20) -> str:
    lines = [" | ".join(result.columns)]
    lines += [" | ".join("" if v is None else str(v) for v in row) for row in result.rows[:limit]]
    if len(result.rows) > limit or result.truncated:
        lines.append(f"... ({'more than ' if result.truncated else ''}{len(result.rows)} rows)")
    return "\n".join(lines)


def answer_from_outcome(question: str, outcome: SqlOutcome, db_name: str, generator=None,
                        max_new_tokens: int = 64) -> Answer:
    """The Answer for a SQL outcome: checked prose + SQL + rows, rows alone, or an abstention."""
    att = outcome.final
    trace: dict = {"route": "database", "database": db_name, "tables": outcome.tables, "values": outcome.values,
                   "attempts": [{"sql": a.sql, "safe_sql": a.safe_sql, "error": a.error,
                                  "fixed_columns": a.fixed_columns, "dropped_joins": a.dropped_joins}
                                 for a in outcome.attempts]}
    timings = {"sql_s": outcome.seconds}
    model = getattr(generator, "name", "")
    if att is None or not att.result.rows:
        why = "the query found no rows" if att is not None else (outcome.attempts[-1].error or "no valid SQL")
        trace.update(abstain_code="database", abstain_reason=f"The database gave no answer: {why}.")
        return Answer(question, f"I don't know: the database gave no answer ({why}).", (), (), True, model,
                      timings, trace=trace)
    res = att.result
    trace.update(sql=att.safe_sql, columns=list(res.columns), rows=[list(r) for r in res.rows[:50]],
                 truncated=res.truncated)
    table = rows_table(res)
    prose = ""
    if generator is not None:
        t0 = time.perf_counter()
        msgs = [{"role": "system", "content": ANSWER_SYSTEM},
                {"role": "user", "content": f"Rows:\n{table}\n\nQuestion: {question}"}]
        prose = generator.generate(msgs, max_new_tokens).text.strip().split("\n")[0]
        timings["answer_s"] = time.perf_counter() - t0
        bad = unsupported_claims(prose, question, res)
        trace["prose"] = prose
        if bad:
            trace["prose_rejected"] = bad
            prose = ""
    text = prose if prose else f"From the database:\n{table}"
    cite = Citation(1, -1, f"sql:{db_name}", att.safe_sql)
    return Answer(question, text, (cite,), (), False, model, timings, trace=trace)
