"""The import rules that import-linter cannot see: importing the product loads no model
runtime (models load lazily, on first use), so `rag --help`, the UI and the fake backend
start in a second. The package rules themselves are pyproject.toml's import-linter contracts."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_product_loads_no_model_runtime():
    code = ("import sys; import rag, rag.pipeline, rag.api.app, rag.cli, ingest.build, evals.qa; "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
