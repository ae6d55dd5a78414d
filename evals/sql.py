"""`rag eval sql`: text-to-SQL execution accuracy on folders of SQLite databases.

DIR holds one folder per database: db.sqlite and questions.jsonl ({"qid","question",
"gold_sql"}). For each question the SQL agent (rag.sql.agent) writes, validates and runs a query
on a read-only connection; the gold query runs on the same kind of connection. A prediction
is correct when its rows equal the gold rows as a multiset (as a list when the gold query
has an ORDER BY), with the columns in any order as in Spider's execution accuracy; the
metric with the column order enforced is reported beside it. Records are appended to OUT/records.jsonl as they
are produced, so an interrupted run resumes; metrics are recomputed from all records.

writes_executed counts questions after which a database file's sha256 or mtime changed; it
must be 0. Both queries fetch up to 100,000 rows here (the service's default cap is lower),
so that a large correct result is not cut short.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from itertools import permutations
from pathlib import Path

from rag import metrics as M
from evals.distributed import graded
from evals.qa import load_done, subset
from rag.config import Settings
from rag.errors import InputError
from rag.sql.agent import MAX_NEW_TOKENS
from rag.jsonl import read_jsonl

EVAL_MAX_ROWS = 100_000


def _norm(v):
    """Compare values the way a reader would: 3 == 3.0, floats to 6 significant places."""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return int(v) if v.is_integer() else float(f"{v:.6g}")
    if isinstance(v, bytes):
        return v.hex()
    return v


def results_match(pred: list[tuple], gold: list[tuple], ordered: bool, any_column_order: bool = True) -> bool:
    """Rows equal as a multiset (a list when `ordered`). With `any_column_order` (Spider's
    execution-accuracy convention) the predicted columns may come in another order: some
    permutation of them must match (tried for up to 6 columns)."""
    p = [tuple(_norm(v) for v in r) for r in pred]
    g = [tuple(_norm(v) for v in r) for r in gold]

    def same(a, b):
        return a == b if ordered else Counter(map(repr, a)) == Counter(map(repr, b))

    if same(p, g) or not any_column_order or not p or not g or len(p[0]) != len(g[0]) or len(p[0]) > 6:
        return same(p, g)
    return any(same([tuple(r[i] for i in perm) for r in p], g) for perm in permutations(range(len(p[0]))))


def gold_orders(gold_sql: str) -> bool:
    """Whether the gold query's outermost SELECT orders its rows."""
    import sqlglot

    try:
        return sqlglot.parse_one(gold_sql, read="sqlite").args.get("order") is not None
    except Exception:  # noqa: BLE001 - fall back to text for SQL sqlglot cannot parse
        return "order by" in gold_sql.lower()


