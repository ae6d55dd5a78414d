"""Parsers of untrusted file formats (HTML, PDF, DOCX), run in a worker process with a time and
a memory budget.

Why: a user's folder holds whatever it holds. A malformed PDF can send a parser into a loop
for minutes, a zip bomb of a DOCX or a PDF stream that inflates to gigabytes can exhaust the
machine, and deeply nested markup can overflow a recursive parser. In a worker none of that can
stall or kill the service: a file that takes longer than TIME_BUDGET_S is killed with its
worker, one that needs more than MEMORY_BUDGET_MB fails inside it, and either is reported by
name while the ingest goes on with the other files.

The worker is a plain `python -m ingest.parse` child speaking JSON lines over its pipes (not
multiprocessing: that re-imports the caller's main module and forks a process full of model
threads), started on the first file that needs it and reused until it fails."""

from __future__ import annotations

import atexit
import json
import select
import subprocess
import sys
import threading

from rag.errors import InputError

TIME_BUDGET_S = 60.0  # per file; a 300-page text PDF parses in a few seconds
MEMORY_BUDGET_MB = 2048  # address space of the worker (parsers, their libraries and the file's text)

_lock = threading.Lock()  # one file at a time through the one worker
_worker: subprocess.Popen | None = None


def worker_command() -> list[str]:
    return [sys.executable, "-m", "ingest.parse", str(MEMORY_BUDGET_MB)]


def _start() -> subprocess.Popen:
    global _worker
    if _worker is None or _worker.poll() is not None:
        _worker = subprocess.Popen(worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
    return _worker


def _stop() -> None:
    global _worker
    if _worker is not None:
        _worker.kill()
        _worker.wait()
        _worker = None


atexit.register(_stop)  # the worker never outlives the process that started it


def parse(kind: str, path: str) -> tuple[str, str]:
    """(text, title) of the file by the parser for `kind` ("html", "pdf", "docx"), within the
    budgets; InputError saying what went wrong otherwise."""
    with _lock:
        worker = _start()
        try:
            worker.stdin.write(json.dumps({"kind": kind, "path": path}).encode() + b"\n")
            worker.stdin.flush()
        except BrokenPipeError:
            _stop()
            raise InputError("the parser stopped before reading it; try again") from None
        ready, _, _ = select.select([worker.stdout], [], [], TIME_BUDGET_S)
        if not ready:
            _stop()
            raise InputError(f"reading it took longer than {TIME_BUDGET_S:.0f} s; it may be damaged")
        line = worker.stdout.readline()
        if not line:
            _stop()
            raise InputError("the parser died reading it (a damaged or hostile file)")
    reply = json.loads(line)
    if "memory" in reply:
        _stop()  # a worker that ran out of memory is not trusted with the next file
        raise InputError(f"reading it needs more than {MEMORY_BUDGET_MB} MB (a compressed bomb, or a file too "
                         "large to read)")
    if "error" in reply:
        raise InputError(f"it is not a readable {kind.upper()} file ({reply['error']})")
    return reply["text"], reply["title"]


def _serve(memory_mb: int) -> None:
    """The worker: one JSON request a line in, one reply a line out."""
    import resource

    from ingest.formats import PARSERS

    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            text, title = PARSERS[request["kind"]](request["path"])
            reply = {"text": text, "title": title}
        except MemoryError:
            reply = {"memory": True}
        except RecursionError:
            reply = {"error": "it nests too deeply"}
        except Exception as e:  # noqa: BLE001 - the parser's own error means the file is unreadable
            reply = {"error": f"{type(e).__name__}: {e}"[:500]}
        sys.stdout.buffer.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
        sys.stdout.buffer.flush()
        if "memory" in reply:
            return


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
