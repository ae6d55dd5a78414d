# The two commands of the README: `make demo` (the main job) and `make test`.
.PHONY: setup demo test bench

setup:
	bash scripts/setup.sh

# Ingest the shipped sample corpus, serve the API and the UI, answer a sample question.
demo: setup
	bash scripts/run_stack.sh

test: setup
	bash scripts/system_deps.sh
	.venv/bin/python -m pip install -q -e ".[cluster]"  # Ray, for the cluster tests (tests/test_ray*.py)
	.venv/bin/lint-imports
	.venv/bin/ruff check --select F rag ingest evals ui tests
	.venv/bin/python -m pytest tests

bench: setup
	.venv/bin/rag bench
