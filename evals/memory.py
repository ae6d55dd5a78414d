"""Resident memory of this process, for the benchmarks."""

from __future__ import annotations


def resident_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB, from /proc (Linux; zeros elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError):
        return 0.0, 0.0


def serving_steps(data_dir: str, questions: list[str], collection: str = "default") -> list[tuple[str, float]]:
    """Resident MB added by each step of a serving process, in the order the API's warm-up
    loads them, then after asking `questions`; the last row is the process's peak.
    `python -m evals.memory DATA_DIR QUESTION...` prints it (docs/results.md)."""
    from pathlib import Path

    from rag.config import Settings

    rows, last = [], resident_mb()[0]

    def step(name: str) -> None:
        nonlocal last
        now = resident_mb()[0]
        rows.append((name, now - last))
        last = now

    from rag.pipeline import RagService
    from rag.text import tokenize

    step("import the product")
    svc = RagService(Settings(data_dir=Path(data_dir)))
    svc.embedder().embed_query("warm up")
    step(f"embedder ({svc.settings.effective_embedder()})")
    tokenize("준비")
    step("Korean morphology (kiwi)")
    if svc.reader is not None:
        svc.reader.load()
    step("readers (torch)")
    if hasattr(svc.generator, "load"):
        svc.generator.load()
    step("decoder")
    if svc.verifier is not None:
        svc.verifier.load()
    step("grounding check's cross-encoder")
    for q in questions:
        svc.ask(q, collection)
    step(f"after {len(questions)} questions")
    rows.append(("peak", resident_mb()[1]))
    return rows


if __name__ == "__main__":
    import sys

    for name, mb in serving_steps(sys.argv[1], sys.argv[2:]):
        print(f"{name:36s} {mb:7.0f} MB")
