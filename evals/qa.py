"""`rag eval qa`: answer every question of a QA folder and score the answers.

The folder holds corpus.jsonl ({"doc_id","title","text"}) and qa.jsonl ({"qid","question",
"answers","answerable","doc_id"} as in SQuAD 2.0, or with "supporting_doc_ids" as in
HotpotQA). The corpus is ingested into its own collection (re-runs reuse it: ingest is
content-deduplicated). Records are appended to OUT/records.jsonl as they are produced, so
an interrupted run resumes where it stopped; metrics are recomputed from all records."""

from __future__ import annotations

import hashlib
import json
import time
from functools import partial
from pathlib import Path

from evals.distributed import graded
from rag import metrics as M
from rag.config import Settings
from rag.errors import InputError
from rag.answer.confidence import record_level
from rag.jsonl import read_jsonl
from rag.types import EvalRecord


def subset(items: list[dict], limit: int | None, key: str, unanswerable_share: float | None = None) -> list[dict]:
    """A deterministic subset: order by a hash of the id, so any --limit mixes answerable and
    unanswerable questions the same way on every run and machine. unanswerable_share: take
    that share of the subset from the unanswerable questions (as many as there are), so a
    folder of mostly answerable questions is scored on the mix users meet."""
    if not limit or limit >= len(items):
        return items
    ranked = sorted(items, key=lambda it: hashlib.sha256(str(it[key]).encode()).hexdigest())
    if unanswerable_share is None:
        return ranked[:limit]
    unans = [it for it in ranked if not it.get("answerable", bool(it.get("answers")))]
    take = unans[: round(limit * unanswerable_share)]
    taken = {id(it) for it in take}
    rest = [it for it in ranked if id(it) not in taken and it.get("answerable", bool(it.get("answers")))]
    taken |= {id(it) for it in rest[: limit - len(take)]}
    return [it for it in ranked if id(it) in taken]  # hash order: a cut run holds both kinds


def collection_name(data: Path) -> str:
    """The collection an evaluation folder's corpus is ingested into: named after the folder."""
    return "eval-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in data.resolve().name)


def prepare(settings: Settings, data: Path, corpus_name: str = "corpus.jsonl"):
    """A service with the folder's corpus ingested into its collection (collection_name)."""
    from ingest.build import ingest_paths
    from rag.pipeline import RagService

    svc = RagService(settings)
    collection = collection_name(data)
    report = ingest_paths(settings, svc.store, svc.embedder(), [data / corpus_name], collection)
    if report.errors:
        raise InputError(f"could not ingest {data / corpus_name}: {report.errors[0].reason}")
    return svc, collection


