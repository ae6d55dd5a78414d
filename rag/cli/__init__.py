"""The `rag` command. One subcommand per use case; each handler builds Settings once and
passes it down. The CLI is an edge: it imports ingest/ and evals/ lazily, inside handlers,
so `import rag` stays light and the library never depends on them."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from rag.config import Settings
from rag.errors import RagError

# Modules that add subcommands of their own: each has `register(subparsers)`.
EXTENSIONS: tuple[str, ...] = ("rag.cli.db", "rag.cli.graph", "rag.cli.backup", "rag.train.cli", "rag.train.finetune", "ui.launch")


def _service(args):
    from rag.pipeline import RagService

    return RagService(Settings())


def cmd_ingest(args) -> int:
    from ingest.build import ingest_paths

    svc = _service(args)
    report = ingest_paths(svc.settings, svc.store, svc.embedder(), [Path(p) for p in args.paths],
                          args.collection, progress=not args.json, ray=args.ray)
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1) if args.json else report.summary())
    return 0 if not report.errors or report.added or report.replaced or report.unchanged else 1


def cmd_ask(args) -> int:
    svc = _service(args)
    if args.json:
        print(json.dumps(svc.ask(args.question, args.collection).to_dict(), ensure_ascii=False, indent=1))
        return 0
    answer = None
    for item in svc.ask_stream(args.question, args.collection):
        if isinstance(item, str):
            continue  # print the checked answer, not the raw stream
        answer = item
    print(answer.text)
    if answer.level == "caveat":
        print(f"  Low confidence: {answer.trace['caveat']}")
    for c in answer.citations:
        print(f"  [{c.marker}] {c.source}: \"{c.quote}\"")
    t = ", ".join(f"{k} {v:.2f}s" for k, v in answer.timings.items())
    print(f"({answer.level}; {answer.model}; {t})")
    return 0


def cmd_delete(args) -> int:
    from ingest.build import delete_documents

    svc = _service(args)
    for src in delete_documents(svc.settings, svc.store, args.ref, args.collection):
        print(f"deleted {src}")
    return 0


def cmd_docs(args) -> int:
    svc = _service(args)
    for d in svc.store.documents(args.collection):
        print(f"{d.doc_hash[:12]}  {d.source}  ({d.title})")
    return 0


def cmd_eval(args) -> int:
    module = importlib.import_module(f"evals.{args.mode}")
    metrics = module.run(Settings(), args)
    print(json.dumps(metrics, ensure_ascii=False, indent=1))
    return 0


def cmd_bench(args) -> int:
    if args.scale_out:
        from evals.bench_scale import run
    else:
        from evals.bench import run

    run(Settings(), args)
    return 0


def cmd_serve(args) -> int:
    if args.replicas > 1 or args.ray:
        from rag.api.replicas import serve_replicas

        serve_replicas(Settings(), args.replicas, args.host, args.port, args.ray or "local")
        return 0
    import uvicorn

    from rag.api.app import create_app

    uvicorn.run(create_app(Settings()), host=args.host, port=args.port, log_level="info")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag", description="Offline question answering over your documents, "
                                "with citations and honest abstention.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser("ingest", help="add files or folders to a collection")
    a.add_argument("paths", nargs="+")
    a.add_argument("--collection", default="default")
    a.add_argument("--json", action="store_true", help="print the summary as JSON")
    a.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="load, chunk and embed on a Ray cluster: auto (the one `ray start` runs here, or "
                        "RAY_ADDRESS), host:port, or local (this machine's cores)")
    a.set_defaults(fn=cmd_ingest)

    a = sub.add_parser("ask", help="answer a question from a collection")
    a.add_argument("question")
    a.add_argument("--collection", default="default")
    a.add_argument("--json", action="store_true")
    a.set_defaults(fn=cmd_ask)

    a = sub.add_parser("delete", help="remove a document (path, record id or hash prefix)")
    a.add_argument("ref")
    a.add_argument("--collection", default="default")
    a.set_defaults(fn=cmd_delete)

    a = sub.add_parser("docs", help="list the documents of a collection")
    a.add_argument("--collection", default="default")
    a.set_defaults(fn=cmd_docs)

    a = sub.add_parser("eval", help="measure quality on a labelled data set")
    a.add_argument("mode", choices=["qa", "retrieval", "judge", "sql"],
                   help="qa: answers on a QA folder; retrieval: a BEIR folder; judge: hallucination labels; sql: text-to-SQL")
    a.add_argument("--data", required=True, type=Path)
    a.add_argument("--out", required=True, type=Path)
    a.add_argument("--limit", type=int, default=None, help="evaluate a deterministic subset of N items")
    a.add_argument("--unanswerable-share", type=float, default=None,
                   help="qa with --limit: take this share of the subset from the unanswerable questions")
    a.add_argument("--retrieval-only", action="store_true", help="qa: skip generation")
    a.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="qa/judge/sql: grade on a Ray cluster, one loaded pipeline per worker: auto, host:port or local")
    a.add_argument("--mode", dest="retrieval_mode", default="full",
                   choices=["full", "hybrid", "dense", "lexical", "graph"],
                   help="qa/retrieval: one retriever alone, or the full pipeline's ranking (default)")
    a.set_defaults(fn=cmd_eval)

    a = sub.add_parser("bench", help="measure speed; writes JSON and docs/benchmarks.md")
    a.add_argument("--out", type=Path, default=Path("docs"))
    a.add_argument("--repeats", type=int, default=5)
    a.add_argument("--sizes", default="10000,100000", help="chunk counts for retrieval latency")
    a.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    a.add_argument("--scale-out", action="store_true",
                   help="only ingest and evaluation throughput on Ray with 1 and 2 workers (OUT/benchmarks-scale-out.md)")
    a.add_argument("--peer", metavar="PYTHON", help="the Python of the stock LangChain pipeline's virtual "
                   "environment (../shared/peer-baseline/README.md): adds the side-by-side table")
    a.set_defaults(fn=cmd_bench)

    a = sub.add_parser("serve", help="run the REST API")
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, default=8000)
    a.add_argument("--replicas", type=int, default=1,
                   help="run N copies of the API on Ray Serve behind this address (they share the database "
                        "and the data folder: use PostgreSQL across machines)")
    a.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="the Ray cluster for --replicas: auto, host:port, or local (default: local)")
    a.set_defaults(fn=cmd_serve)

    for name in EXTENSIONS:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was committed by the unfinished step", file=sys.stderr)
        return 130

