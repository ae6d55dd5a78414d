"""REST routes for the knowledge graph and batch evaluation (the UI's Graph and Evaluation pages).

Graph: an entity's neighbourhood as nodes and edges, each edge with its supporting chunk
ids; 501 when the knowledge-graph module is not installed, 404 for an unknown entity.

Evaluation (admin only: it creates collections): uploaded JSONL files go to
<data_dir>/evals/<id>/upload-<id>/, `evals.<mode>.run` writes records.jsonl and
metrics.json (and any plots) to <data_dir>/evals/<id>/out/, and progress is the count of
records written so far against the number of items. The eval builds its own RagService, as
`rag eval` does, so with real models they are loaded a second time while it runs."""

from __future__ import annotations

import argparse
import importlib
import json
import uuid
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from rag.api.deps import FILE_NAME_PATTERN, Collection, ErrorBody, display_source, errors, principal, state
from rag.api.documents import safe_target, save_upload
from rag.api.auth import Principal
from rag.errors import InputError, NotFoundError, RagError

router = APIRouter()

EVAL_MODES = ("qa", "retrieval", "judge", "sql")


class NotAvailableError(RagError, NotImplementedError):
    http_status = 501


def load_graph(svc, collection: str):
    """The knowledge graph of the collection's committed index version."""
    return svc.indexes.get(svc.store.get_collection(collection)).extras["graph"]


@router.get("/v1/collections/{collection}/graph", tags=["graph"])
def graph(collection: Collection, request: Request, entity: str = "", hops: int = 1, limit: int = 40,
          who: Principal = Depends(principal)):
    """Without `entity`: statistics and the best-connected entities. With it: the
    neighbourhood up to `hops` (1-2) hops, at most `limit` nodes, best supported first."""
    who.require(collection, "read")
    kg = load_graph(state(request).svc, collection)
    if not entity:
        return {"collection": collection, "stats": kg.stats()}
    key = kg.find(entity)
    if key is None:
        raise NotFoundError(f"no entity {entity!r} in the knowledge graph of {collection!r}")
    hops, limit = max(1, min(hops, 2)), max(2, min(limit, 200))
    depth, frontier = {key: 0}, [key]
    for h in range(1, hops + 1):
        nxt = []
        for n in frontier:
            for m, _rels in kg.neighbours(n):
                if m not in depth and len(depth) < limit:
                    depth[m] = h
                    nxt.append(m)
        frontier = nxt
    nodes = [{"id": n, "name": kg.g.nodes[n]["name"], "hop": d, "degree": kg.g.degree[n],
              "chunks": sorted(kg.chunks_of(n))[:20]} for n, d in depth.items()]
    edges = [{"source": a, "target": b, "relations": {r: sorted(ids) for r, ids in kg.g.edges[a, b]["rels"].items()},
              "subjects": dict(kg.g.edges[a, b].get("heads", {}))}  # relation -> the node it is said of
             for a, b in kg.g.subgraph(depth).edges]
    # each passage a relation rests on, by the name of its document (title, file name)
    ids = sorted({i for e in edges for rel_ids in e["relations"].values() for i in rel_ids})
    found = state(request).svc.store.chunks(collection, ids[:400])
    documents = {i: {"title": c.title, "source": display_source(c.source)} for i, c in found.items()}
    return {"collection": collection, "entity": kg.g.nodes[key]["name"], "nodes": nodes, "edges": edges,
            "documents": documents}


@router.get("/v1/collections/{collection}/chunks/{chunk_id}", tags=["documents"])
def get_chunk(collection: Collection, chunk_id: int, request: Request, who: Principal = Depends(principal)):
    """One passage, only if it belongs to this collection (a chunk id is not a capability)."""
    who.require(collection, "read")
    found = state(request).svc.store.chunks(collection, [chunk_id])
    if chunk_id not in found:
        raise NotFoundError(f"no chunk {chunk_id} in collection {collection!r}")
    c = found[chunk_id]
    return {"chunk_id": c.id, "doc_id": c.doc_id, "source": display_source(c.source), "title": c.title, "text": c.text,
            "start": c.start, "end": c.end}


