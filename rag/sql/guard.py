"""The SQL validator: decides, by parsing, whether a statement may run at all.

Every statement the decoder writes (and every statement a user or test hands in) goes
through `validate_sql` before it reaches a connection. It parses with sqlglot and accepts
exactly one read-only query (SELECT, or a UNION/INTERSECT/EXCEPT of SELECTs, optionally
with CTEs) over the registered tables and their columns, with only functions from an
allowlist, and returns the statement *re-generated* from the parse tree with comments
stripped and a LIMIT enforced. The raw text is never executed, so comment tricks and
trailing statements cannot survive.

Limits, on purpose: column checks are by name (a column must exist in one of the query's
tables or be an alias the query defines); which table a qualified column belongs to is left
to the database, whose error then feeds the repair step. Expensive but read-only queries
(huge cross joins, runaway recursive CTEs) pass this check and are stopped by the
executor's timeout and row cap (rag.sql.execute), which is the second and third line of defence
beside the read-only connection itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from rag.errors import UnsafeSQLError

# Functions that may appear in a query: aggregates and pure scalar functions (plus the few
# operators sqlglot models as functions: AND, OR, EXISTS, ...). Anything not
# listed (load_extension, readfile, writefile, pg_read_file, pg_sleep, dblink, set_config,
# lo_import, ...) is refused, so a new dangerous function is refused by default.
ALLOWED_FUNCTIONS = frozenset("""
count sum avg min max total group_concat string_agg array_agg
abs round ceil ceiling floor sign sqrt power pow mod exp ln log log10
length char_length character_length lower upper trim ltrim rtrim substr substring instr strpos position
replace concat concat_ws printf format coalesce ifnull nullif iif if case cast try_cast typeof
date time datetime julianday strftime timetostr tsordstotimestamp tsordstodate strtotime unixepoch
extract date_part date_trunc now current_date current_timestamp to_char
lag lead row_number rank dense_rank ntile first_value last_value percent_rank cume_dist
greatest least distinct
and or xor not exists collate regexplike regexpilike corr
""".split())

# Statement and clause types that change or leave the database, or take locks.
_FORBIDDEN = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter,
              exp.Command, exp.Pragma, exp.Attach, exp.Detach, exp.Transaction, exp.Commit,
              exp.Rollback, exp.Set, exp.Use, exp.Into, exp.Lock, exp.Copy, exp.LoadData,
              exp.TruncateTable)
_QUERY = (exp.Select, exp.Union, exp.Except, exp.Intersect)


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.key.lower()


def validate_sql(sql: str, tables: Mapping[str, Iterable[str]], *, dialect: str = "sqlite",
                 max_rows: int = 1000, schema_name: str | None = None) -> str:
    """Return the safe, normalised form of `sql`, or raise UnsafeSQLError saying why not.

    `tables` maps each allowed table to its columns (names compared case-insensitively).
    `schema_name` is the one schema qualifier accepted (e.g. "public" on PostgreSQL)."""
    text = (sql or "").strip()
    if not text:
        raise UnsafeSQLError("empty SQL statement")
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except (ParseError, TokenError) as e:
        raise UnsafeSQLError(f"SQL does not parse: {str(e).splitlines()[0][:200]}") from e
    if len(statements) != 1:
        raise UnsafeSQLError(f"exactly one statement is allowed, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, _QUERY):
        raise UnsafeSQLError(f"only SELECT queries are allowed, got {tree.key.upper()}")

    allowed = {t.lower(): {c.lower() for c in cols} for t, cols in tables.items()}
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN):
            raise UnsafeSQLError(f"{node.key.upper()} is not allowed in a read-only query")
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if name not in ALLOWED_FUNCTIONS:
                raise UnsafeSQLError(f"function {name}() is not allowed")
    used: set[str] = set()
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise UnsafeSQLError("table-valued functions are not allowed in FROM")
        qualifier = (table.args.get("db") or table.args.get("catalog"))
        if table.args.get("catalog") or (qualifier and str(qualifier.name).lower() != (schema_name or "").lower()):
            raise UnsafeSQLError(f"qualified table {table.sql(dialect)} is not allowed; use the bare table name")
        name = table.name.lower()
        if name in ctes:
            continue
        if name not in allowed:
            raise UnsafeSQLError(f"table {table.name!r} is not in the allowed tables: {sorted(allowed)}")
        used.add(name)

    columns = set().union(*(allowed[t] for t in used)) if used else set()
    aliases = {a.alias.lower() for a in tree.find_all(exp.Alias)}
    aliases |= {c.name.lower() for ta in tree.find_all(exp.TableAlias) for c in ta.columns}
    known = columns | aliases
    for col in list(tree.find_all(exp.Column)):
        name = col.name.lower()
        if name in known:
            continue
        if dialect == "sqlite" and not col.table and col.this.quoted:
            # SQLite reads a double-quoted word that names no column as a string literal;
            # small models (and Spider's gold SQL) rely on it, so make that explicit.
            col.replace(exp.Literal.string(col.name))
            continue
        raise UnsafeSQLError(f"column {col.sql(dialect)} is not in the tables used: {sorted(used)}")

    tree = _cap_limit(tree, max_rows)
    return tree.sql(dialect=dialect, comments=False)


def _cap_limit(tree: exp.Expression, max_rows: int) -> exp.Expression:
    """Add LIMIT max_rows, or lower a larger (or non-literal) LIMIT to it."""
    limit = tree.args.get("limit")
    if isinstance(limit, exp.Limit):
        value = limit.expression
        if isinstance(value, exp.Literal) and not value.is_string and int(value.this) <= max_rows:
            return tree
        limit.set("expression", exp.Literal.number(max_rows))
        return tree
    if isinstance(limit, exp.Fetch) or limit is not None:
        raise UnsafeSQLError("use LIMIT n, not FETCH, to bound the rows")
    return tree.limit(max_rows, copy=False)


def table_columns(schema) -> dict[str, list[str]]:
    """The allowlist `validate_sql` wants, from a DbSchema (rag.sql.schema)."""
    return {t.name: [c.name for c in t.columns] for t in schema.tables}