def load_done(records_path: Path) -> dict[str, dict]:
    if not records_path.exists():
        return {}
    done = {}
    with open(records_path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by an interruption: everything after it is redone
            done[rec["id"]] = rec
    return done


def run(settings: Settings, args) -> dict:
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items = subset(read_jsonl(data / "qa.jsonl"), args.limit, "qid", getattr(args, "unanswerable_share", None))
    svc, collection = prepare(settings, data)
    mode = getattr(args, "retrieval_mode", "full")
    retrieval_only = getattr(args, "retrieval_only", False)
    records_path = out / "records.jsonl"
    done = load_done(records_path)
    # rewrite the intact records so a cut line does not linger
    with open(records_path, "w", encoding="utf-8") as f:
        for rec in done.values():
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    ray = getattr(args, "ray", None)
    build = partial(grader, collection=collection, mode=mode, retrieval_only=retrieval_only,
                    **({} if ray else {"svc": svc}))  # Ray actors build their own service
    todo = [it for it in items if it["qid"] not in done]
    with open(records_path, "a", encoding="utf-8") as f:
        for rec in graded(settings, build, todo, "questions", ray):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            done[rec["id"]] = rec
    records = [done[it["qid"]] for it in items if it["qid"] in done]
    result = summarize(records, retrieval_only)
    result.update({"collection": collection, "mode": mode, "retrieval_only": retrieval_only,
                   "model": None if retrieval_only else svc.generator.name, "embedder": svc.embedder().name,
                   "n": len(records), "limit": args.limit})
    for hook in METRIC_HOOKS:
        result.update(hook(records, out))
    (out / "metrics.json").write_text(json.dumps(result, ensure_ascii=False, indent=1))
    return result


# Functions (records, out_dir) -> dict of extra metrics, appended by other evaluation modules.
METRIC_HOOKS: list = []


def _grounding(records: list[dict], out: Path) -> dict:
    """hallucination_rate, faithfulness, citation_precision and OUT/report.html (evals.grounding)."""
    from evals.grounding import qa_metrics

    return qa_metrics(records, out)


METRIC_HOOKS.append(_grounding)


def grader(settings: Settings, collection: str, mode: str, retrieval_only: bool, svc=None):
    """The function question -> record (evals.distributed's builder): a service (this one's,
    or a new one on a Ray worker) and the retriever the mode asks for."""
    if svc is None:
        from rag.pipeline import RagService

        svc = RagService(settings)
    # "full": the pipeline's own ranking (every enabled stage); otherwise one retriever alone
    if mode == "full":
        def retriever(question, k):
            return svc.rank(question, collection, k)
    else:
        retriever = svc.retriever(collection, mode).retrieve
    if not retrieval_only and mode == "full":
        retriever = None  # answers carry the pipeline's ranking in their trace
    return lambda item: evaluate_item(svc, collection, item, retriever, retrieval_only).__dict__


def evaluate_item(svc, collection: str, item: dict, retriever, retrieval_only: bool) -> EvalRecord:
    golds = item.get("answers") or []
    answerable = item.get("answerable", bool(golds))
    t0 = time.perf_counter()
    if retriever is not None:
        hits = retriever(item["question"], 10)
        sources = [h.chunk.source for h in hits]
        outputs: dict = {"retrieved": sources}
    if not retrieval_only:
        answer = svc.ask(item["question"], collection)
        from rag.answer.prompt import strip_markers

        text = "" if answer.abstained else strip_markers(answer.text)
        outputs = {
            "answer": answer.text, "answer_plain": text, "abstained": answer.abstained, "level": answer.level,
            "citations": [c.__dict__ for c in answer.citations],
            "verdicts": [v.__dict__ for v in answer.verdicts],
            "retrieved": answer.trace.get("retrieved_sources", []) if retriever is None else sources,
            "timings": answer.timings, "trace": {k: v for k, v in answer.trace.items() if k != "retrieved_sources"},
            "model": answer.model,
        }
    latency = time.perf_counter() - t0
    scores: dict = {"latency_s": latency}
    if not retrieval_only and answerable:
        pred = outputs["answer_plain"]
        scores["f1"] = M.f1_score(pred, golds)
        scores["exact_match"] = M.exact_match(pred, golds)
    gold_docs = set(item.get("supporting_doc_ids") or ([item["doc_id"]] if item.get("doc_id") else []))
    docs = M.distinct(outputs["retrieved"])
    if gold_docs:
        scores["gold_in_top5"] = bool(gold_docs & set(docs[:5]))
        if item.get("supporting_doc_ids"):
            scores["supporting_all_top5"] = gold_docs <= set(docs[:5])
            scores["supporting_all_top10"] = gold_docs <= set(docs[:10])
    inputs = {"question": item["question"], "answers": golds, "answerable": answerable,
              "gold_docs": sorted(gold_docs), "title": item.get("title")}  # title: the article, for grouped folds
    return EvalRecord(item["qid"], inputs, outputs, scores)


def summarize(records: list[dict], retrieval_only: bool) -> dict:
    answerable = [r for r in records if r["inputs"]["answerable"]]
    out: dict = {}
    if not retrieval_only:
        out["exact_match"] = M.mean([r["scores"]["exact_match"] for r in answerable])
        out["f1"] = M.mean([r["scores"]["f1"] for r in answerable])
        out.update(M.abstention_metrics([r["outputs"]["abstained"] for r in records],
                                        [r["inputs"]["answerable"] for r in records]))
        out.update(M.answer_metrics([record_level(r) for r in records], [r["inputs"]["answerable"] for r in records],
                                    [r["scores"].get("f1", 0.0) for r in records]))
        out["n_answerable"] = len(answerable)
        out["n_unanswerable"] = len(records) - len(answerable)
    with_gold = [r for r in answerable if "gold_in_top5" in r["scores"]]
    if with_gold:
        out["retrieval_recall@5"] = M.mean([float(r["scores"]["gold_in_top5"]) for r in with_gold])
    multi = [r for r in records if "supporting_all_top10" in r["scores"]]
    if multi:
        out["supporting_recall@5"] = M.mean([float(r["scores"]["supporting_all_top5"]) for r in multi])
        out["supporting_recall@10"] = M.mean([float(r["scores"]["supporting_all_top10"]) for r in multi])
    lat = [r["scores"]["latency_s"] for r in records]
    out["latency_p50_s"] = M.percentile(lat, 50)
    out["latency_p95_s"] = M.percentile(lat, 95)
    return out
