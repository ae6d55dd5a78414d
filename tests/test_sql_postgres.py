"""The SQL tool against a real PostgreSQL server started in a temporary folder: introspection,
validated queries in a READ ONLY transaction, writes refused by the server, statement_timeout."""

from __future__ import annotations


import pytest

from rag.errors import UnsafeSQLError
from rag.sql.execute import QueryError, ReadOnlyDatabase
from rag.sql.guard import table_columns, validate_sql
from rag.sql.schema import introspect

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def city_url(pg_url):
    """The module's database with one small table to query."""
    from sqlalchemy import create_engine, text

    eng = create_engine(pg_url)
    with eng.begin() as c:
        c.execute(text("CREATE TABLE city (id INT PRIMARY KEY, name TEXT, population INT)"))
        c.execute(text("INSERT INTO city VALUES (1, 'Oslo', 700000), (2, 'Bergen', 285000)"))
    eng.dispose()
    return pg_url


def test_postgres_read_only_queries(city_url):
    db = ReadOnlyDatabase(city_url, timeout_s=1.0)
    schema = introspect(db)
    assert [t.name for t in schema.tables] == ["city"] and schema.schema_name == "public"
    tables = table_columns(schema)
    sql = validate_sql("SELECT name FROM public.city WHERE population > 300000", tables, dialect="postgres",
                       schema_name="public")
    assert db.execute(sql).rows == (("Oslo",),)
    with pytest.raises(UnsafeSQLError):
        validate_sql("SELECT pg_sleep(10)", tables, dialect="postgres")
    # Bypassing the validator: the server itself refuses writes in the READ ONLY transaction.
    for hostile in ("DELETE FROM city", "DROP TABLE city", "UPDATE city SET name = 'x'",
                    "CREATE TABLE evil (a INT)", "SELECT nextval('x')"):
        with pytest.raises(QueryError):
            db.execute(hostile)
    with pytest.raises(QueryError, match="longer than"):
        db.execute("SELECT pg_sleep(5)")
    assert db.execute("SELECT count(*) FROM city").rows == ((2,),)
    db.dispose()