def eval_dirs(settings, eval_id: str) -> tuple[Path, Path]:
    root = (settings.data_dir / "evals" / eval_id).resolve()
    return root / f"upload-{eval_id}", root / "out"


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


EvalId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{16}$", description="as POST /v1/evals returned it")]


@router.post("/v1/evals", tags=["evaluation"], status_code=202,
             responses={**errors(413), 501: {"model": ErrorBody, "description": "mode not in this build"}})
def start_eval(request: Request, files: list[UploadFile] = File(...), mode: Literal[EVAL_MODES] = Form("qa"),
               limit: int | None = Form(None, ge=1), retrieval_only: bool = Form(False),
               who: Principal = Depends(principal)):
    """Upload the evaluation files (qa: corpus.jsonl and qa.jsonl; see `rag eval --help`) and
    start `rag eval MODE` on them as a job."""
    who.require_admin()
    try:
        module = importlib.import_module(f"evals.{mode}")
    except ImportError as e:
        raise NotAvailableError(f"evaluation mode {mode!r} is not available in this build ({e})") from e
    st = state(request)
    eval_id = uuid.uuid4().hex[:16]
    data, out = eval_dirs(st.settings, eval_id)
    for up in files:
        if not (up.filename or "").lower().endswith((".jsonl", ".json", ".tsv", ".csv")):
            raise InputError(f"{up.filename}: evaluation files are .jsonl, .json, .tsv or .csv")
        safe_target(data, up.filename or "")
    saved = [save_upload(st.settings, data, up) for up in files]
    # The items counted for progress: the questions file where the format names one, else the longest file.
    questions = next((p for p in saved if p.name in ("qa.jsonl", "queries.jsonl")), max(saved, key=count_lines))
    total = count_lines(questions)
    total = min(total, limit) if limit else total
    args = argparse.Namespace(data=data, out=out, limit=limit, retrieval_only=retrieval_only,
                              retrieval_mode="full", mode=mode)

    def work(job) -> None:
        from evals.qa import collection_name
        from rag.store.collection import drop_collection

        job.stage = f"evaluating ({mode})"
        job.progress_fn = lambda: (min(count_lines(out / "records.jsonl"), total), total)
        try:
            job.result = {"eval_id": eval_id, "metrics": module.run(st.settings, args)}
        finally:  # the uploaded corpus was ingested for this run only: no user should see it
            drop_collection(st.svc.store, st.settings.data_dir, collection_name(data))

    job = st.jobs.submit("eval", "*", who.name, work, total=total)
    (out.parent / "job.json").write_text(json.dumps({"job": job.id, "mode": mode, "limit": limit}))
    return {"eval_id": eval_id, "job": job.to_dict()}


@router.get("/v1/evals/{eval_id}", tags=["evaluation"])
def get_eval(eval_id: EvalId, request: Request, who: Principal = Depends(principal)):
    """Metrics (once written) and the report files of an evaluation."""
    who.require_admin()
    safe_target(Path("/"), eval_id)
    _data, out = eval_dirs(state(request).settings, eval_id)
    if not out.parent.exists():
        raise NotFoundError(f"no evaluation {eval_id!r}")
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else None
    files = sorted(p.name for p in out.glob("*") if p.is_file()) if out.exists() else []
    return {"eval_id": eval_id, "metrics": metrics, "files": files}


@router.get("/v1/evals/{eval_id}/files/{name}", tags=["evaluation"])
def eval_file(eval_id: EvalId, name: Annotated[str, PathParam(pattern=FILE_NAME_PATTERN, max_length=200)], request: Request, who: Principal = Depends(principal)):
    who.require_admin()
    safe_target(Path("/"), eval_id)
    _data, out = eval_dirs(state(request).settings, eval_id)
    path = safe_target(out, name)
    if not path.is_file():
        raise NotFoundError(f"no file {name!r} in evaluation {eval_id!r}")
    return FileResponse(path)
