"""`rag train reranker|judge|reader|answerability|support|confidence` and `rag calibrate`: reproduce
the shipped cross-encoders, probes on the decoder's state and answer confidence, and refit a
collection's abstention threshold.

Training reads only ../shared/data/train (never dev), runs on one thread by default (the
machine is shared), checkpoints every --save-steps into --work and resumes from there when
re-run after an interruption. The result replaces rag/models/trained/<role>/."""

from __future__ import annotations

import json
from pathlib import Path

from rag.train.examples import TRAIN_DIR as DEFAULT_TRAIN
from rag.jsonl import read_jsonl

# The shipped models' schedules: stages of (steps, learning rate), each on fresh pairs and
# continuing from the previous stage's adapter. The judge's are small because the CPU was
# shared and one step of 16 pairs took 12-25 s on one thread; its stage 2 was added after
# stage 1 alone reached only 0.69 balanced accuracy (its loss had just begun to fall). The
# reranker's is one pass over its pairs (1,120 steps of 16 = 17,920 of its 17,973 pairs; ~3 s
# a step on two threads): its first schedule, 90 steps, left it at the loss of its label prior.
DEFAULTS = {"reranker": dict(stages=[(1120, 3e-4)], batch=16, max_length=192),
            "judge": dict(stages=[(100, 5e-4), (70, 1e-3)], batch=16, max_length=160)}


def cmd_train(args) -> int:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.questions is None:
        args.questions = {"answerability": 2000, "support": 400}.get(args.role, 0)
    if args.role == "answerability":
        return cmd_train_answerability(args)
    if args.role == "support":
        return cmd_train_support(args)
    if args.role == "reader":
        return cmd_train_reader(args)
    if args.role == "confidence":
        return cmd_train_confidence(args)
    from rag.models.crossencoder import trained_path
    from rag.train import crossencoder as ce

    d = DEFAULTS[args.role]
    pairs = (ce.reranker_pairs if args.role == "reranker" else ce.judge_pairs)(args.data, seed=0)
    out = args.out or trained_path(args.role)
    work = args.work or Path("var") / "train" / args.role
    stages = [(args.steps, args.lr or 5e-4)] if args.steps else d["stages"]
    batch = args.batch or d["batch"]
    offset, init = 0, None
    for i, (steps, lr) in enumerate(stages):
        stage_out = out if i == len(stages) - 1 else work / f"stage{i + 1}-adapter"
        if not (stage_out / "training.json").exists() or i == len(stages) - 1:
            ce.train(pairs, stage_out, work / f"stage{i + 1}", max_steps=steps, batch=batch, lr=lr,
                     max_length=d["max_length"], save_steps=args.save_steps, threads=args.threads,
                     init=init, offset=offset)
        offset, init = offset + steps * batch, stage_out
    print(f"{args.role}: adapter written to {out}")
    return 0


