"""JSON Lines files (benchmark data, training data): the one reader for the package and the evals."""

from __future__ import annotations

import json
from pathlib import Path

from rag.errors import InputError


def read_jsonl(path: Path) -> list[dict]:
    """Every non-blank line as a record; a missing file is an InputError that names it."""
    if not path.exists():
        raise InputError(f"{path} not found")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
