"""Background jobs for the REST API: ingest and batch evaluation, with progress.

One worker thread per app: ingest and evaluation are CPU-bound and the machine has few
cores, so jobs run one after another rather than fighting for them. Each job is also a row
of the metadata database, written when it is queued, starts and ends, and every HEARTBEAT_S
while it waits or runs (with its progress): any replica of the API reports any job, and a job
whose process stopped (a dead pid on this host, or no heartbeat for STALE_S) is reported failed,
saying so, by whichever process reads it first.

An ingest job is one atomic commit (ingest.build.ingest_paths); its progress callback
moves stage, done/total and the ETA while files load and chunks embed."""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from rag.errors import InputError, NotFoundError, RagError
from rag.store.metadata import Base, Store

INTERRUPTED = ("the API stopped while this job was queued or running. An ingest commits all of its files "
               "or none, so the collection holds all of them or none (GET /v1/collections/{name}/documents "
               "says which); the uploaded files are still in its upload folder: POST /v1/ingest runs them again")


class JobRow(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    collection: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    stage: Mapped[str] = mapped_column(String(200))
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    errors: Mapped[list] = mapped_column(JSON, default=list)
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # last sign of its process
    process: Mapped[str | None] = mapped_column(String(200), nullable=True)  # "host:pid" running it


HEARTBEAT_S = 5.0  # how often a process writes its waiting and running jobs' progress
STALE_S = 60.0  # a waiting or running job silent this long belongs to a process that stopped


@dataclass
class Job:
    """Mutable on purpose: the worker updates it while readers poll it (under the manager's lock)."""

    id: str
    kind: str  # "ingest" | "eval"
    collection: str
    owner: str
    status: str = "queued"  # queued | running | done | failed
    stage: str = "queued"
    done: int = 0
    total: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    progress_fn: Callable[[], tuple[int, int]] | None = None  # live (done, total) while running

    def to_dict(self) -> dict[str, Any]:
        if self.progress_fn is not None and self.status == "running":
            try:
                self.done, self.total = self.progress_fn()
            except Exception:  # noqa: BLE001 - progress is best effort, never fails a poll
                pass
        now = time.time()
        elapsed = ((self.finished_at or now) - self.started_at) if self.started_at else 0.0
        eta = None
        if self.status == "running" and self.done and self.total:
            eta = elapsed / self.done * max(self.total - self.done, 0)
        return {"id": self.id, "kind": self.kind, "collection": self.collection, "status": self.status,
                "stage": self.stage, "done": self.done, "total": self.total, "elapsed_s": round(elapsed, 3),
                "eta_s": None if eta is None else round(eta, 1), "errors": self.errors, "result": self.result}


_FIELDS = ("kind", "collection", "owner", "status", "stage", "done", "total", "started_at", "finished_at",
           "errors", "result")


class JobManager:
    def __init__(self, store: Store | None = None, clock=time.time):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-job")
        self.store = store  # None: memory only (tests of the job mechanics)
        self.clock = clock
        self._stop = threading.Event()
        if store is not None:
            Base.metadata.create_all(store.engine, tables=[JobRow.__table__])
            _add_missing_columns(store)
            self._fail_stale()
            threading.Thread(target=self._beat, name="rag-job-heartbeat", daemon=True).start()

    def _fail_stale(self, job_id: str | None = None) -> None:
        """Jobs of a process that stopped (a dead pid here, or no heartbeat for STALE_S): they will never finish."""
        with self.store.transaction() as s:
            q = select(JobRow).where(JobRow.status.in_(("queued", "running")))
            for row in s.scalars(q if job_id is None else q.where(JobRow.id == job_id)):
                if row.id not in self._jobs and (_gone(row.process) or (row.heartbeat_at or 0.0) < self.clock() - STALE_S):
                    row.status, row.stage, row.finished_at = "failed", "interrupted", self.clock()
                    row.errors = [*row.errors, {"path": "", "reason": INTERRUPTED}]

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with self._lock:
                live = [j for j in self._jobs.values() if j.status in ("queued", "running")]
            for job in live:
                try:
                    job.to_dict()  # reads its live progress
                    self._save(job)
                except Exception:  # noqa: BLE001 - the database may be down; the next beat tries again
                    traceback.print_exc()

    def _save(self, job: Job) -> None:
        if self.store is None:
            return
        with self.store.transaction() as s:  # insert or update by id
            s.merge(JobRow(id=job.id, heartbeat_at=self.clock(), process=PROCESS,
                           **{name: getattr(job, name) for name in _FIELDS}))

    def submit(self, kind: str, collection: str, owner: str, work: Callable[[Job], None], total: int = 0) -> Job:
        job = Job(uuid.uuid4().hex[:16], kind, collection, owner, total=total)
        with self._lock:
            self._jobs[job.id] = job
        self._save(job)
        self._pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Job], None]) -> None:
        job.status, job.stage, job.started_at = "running", "starting", time.time()
        try:
            self._save(job)
            work(job)
            job.status, job.stage = "done", "done"
        except RagError as e:
            job.status, job.stage = "failed", "failed"
            job.errors.append({"path": "", "reason": str(e)})
        except Exception as e:  # noqa: BLE001 - a job must end in a reported state, never vanish
            job.status, job.stage = "failed", "failed"
            job.errors.append({"path": "", "reason": f"{type(e).__name__}: {e}"})
            traceback.print_exc()
        finally:
            job.progress_fn = None
            job.finished_at = time.time()
            try:
                self._save(job)
            except Exception:  # noqa: BLE001 - the database may be down; the job's state is still served from memory
                traceback.print_exc()

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None and self.store is not None:  # another replica's job, or one of an earlier run
            self._fail_stale(job_id)
            with self.store.transaction() as s:
                row = s.get(JobRow, job_id)
                if row is not None:
                    job = Job(row.id, **{name: getattr(row, name) for name in _FIELDS})
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        return job

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """For tests and scripts: block until the job finishes."""
        end = time.time() + timeout
        job = self.get(job_id)
        while job.status in ("queued", "running") and time.time() < end:
            time.sleep(0.05)
        return job

    def shutdown(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


PROCESS = f"{socket.gethostname()}:{os.getpid()}"


def _gone(process: str | None) -> bool:
    """Whether the process that ran a job is known to have stopped: it ran on this host and
    its pid is no longer alive (a process on another host is judged by its heartbeat)."""
    host, _, pid = (process or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _add_missing_columns(store: Store) -> None:
    """A jobs table made before heartbeats gains their columns (its old rows have none: stale)."""
    from sqlalchemy import inspect, text

    have = {c["name"] for c in inspect(store.engine).get_columns("jobs")}
    for name, kind in (("heartbeat_at", "FLOAT"), ("process", "VARCHAR(200)")):
        if name not in have:
            with store.engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE jobs ADD COLUMN {name} {kind}"))


def ingest_work(svc, files: list[Path], collection: str) -> Callable[[Job], None]:
    """The ingest job body: every file in one atomic commit, progress reported per stage
    (loading files, embedding chunks, indexing)."""

    def work(job: Job) -> None:
        from ingest.build import ingest_paths

        def progress(stage: str, done: int, total: int) -> None:
            job.stage, job.done, job.total = stage, done, total

        job.total = len(files)
        report = ingest_paths(svc.settings, svc.store, svc.embedder(), files, collection, progress=False,
                              on_progress=progress)
        # the caller's file name, not the upload folder's path on the server, in both fields
        job.errors.extend({"path": Path(e.path).name, "reason": e.reason.replace(str(e.path), Path(e.path).name)}
                          for e in report.errors)
        # A rejected upload is not kept: nothing could read it, and nobody could see or delete it.
        uploads = (svc.settings.data_dir / "uploads").resolve()
        for e in report.errors:
            if Path(e.path).resolve().is_relative_to(uploads):
                Path(e.path).unlink(missing_ok=True)
        job.result = {**{k: len(getattr(report, k)) for k in ("added", "replaced", "unchanged", "duplicates")},
                      "chunks": report.chunks, "index_version": report.index_version,
                      "rejected": [Path(e.path).name for e in report.errors]}
        if report.errors and not (report.added or report.replaced or report.unchanged or report.duplicates):
            raise InputError("none of the files could be ingested")  # each file's reason is in job.errors
        job.stage = "done"

    return work
