"""The SQL tool against a real PostgreSQL server started in a temporary folder: introspection,
validated queries in a READ ONLY transaction, writes refused by the server, statement_timeout."""

from __future__ import annotations

import functools
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from rag.errors import UnsafeSQLError
from rag.sql_exec import QueryError, ReadOnlyDatabase
from rag.sql_guard import table_columns, validate_sql
from rag.sql_schema import introspect

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_url():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL server binaries not installed")
    bindir = os.path.dirname(found[-1])
    root = Path(tempfile.mkdtemp(prefix="rag-sqlpg-"))  # the server cannot run from root-only folders
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True)
    run(as_user + [f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "rag", "--no-sync"])
    run(as_user + [f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                   f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    url = f"postgresql+psycopg://rag@127.0.0.1:{port}/postgres"
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("CREATE TABLE city (id INT PRIMARY KEY, name TEXT, population INT)"))
        c.execute(text("INSERT INTO city VALUES (1, 'Oslo', 700000), (2, 'Bergen', 285000)"))
    eng.dispose()
    try:
        yield url
    finally:
        subprocess.run(as_user + [f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_read_only_queries(pg_url):
    db = ReadOnlyDatabase(pg_url, timeout_s=1.0)
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
