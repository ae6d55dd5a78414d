"""Artefacts prepared once from shipped weights and cached beside the joined decoder weights:
ONNX exports of encoders (rag.models.onnx_encoder), merged cross-encoders
(rag.models.crossencoder). Each is keyed by the sha256 of the file it came from.

A prepared file is written under a temporary name and renamed into place with a manifest (the
source's and the file's sha256); one that is truncated, stale (another source) or foreign (a
hash that does not match) is rebuilt with a message, never loaded. A lock file serialises two
processes preparing at once: the second waits, then finds the file ready."""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from rag.models.weights import sha256_file


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _stamp(path: Path) -> list[int]:
    """Size and modification time: unchanged files are not hashed again on every start."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _manifest_ok(target: Path, source_sha: str) -> str:
    """'' when target is a complete build from this source; else why it is not."""
    manifest = target.with_name(target.name + ".json")
    if not target.exists() or not manifest.exists():
        return "missing"
    try:
        m = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return "its manifest is unreadable"
    if m.get("source_sha256") != source_sha:
        return "it was built from other weights"
    if m.get("stamp") == _stamp(target):
        return ""
    if target.stat().st_size != m.get("size") or sha256_file(target) != m.get("sha256"):
        return "it is truncated or altered"
    return ""


def _source_sha(source: Path, cache_dir: Path, name: str) -> str:
    """The source's sha256, remembered beside the cache by its stamp (a 500 MB GGUF takes a
    second to hash)."""
    memo = cache_dir / f".sha256-{name}.json"
    try:
        m = json.loads(memo.read_text())
        if m["path"] == str(source) and m["stamp"] == _stamp(source):
            return m["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    sha = sha256_file(source)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f"{memo.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"path": str(source), "stamp": _stamp(source), "sha256": sha}))
    tmp.replace(memo)
    return sha


def prepared(name: str, source: Path, build: Callable[[Path], None], cache_dir: Path, kind: str) -> Path:
    """The file `<name>-<source sha256[:16]>-<kind>` in cache_dir (kind names the variant and
    ends with its extension: "int8.onnx", "merged.safetensors"), built by build(path) unless a
    valid one is cached."""
    source_sha = _source_sha(source, cache_dir, f"{name}-{kind}")
    target = cache_dir / f"{name}-{source_sha[:16]}-{kind}"
    if not _manifest_ok(target, source_sha):
        return target
    with _locked(cache_dir / f".{name}.lock"):
        why = _manifest_ok(target, source_sha)
        if not why:
            return target  # another process prepared it while this one waited
        if why != "missing":
            print(f"{target.name}: {why}; building it again", file=sys.stderr)
        tmp = cache_dir / f".{target.name}.{os.getpid()}"
        tmp_manifest = tmp.with_name(tmp.name + ".json")
        try:
            build(tmp)
            manifest = {"source": source.name, "source_sha256": source_sha, "kind": kind,
                        "size": tmp.stat().st_size, "sha256": sha256_file(tmp)}
            tmp.replace(target)  # the file first, then the manifest that vouches for it
            manifest["stamp"] = _stamp(target)
            tmp_manifest.write_text(json.dumps(manifest, indent=1))
            tmp_manifest.replace(target.with_name(target.name + ".json"))
        finally:
            tmp.unlink(missing_ok=True)
            tmp_manifest.unlink(missing_ok=True)
    return target