def cmd_train_answerability(args) -> int:
    """Fit the answerability probe of the configured decoder (rag.answer.answerability)."""
    import random

    import numpy as np

    from ingest.build import ingest_paths
    from rag.answer.answerability import probe_path
    from rag.config import Settings
    from rag.pipeline import RagService
    from rag.train import probes as ab

    work = args.work or Path("var") / "train" / "answerability"
    args.out = args.out.with_suffix(".json") if args.out else None
    index_dir = args.index_dir or work / "index"
    settings = Settings().model_copy(update={"data_dir": index_dir, "threads": args.threads})
    svc = RagService(settings)
    squad = args.data / "squad2"
    report = ingest_paths(settings, svc.store, svc.embedder(), [squad / "corpus.jsonl"], "train-squad2")
    if report.errors:
        raise SystemExit(f"could not ingest {squad / 'corpus.jsonl'}: {report.errors[0].reason}")
    rows = read_jsonl(squad / "qa.jsonl")
    random.Random(0).shuffle(rows)  # a fixed order: a smaller --questions is a prefix of a larger one
    items = ab.prompt_items(args.data) + list(ab.squad_items(svc, "train-squad2", rows[:args.questions]))
    layers = [int(v) for v in args.layers.split(",")]
    x, y, groups, kinds = ab.extract(svc.generator, items, layers, work / f"states-{svc.generator.name}")
    is_squad = np.array([k.startswith("squad") for k in kinds])
    probe, fit_report = ab.fit(x, y, groups, layers, svc.generator.name, target=args.target, score_mask=is_squad)
    out = probe.save(args.out or probe_path(svc.generator.name))
    summary = {k: v for k, v in fit_report.items() if k not in ("grid", "oof_curve")}
    print(json.dumps(summary, indent=1))
    print(f"answerability probe written to {out}")
    if args.calibrate and not args.out:
        # The default threshold, through the real pipeline on train questions the probe never saw
        # (the next rows of the same shuffle), maximising SQuAD 2.0 F1 (rag.train.calibrate).
        from rag.train.calibrate import calibrate_collection

        held = work / "calibration"
        held.mkdir(parents=True, exist_ok=True)
        (held / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in
                                               rows[args.questions:args.questions + args.calibrate]))
        result = calibrate_collection(RagService(settings), "train-squad2", held, target=None, as_default=True)
        print(json.dumps(result, indent=1))
    return 0


def cmd_train_support(args) -> int:
    """Fit the support probe of the configured decoder (rag.answer.judge)."""
    from collections import Counter
    from dataclasses import replace

    from rag.answer.answerability import probe_path
    from rag.answer.judge import ROLE
    from rag.config import Settings
    from rag.pipeline import RagService
    from rag.train import probes as ab

    work = args.work or Path("var") / "train" / "support"
    svc = RagService(Settings().model_copy(update={"threads": args.threads}))
    name = svc.generator.name
    items = ab.halueval_items(args.data, args.halueval) + ab.squad_pair_items(args.data, args.questions)
    layers = [int(v) for v in args.layers.split(",")]
    cache = work / f"states-{name}-h{args.halueval}-q{args.questions}"  # cached parts belong to this item list
    x, y, groups, kinds = ab.extract(svc.generator, items, layers, cache)
    # The target threshold reported is the one letting `target` of the unsupported claims through.
    probe, report = ab.fit(x, y, groups, layers, name, target=args.target)
    report["items_by_kind"] = dict(sorted(Counter(kinds).items()))
    probe = replace(probe, fit=report)
    out = probe.save(args.out.with_suffix(".json") if args.out else probe_path(name, ROLE))
    print(json.dumps({k: v for k, v in report.items() if k not in ("grid", "oof_curve")}, indent=1))
    print(f"support probe written to {out}")
    return 0


def cmd_train_reader(args) -> int:
    """Fine-tune the extractive reader's members (rag.answer.reader.MEMBERS) on the SQuAD 2.0 train articles, then
    report how it gates three held-out articles read through the pipeline's own retrieval of
    the train corpus (answer-all F1, AUROC, the gate's threshold meeting --target; the reader
    answers as in the pipeline, Reading.answers), and fit there the judge's threshold for the
    reader's spans. The report goes to held_out.json beside the weights. The gate stays the
    reader's own boundary, rag.answer.reader.THRESHOLD = 0.5 (docs/results.md says why).
    --lang ko: the Korean reader instead (train_korean_reader)."""
    from rag.answer import reader as rd
    from rag.train import reader as tr

    if args.lang == "ko":
        return train_korean_reader(args)
    work = args.work or Path("var") / "train" / "reader"
    if args.member is not None and args.member not in rd.MEMBERS:
        raise SystemExit(f"--member must be one of {sorted(rd.MEMBERS)}")
    articles, held_out = tr.split_articles(args.data)
    out = args.out or rd.trained_path()
    for weights, recipe in rd.MEMBERS.items():  # each member trains once; a re-run resumes or skips it
        if (out / weights).exists() and not args.retrain or args.member not in (None, weights):
            continue
        rows = tr.examples(args.data, articles, halueval=recipe["halueval"], answer_removed=recipe["answer_removed"])
        print(f"reader member {weights}: {len(rows)} examples from {len(articles)} articles")
        tr.train(rows, out, work / Path(weights).stem, epochs=args.epochs or 2.0, batch=args.batch or 16,
                 lr=args.lr or 1e-4, save_steps=args.save_steps, threads=args.threads, weights=weights,
                 group_by_length=recipe["group_by_length"], base=args.base)
    print(f"reader: {len(rd.MEMBERS)} members in {out}")
    squad = args.data / "squad2"
    questions = [q for q in read_jsonl(squad / "qa.jsonl") if q["title"] in held_out]
    result = held_out_report(args, rd.Reader(out, threads=args.threads), squad / "corpus.jsonl", "train-squad2",
                             questions, work / "index")
    (out / "held_out.json").write_text(json.dumps({"held_out_articles": sorted(held_out), **result}, indent=1))
    print(json.dumps(result, indent=1))
    return 0


