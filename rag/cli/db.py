"""`rag db add|list|ask`: SQL databases that answer a collection's table questions, read-only.

`rag db add NAME URL [--collection C]` registers a database (rag.sql.registry); `rag db list`
shows them (passwords masked); `rag db ask NAME QUESTION` answers from one database."""

from __future__ import annotations

import json

from rag.config import Settings
from rag.pipeline import RagService
from rag.sql.registry import add_database, answer_from_database, get_database, list_databases, masked


def _service(args) -> RagService:
    return RagService(Settings())


def _cmd_add(args) -> int:
    svc = _service(args)
    row = add_database(svc.store, svc.settings, args.name, args.url, args.collection)
    tables = ", ".join(f"{t['name']}({len(t['columns'])})" for t in row.schema["tables"])
    print(f"registered {row.name} ({row.dialect}) for collection {row.collection}: {tables}")
    return 0


def _cmd_list(args) -> int:
    for r in list_databases(_service(args).store, args.collection):
        print(f"{r.collection}\t{r.name}\t{r.dialect}\t{masked(r.url)}\t{len(r.schema['tables'])} tables")
    return 0


def _cmd_ask(args) -> int:
    svc = _service(args)
    get_database(svc.store, args.name, args.collection)
    answer = answer_from_database(svc, svc.check_question(args.question), args.collection, args.name)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=1, default=str))
        return 0
    print(answer.text)
    for c in answer.citations:
        print(f"  [{c.marker}] {c.source}: {c.quote}")
    print(f"({'abstained; ' if answer.abstained else ''}{answer.model}; "
          + ", ".join(f"{k} {v:.2f}s" for k, v in answer.timings.items()) + ")")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("db", help="SQL databases that answer questions (read-only)")
    sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    a = sub.add_parser("add", help="register a SQLite file or PostgreSQL URL for a collection")
    a.add_argument("name")
    a.add_argument("url", help="path to a SQLite file, sqlite:///path, or postgresql://user@host/db")
    a.add_argument("--collection", default="default")
    a.set_defaults(fn=_cmd_add)
    a = sub.add_parser("list", help="list registered databases")
    a.add_argument("--collection", default=None)
    a.set_defaults(fn=_cmd_list)
    a = sub.add_parser("ask", help="answer a question from one registered database")
    a.add_argument("name")
    a.add_argument("question")
    a.add_argument("--collection", default="default")
    a.add_argument("--json", action="store_true")
    a.set_defaults(fn=_cmd_ask)