def file_state(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def make_generator(settings: Settings):
    from rag.answer.prompt import ScriptedGenerator
    from rag.models.llama import serving_generator

    if settings.backend == "fake":
        return ScriptedGenerator()
    return serving_generator(settings.sql_decoder or settings.decoder, settings.models_path, None,
                             settings.threads)


def load_items(data: Path) -> list[dict]:
    items = []
    for folder in sorted(p for p in data.iterdir() if (p / "db.sqlite").is_file()):
        for q in read_jsonl(folder / "questions.jsonl"):
            items.append({**q, "db_id": folder.name, "db_path": str(folder / "db.sqlite")})
    if not items:
        raise InputError(f"{data} holds no <db>/db.sqlite with questions.jsonl")
    return items


def run(settings: Settings, args, generator=None) -> dict:
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items = subset(load_items(data), getattr(args, "limit", None), "qid")
    ray = getattr(args, "ray", None)
    gen = None if ray else (generator or make_generator(settings))  # Ray actors load their own
    records_path = out / "records.jsonl"
    done = load_done(records_path)
    with open(records_path, "w", encoding="utf-8") as f:
        for rec in done.values():
            f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")

    todo = [it for it in items if it["qid"] not in done]
    local = None if ray else SqlGrader(settings, gen)
    with open(records_path, "a", encoding="utf-8") as f:
        for rec in graded(settings, SqlGrader if ray else (lambda _settings: local), todo, "sql", ray):
            f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            f.flush()
            done[rec["id"]] = rec
    if local is not None:
        local.close()

    recs = [done[it["qid"]] for it in items if it["qid"] in done]
    if _rescore_old(recs, items, settings):
        with open(records_path, "w", encoding="utf-8") as f:
            for rec in done.values():
                f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    lat = [r["latency_s"] for r in recs]
    per_db = {}
    for db_id in sorted({r["db_id"] for r in recs}):
        rs = [r for r in recs if r["db_id"] == db_id]
        per_db[db_id] = {"n": len(rs), "execution_accuracy": M.mean([r["correct"] for r in rs])}
    metrics = {
        "n": len(recs),
        "execution_accuracy": M.mean([r["correct"] for r in recs]),
        "execution_accuracy_strict_column_order": M.mean([r["correct_strict"] for r in recs]),
        "valid_sql_rate": M.mean([r["valid_sql"] for r in recs]),
        "repair_rate": M.mean([r["repaired"] for r in recs]),
        "writes_executed": sum(r["write_detected"] for r in recs),
        "gold_errors": sum(r["gold_error"] is not None for r in recs),
        "latency_p50_s": M.percentile(lat, 50), "latency_p95_s": M.percentile(lat, 95),
        "per_db": per_db, "model": getattr(gen or make_generator(settings), "name", ""),
        "max_new_tokens": MAX_NEW_TOKENS, "limit": getattr(args, "limit", None),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


class SqlGrader:
    """The function item -> record (evals.distributed's builder): the agent's SQL and the gold
    SQL run read-only on the item's database (each opened once), results compared."""

    def __init__(self, settings: Settings, generator=None):
        self.settings = settings
        self.gen = generator or make_generator(settings)
        self.dbs: dict[str, tuple] = {}

    def close(self) -> None:
        for db, _schema in self.dbs.values():
            db.dispose()

    def __call__(self, it: dict) -> dict:
        from rag.sql.agent import SqlAgent
        from rag.sql.execute import QueryError, ReadOnlyDatabase
        from rag.sql.schema import introspect

        path = Path(it["db_path"])
        if it["db_id"] not in self.dbs:
            db = ReadOnlyDatabase(str(path), self.settings.sql_timeout_s, EVAL_MAX_ROWS)
            self.dbs[it["db_id"]] = (db, introspect(db))
        db, schema = self.dbs[it["db_id"]]
        before = file_state(path)
        gold_rows, gold_error = None, None
        try:
            gold_rows = list(db.execute(it["gold_sql"]).rows)
        except QueryError as e:
            gold_error = str(e)
        outcome = SqlAgent(self.gen, db, schema).run(it["question"])
        final = outcome.final
        pred_rows = list(final.result.rows) if final is not None else None
        ordered = gold_orders(it["gold_sql"])
        ok = pred_rows is not None and gold_rows is not None
        correct = ok and results_match(pred_rows, gold_rows, ordered)
        correct_strict = ok and results_match(pred_rows, gold_rows, ordered, any_column_order=False)
        return {
            "id": it["qid"], "db_id": it["db_id"], "question": it["question"], "gold_sql": it["gold_sql"],
            "pred_sql": final.safe_sql if final is not None else None,
            "attempts": [{"raw": a.raw, "sql": a.sql, "error": a.error, "fixed_columns": a.fixed_columns,
                          "dropped_joins": a.dropped_joins,
                          "rows": None if a.result is None else len(a.result.rows)} for a in outcome.attempts],
            "repaired": len(outcome.attempts) > 1, "linked_tables": outcome.tables,
            "valid_sql": final is not None, "correct": bool(correct), "correct_strict": bool(correct_strict),
            "gold_error": gold_error,
            "pred_rows": None if pred_rows is None else [list(r) for r in pred_rows[:5]],
            "gold_rows": None if gold_rows is None else [list(r) for r in gold_rows[:5]],
            "latency_s": outcome.seconds, "write_detected": file_state(path) != before,
        }


def _rescore_old(recs: list[dict], items: list[dict], settings: Settings) -> bool:
    """Records written before both scores were kept hold one strict `correct`: re-run their
    validated SQL and the gold SQL (read-only, milliseconds, no model) to fill in both."""
    from rag.sql.execute import QueryError, ReadOnlyDatabase

    paths = {it["qid"]: it["db_path"] for it in items}
    old = [r for r in recs if "correct_strict" not in r]
    for r in old:
        r["correct_strict"] = r["correct"]
        if r["pred_sql"] is None or r["gold_error"] is not None:
            continue
        db = ReadOnlyDatabase(paths[r["id"]], settings.sql_timeout_s, EVAL_MAX_ROWS)
        try:
            pred, gold = db.execute(r["pred_sql"]).rows, db.execute(r["gold_sql"]).rows
            r["correct"] = results_match(list(pred), list(gold), gold_orders(r["gold_sql"]))
        except QueryError:
            pass
        finally:
            db.dispose()
    return bool(old)