KOREAN_HELD_OUT = 12  # KorQuAD train articles the Korean reader does not see: its report, and the Korean ladder's folds


def train_korean_reader(args) -> int:
    """The Korean reader (rag.answer.reader.korean_path): multilingual-e5-small fine-tuned on
    SQuAD 2.0 train as the English e5 member is (stage one, cached in --work), then on the
    KorQuAD train articles but KOREAN_HELD_OUT (stage two: each question on its paragraph, on
    another paragraph of its article and on its paragraph without the answer's sentence, the
    last two "no answer"). Its report reads the held-out articles through the pipeline's
    retrieval, a third of their paragraphs withheld so that their questions have no answer
    (rag.train.reader.held_out_folder, written to WORK/held-out for `rag eval qa`)."""
    from rag.answer import reader as rd
    from rag.train import reader as tr

    work = args.work or Path("var") / "train" / "reader-ko"
    out = args.out or rd.korean_path()
    articles, held_out = tr.split_articles(args.data, holdout=KOREAN_HELD_OUT, folder="korquad")
    if not (out / rd.WEIGHTS).exists() or args.retrain:
        english = work / "e5-en"
        if not (english / rd.WEIGHTS).exists():
            squad, _ = tr.split_articles(args.data)
            rows = tr.examples(args.data, squad)
            print(f"Korean reader, stage one (SQuAD 2.0, e5): {len(rows)} examples from {len(squad)} articles")
            tr.train(rows, english, work / "e5-en-checkpoints", epochs=2.0, batch=args.batch or 16,
                     lr=args.lr or 1e-4, save_steps=args.save_steps, threads=args.threads, base="e5")
        recipe = rd.KOREAN_MEMBERS[rd.WEIGHTS]
        rows = tr.examples(args.data, articles, answer_removed=recipe["answer_removed"], folder="korquad")
        print(f"Korean reader, stage two (KorQuAD): {len(rows)} examples from {len(articles)} articles")
        tr.train(rows, out, work / "checkpoints", epochs=args.epochs or 1.0, batch=args.batch or 16,
                 lr=args.lr or 1e-4, save_steps=args.save_steps, threads=args.threads,
                 group_by_length=recipe["group_by_length"], base="e5", init=english / rd.WEIGHTS)
    folder = tr.held_out_folder(args.data, "korquad", held_out, work / "held-out")
    result = held_out_report(args, rd.korean_reader(out, threads=args.threads),
                             folder / "corpus.jsonl", "train-korquad-held-out", list(read_jsonl(folder / "qa.jsonl")),
                             work / "index")
    (out / "held_out.json").write_text(json.dumps({"held_out_articles": sorted(held_out), **result},
                                                  ensure_ascii=False, indent=1))
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


