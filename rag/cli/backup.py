"""`rag backup PATH` / `rag restore PATH`: a consistent copy of a data folder's state.

What is copied: every row of every table of the database (SQLite or PostgreSQL: the rows are
read through SQLAlchemy, so a backup of one restores into the other), and each collection's
committed index version (the folder its row names; index folders are never modified in
place). Consistency: every collection's writer lock is held while the rows are read and the
folders copied, so no ingest commits in between; readers are not blocked. Uploads and
converted model files are not copied (the first are inputs, the second are rebuilt).

Restore goes into an empty database and data folder (RAG_DATABASE_URL / RAG_DATA_DIR): the
tables are created, the rows inserted with their ids (sequences moved past them on
PostgreSQL), the index folders copied back and checked against the backup's sha256s."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

from rag.config import Settings
from rag.errors import InputError

FORMAT = 1


def _encode(value):
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$base64": base64.b64encode(bytes(value)).decode()}
    return value


def _decode(value):
    if isinstance(value, dict) and len(value) == 1:
        if "$datetime" in value:
            return datetime.fromisoformat(value["$datetime"])
        if "$base64" in value:
            return base64.b64decode(value["$base64"])
    return value


def _sha256(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _metadata():
    """Every table the product defines (the API's keys live beside the store's rows)."""
    import rag.api.auth  # noqa: F401 - registers api_keys on the shared metadata
    import rag.api.jobs  # noqa: F401 - and the job records
    import rag.sql.registry  # noqa: F401 - registers the database registry
    from rag.store.metadata import Base

    return Base.metadata


def backup(settings: Settings, target: Path) -> dict:
    from sqlalchemy import inspect, select

    from rag.store.collection import collection_lock, version_dir
    from rag.store.metadata import Store

    if target.exists() and any(target.iterdir()):
        raise InputError(f"{target} is not empty: back up into a new folder")
    store = Store(settings.db_url)
    meta = _metadata()
    (target / "rows").mkdir(parents=True)
    with ExitStack() as locks:
        for c in store.collections():
            locks.enter_context(collection_lock(settings.data_dir, c.name))
        counts = {}
        with store.engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            for table in meta.sorted_tables:
                # a table the product never created here (no API ran on it yet) has no rows
                rows = conn.execute(select(table)).mappings().all() if table.name in present else []
                with open(target / "rows" / f"{table.name}.jsonl", "w", encoding="utf-8") as out:
                    for row in rows:
                        out.write(json.dumps({k: _encode(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
                counts[table.name] = len(rows)
        indexes = {}
        for c in store.collections():
            if c.index_version:
                src = version_dir(settings.data_dir, c.name, c.index_version)
                dst = target / "collections" / c.name / src.name
                shutil.copytree(src, dst)
                indexes[c.name] = {"version": c.index_version, "files": _sha256(dst)}
    manifest = {"format": FORMAT, "created": datetime.now().isoformat(timespec="seconds"),
                "database": store.engine.dialect.name, "rows": counts, "indexes": indexes}
    (target / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def restore(settings: Settings, source: Path) -> dict:
    from sqlalchemy import func, insert, select, text

    from rag.store.collection import collection_dir
    from rag.store.metadata import Store

    try:
        manifest = json.loads((source / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{source} is not a backup (manifest.json: {e})") from None
    if manifest.get("format") != FORMAT:
        raise InputError(f"backup format {manifest.get('format')} is not {FORMAT}")
    for name, idx in manifest["indexes"].items():  # check the copy before touching anything
        folder = source / "collections" / name / f"v{idx['version']:06d}"
        if not folder.is_dir() or _sha256(folder) != idx["files"]:
            raise InputError(f"the index of collection {name!r} in {source} is missing or altered")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.db_url)
    meta = _metadata()
    meta.create_all(store.engine)
    with store.engine.begin() as conn:
        if any(conn.execute(select(func.count()).select_from(t)).scalar() for t in meta.sorted_tables):
            raise InputError("the target database is not empty: restore into a new RAG_DATA_DIR / RAG_DATABASE_URL")
        for table in meta.sorted_tables:
            path = source / "rows" / f"{table.name}.jsonl"
            if not path.exists():
                continue
            rows = [{k: _decode(v) for k, v in json.loads(line).items()} for line in path.open(encoding="utf-8")]
            if rows:
                conn.execute(insert(table), rows)
                if conn.dialect.name == "postgresql" and "id" in table.c:
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                      f"(SELECT MAX(id) FROM {table.name}))"))
    for name, idx in manifest["indexes"].items():
        folder = f"v{idx['version']:06d}"
        shutil.copytree(source / "collections" / name / folder, collection_dir(settings.data_dir, name) / folder)
    return manifest


def _cmd_backup(args) -> int:
    m = backup(Settings(), Path(args.path))
    print(f"backed up {sum(m['rows'].values())} rows ({m['database']}) and {len(m['indexes'])} collection "
          f"indexes to {args.path}")
    return 0


def _cmd_restore(args) -> int:
    m = restore(Settings(), Path(args.path))
    print(f"restored {sum(m['rows'].values())} rows and {len(m['indexes'])} collection indexes from {args.path}")
    return 0


def register(sub) -> None:
    a = sub.add_parser("backup", help="copy the database rows and committed indexes to a new folder")
    a.add_argument("path")
    a.set_defaults(fn=_cmd_backup)
    a = sub.add_parser("restore", help="restore a backup into an empty data folder and database")
    a.add_argument("path")
    a.set_defaults(fn=_cmd_restore)
