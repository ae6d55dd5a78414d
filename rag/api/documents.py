"""REST routes for documents and jobs: upload, list, get, delete, ingest, job progress.

Uploads land in <data_dir>/uploads/<collection>/<name>. Names are checked, not rewritten:
a name with a path separator, '..', a leading dot or odd characters is refused (400), and
the resolved target must still lie inside that folder, so no upload can escape the data
folder. Size (413) and type (415) are checked per file while it is copied; the copy is
written to a temporary name and renamed, so a refused file leaves nothing behind.

Ingest and delete themselves live in ingest.build (imported inside handlers: the API is
an edge and `import rag` must not pull ingest in)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from rag.api.deps import COLLECTION_PATTERN, FILE_NAME_PATTERN, Collection, display_source, errors, principal, state
from rag.api.jobs import ingest_work
from rag.api.auth import Principal
from rag.store.collection import check_name
from rag.errors import ForbiddenError, InputError, NotFoundError

router = APIRouter(tags=["documents"])

_SAFE_NAME = re.compile(FILE_NAME_PATTERN)  # \w is Unicode: Korean names are fine; the schema says the same


class PayloadTooLargeError(InputError):
    http_status = 413


class UnsupportedTypeError(InputError):
    http_status = 415


def upload_dir(settings, collection: str) -> Path:
    return (settings.data_dir / "uploads" / check_name(collection)).resolve()


def safe_target(folder: Path, name: str) -> Path:
    if not name or len(name) > 200 or not _SAFE_NAME.match(name):  # no separator, "..", leading dot
        raise InputError(f"file name {name!r} is not allowed: use a plain name (letters, digits, "
                         f"spaces, '-', '_', '.') without folders")
    target = (folder / name).resolve()
    if not target.is_relative_to(folder):
        raise InputError(f"file name {name!r} would leave the upload folder")
    return target


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except OSError:  # e.g. a name longer than the file system allows
        return False


def allowed_suffixes() -> set[str]:
    from ingest.load import SUFFIXES

    return set(SUFFIXES)


def save_upload(settings, folder: Path, up: UploadFile) -> Path:
    target = safe_target(folder, up.filename or "")
    suffix = target.suffix.lower()
    if suffix not in allowed_suffixes():
        raise UnsupportedTypeError(f"{target.name}: file type {suffix or '(none)'} is not supported; "
                                   f"upload one of {', '.join(sorted(allowed_suffixes()))}")
    limit = int(settings.max_upload_mb * 1024 * 1024)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    size = 0
    try:
        with open(tmp, "wb") as out:
            while block := up.file.read(1 << 20):
                size += len(block)
                if size > limit:
                    raise PayloadTooLargeError(f"{target.name} is larger than the upload limit of "
                                               f"{settings.max_upload_mb:g} MB (RAG_MAX_UPLOAD_MB)")
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def doc_json(d, chars: bool = True) -> dict:
    out = {"id": d.doc_hash, "source": display_source(d.source), "name": Path(d.source).name, "title": d.title,
           "created_at": d.created_at.isoformat() if d.created_at else None}
    if chars:
        out["chars"] = len(d.text or "")
    return out


@router.get("/v1/collections/{collection}/documents")
def list_documents(collection: Collection, request: Request, who: Principal = Depends(principal)):
    who.require(collection, "read")
    return {"collection": collection, "documents": [doc_json(d) for d in state(request).svc.store.documents(collection)]}


def find_one(svc, collection: str, doc_id: str):
    with svc.store.transaction() as s:
        col = svc.store.collection(s, collection)
        docs = svc.store.find_documents(s, col.id, doc_id) if len(doc_id) >= 8 else []
        if len(docs) != 1:
            raise NotFoundError(f"no single document {doc_id!r} in collection {collection!r} "
                                f"({len(docs)} match; give at least 8 characters of its id)")
        return docs[0]


@router.get("/v1/collections/{collection}/documents/{doc_id}")
def get_document(collection: Collection, doc_id: str, request: Request, who: Principal = Depends(principal)):
    who.require(collection, "read")
    d = find_one(state(request).svc, collection, doc_id)
    return {**doc_json(d), "text": d.text, "meta": d.meta}


@router.delete("/v1/collections/{collection}/documents/{doc_id}")
def delete_document(collection: Collection, doc_id: str, request: Request, who: Principal = Depends(principal)):
    from ingest.build import delete_documents

    who.require(collection, "write")
    st = state(request)
    d = find_one(st.svc, collection, doc_id)
    removed = delete_documents(st.settings, st.svc.store, d.source, collection)
    folder = upload_dir(st.settings, collection)
    for src in removed:  # an uploaded file goes too, so a re-ingest of the folder won't bring it back
        p = Path(src)
        if p.is_relative_to(folder):
            p.unlink(missing_ok=True)
    return {"collection": collection, "deleted": removed}


@router.post("/v1/collections/{collection}/documents", status_code=202, responses=errors(413, 415))
def upload_documents(collection: Collection, request: Request, files: list[UploadFile] = File(...),
                     who: Principal = Depends(principal)):
    """Upload one or more files and start an ingest job for them (poll GET /v1/jobs/{id})."""
    who.require(collection, "write")
    st = state(request)
    s = st.settings
    if len(files) > s.max_upload_files:
        raise PayloadTooLargeError(f"{len(files)} files in one upload; the limit is {s.max_upload_files} "
                                   f"(RAG_MAX_UPLOAD_FILES)")
    folder = upload_dir(s, collection)
    # Check every name and type before writing anything, so a bad file refuses the whole upload.
    for up in files:
        target = safe_target(folder, up.filename or "")
        if target.suffix.lower() not in allowed_suffixes():
            raise UnsupportedTypeError(f"{target.name}: file type {target.suffix or '(none)'} is not supported; "
                                       f"upload one of {', '.join(sorted(allowed_suffixes()))}")
    saved = [save_upload(s, folder, up) for up in files]
    job = st.jobs.submit("ingest", collection, who.name, ingest_work(st.svc, saved, collection), total=len(saved))
    return {"job": job.to_dict(), "files": [p.name for p in saved]}


class IngestRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    collection: str = Field(default="default", pattern=COLLECTION_PATTERN, max_length=64)
    paths: list[Annotated[str, Field(pattern=f"^/.+|{FILE_NAME_PATTERN}", max_length=4096)]] = Field(default_factory=list, description="file names in the collection's upload folder "
                             "(empty: all of it); an admin may also give server paths")


@router.post("/v1/ingest", status_code=202)
def ingest(body: IngestRequest, request: Request, who: Principal = Depends(principal)):
    """Start an ingest job; poll GET /v1/jobs/{id} for stage, done/total, ETA and errors per file."""
    who.require(body.collection, "write")
    st = state(request)
    folder = upload_dir(st.settings, body.collection)
    if not body.paths:
        files = sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")) \
            if folder.exists() else []
    else:
        files = []
        for name in body.paths:
            p = Path(name)
            if who.admin and p.is_absolute():
                try:
                    files.extend(sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])
                except OSError as e:  # a name too long, a folder it may not read
                    raise NotFoundError(f"cannot read {name[:200]!r}: {e.strerror}") from None
            else:
                files.append(safe_target(folder, name))
    missing = [str(p)[:200] for p in files if not _exists(p)]
    if missing:
        raise NotFoundError(f"not found: {', '.join(missing[:5])}")
    if not files:
        raise NotFoundError(f"nothing to ingest: upload files to collection {body.collection!r} first")
    job = st.jobs.submit("ingest", body.collection, who.name, ingest_work(st.svc, files, body.collection),
                         total=len(files))
    return {"job": job.to_dict()}


@router.get("/v1/jobs/{job_id}", tags=["jobs"])
def get_job(job_id: str, request: Request, who: Principal = Depends(principal)):
    job = state(request).jobs.get(job_id)
    if not (who.admin or job.owner == who.name or who.can(job.collection)):
        raise ForbiddenError(f"job {job_id!r} belongs to a collection this key cannot read")
    return job.to_dict()