def held_out_report(args, reader, corpus: Path, collection: str, questions: list[dict], index_dir: Path) -> dict:
    """How a reader gates held-out questions read through the pipeline's retrieval of `corpus`
    (answer-all F1, AUROC, rates at its threshold and at the one meeting --target), and the
    judge's bar for its spans fitted there (the one that maximises SQuAD 2.0 F1 over the spans
    it would pass, as the official script's best_f1_thresh; the support probe was trained on
    the decoder's replies, and its own 0.5 withheld many right spans)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score
    from tqdm import tqdm

    from ingest.build import ingest_paths
    from rag.answer import reader as rd
    from rag.config import Settings
    from rag.metrics import f1_score
    from rag.pipeline import RagService
    from rag.retrieve.graph import routed
    from rag.train.calibrate import best_f1_threshold, fit_threshold

    settings = Settings().model_copy(update={"data_dir": args.index_dir or index_dir, "threads": args.threads})
    svc = RagService(settings)
    report = ingest_paths(settings, svc.store, svc.embedder(), [corpus], collection)
    if report.errors:
        raise SystemExit(f"could not ingest {corpus}: {report.errors[0].reason}")
    scores, gates, unmatched, labels, f1s, judged, answered = [], [], [], [], [], [], []
    for q in tqdm(questions, desc="held-out questions"):
        route: dict = {}
        hits = svc.rank(q["question"], collection, settings.top_k, route)
        r = reader.reading(q["question"], [h.chunk.text for h in hits], routed(route))
        scores.append(r.answerability)
        gates.append(r.gate)
        unmatched.append(bool(r.unmatched))
        labels.append(q["answerable"])
        answered.append(r.answers())
        f1s.append(f1_score(r.span.text, q["answers"]) if r.span and q["answerable"] else 0.0)
        judged.append(svc.verifier.verify(q["question"], r.span.cited, (), hits, 0.0).min_score
                      if r.answers() else -1.0)
    s, c, u = np.array(scores), np.array(gates), np.array(unmatched)
    y, f, j, decided = np.array(labels), np.array(f1s), np.array(judged), np.array(answered)
    judge_t = best_f1_threshold(list(j), list(y), list(f))
    target_t = fit_threshold(list(c), list(labels), args.target)  # the gate alone

    def at(base: np.ndarray, t: float, jt: float = 0.0) -> dict:
        """Rates where `base` (the reader's decisions, or the gate at t alone) answers and the judge passes."""
        ans = base & (j >= jt if jt > 0 else True)
        return {"threshold": round(t, 4), "judge_threshold": round(jt, 4),
                "answered_unanswerable_rate": round(float(ans[~y].mean()), 4),
                "answered_answerable_rate": round(float(ans[y].mean()), 4),
                "f1_answerable": round(float((f * ans)[y].mean()), 4)}

    return {"questions": len(y), "answerable": int(y.sum()),
            "auroc": round(float(roc_auc_score(y, s)), 4), "f1_answerable_all_answered": round(float(f[y].mean()), 4),
            "names_unmatched": {"answerable": round(float(u[y].mean()), 4), "unanswerable": round(float(u[~y].mean()), 4)},
            "at_reader_threshold": at(decided, rd.THRESHOLD), "target": args.target,
            "at_target": at(c >= target_t, target_t),
            "judge": svc.verifier.name, "judge_threshold": round(float(judge_t), 4),
            "at_reader_and_judge_thresholds": at(decided, rd.THRESHOLD, judge_t),
            "at_reader_threshold_judge_0.5": at(decided, rd.THRESHOLD, 0.5)}


def cmd_train_confidence(args) -> int:
    """Fit the answer confidence and the ladder's bars (rag.train.confidence) on the records of
    `rag eval qa` over train questions (--records), folds grouped by article; --lang ko: the
    Korean model, on the records of Korean questions (the Korean reader's held-out folder)."""
    from rag.answer import reader as rd
    from rag.answer.confidence import KOREAN_PATH, PATH
    from rag.train.confidence import train

    if args.records is None:
        raise SystemExit("rag train confidence needs --records: the records.jsonl of `rag eval qa` over train "
                         "questions (docs/results.md gives the command)")
    korean = args.lang == "ko"
    reader_name = rd.korean_reader().name if korean else rd.Reader.name
    model, report = train(read_jsonl(args.records), reader_name, args.c, korean)
    out = args.out or (KOREAN_PATH if korean else PATH)
    model.save(out)
    print(json.dumps({"answer": model.answer, "caveat": model.caveat, **report}, ensure_ascii=False, indent=1))
    print(f"confidence: written to {out}")
    return 0


def cmd_calibrate(args) -> int:
    from rag.config import Settings
    from rag.pipeline import RagService
    from rag.train.calibrate import calibrate_collection

    svc = RagService(Settings())
    result = calibrate_collection(svc, args.collection, args.data, target=args.target, limit=args.limit,
                                  as_default=args.as_default)
    print(json.dumps(result, indent=1))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train the reranker, judge or reader (MiniLM), or the answerability or support probe")
    p.add_argument("role", choices=["reranker", "judge", "answerability", "support", "reader", "confidence"])
    p.add_argument("--data", type=Path, default=DEFAULT_TRAIN, help="the shared/data/train folder")
    p.add_argument("--out", type=Path, default=None, help="adapter folder, or probe file (default: rag/models/trained/ROLE)")
    p.add_argument("--work", type=Path, default=None, help="checkpoint folder (default: var/train/ROLE)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="with --steps: one stage at this rate")
    p.add_argument("--save-steps", type=int, default=20)
    p.add_argument("--epochs", type=float, default=None,
                   help="reader: passes over its training windows (default 2; the Korean reader's KorQuAD stage 1)")
    p.add_argument("--lang", choices=["en", "ko"], default="en",
                   help="reader: the English pair (MiniLM), or the Korean reader (e5, SQuAD then KorQuAD); "
                        "confidence: the model for that language's answers")
    p.add_argument("--retrain", action="store_true", help="reader: train again even if weights exist (else only the held-out report)")
    p.add_argument("--base", choices=["minilm", "e5"], default="minilm",
                   help="reader: the packaged encoder to fine-tune (e5: multilingual-e5-small, 12 layers; see docs/model-card.md)")
    p.add_argument("--member", default=None, help="reader: train only this member (a weights file name of rag.answer.reader.MEMBERS)")
    p.add_argument("--threads", type=int, default=1)
    g = p.add_argument_group("probes on the decoder's state (answerability, support) and the reader's held-out report")
    g.add_argument("--index-dir", type=Path, default=None, help="data dir for the train-corpus index (default: WORK/index)")
    g.add_argument("--questions", type=int, default=None,
                   help="SQuAD 2.0 train questions to use (default: answerability 2000, support 400)")
    g.add_argument("--halueval", type=int, default=600, help="support: HaluEval train rows (two claims each)")
    g.add_argument("--layers", default="8,12,14,16,18,20,22,24", help="decoder layers to try (1-based)")
    g.add_argument("--target", type=float, default=0.08,
                   help="max share of no-answer contexts let through: the probes' provisional threshold (out "
                        "of fold); the reader's report (held-out articles)")
    g.add_argument("--calibrate", type=int, default=0,
                   help="then fit the default threshold to SQuAD 2.0 F1 on this many held-out train questions")
    g = p.add_argument_group("answer confidence")
    g.add_argument("--records", type=Path, default=None, help="confidence: records.jsonl of `rag eval qa` on train questions")
    g.add_argument("--c", type=float, default=1.0, help="confidence: the logistic regression's inverse regularisation")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("calibrate", help="refit a collection's abstention threshold on labelled questions")
    p.add_argument("--collection", default="default")
    p.add_argument("--data", type=Path, required=True, help="a QA folder (qa.jsonl with 'answerable')")
    p.add_argument("--target", type=float, default=None,
                   help="max share of unanswerable questions answered (default: maximise SQuAD 2.0 F1)")
    p.add_argument("--as-default", action="store_true",
                   help="also store the threshold as the shipped answerability probe's default")
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(fn=cmd_calibrate)
