"""`rag train reranker|judge` and `rag calibrate`: reproduce the shipped cross-encoders and
refit a collection's abstention threshold.

Training reads only ../shared/data/train (never dev), runs on one thread by default (the
machine is shared), checkpoints every --save-steps into --work and resumes from there when
re-run after an interruption. The result replaces rag/models_trained/<role>/."""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"
# Steps and batch of the shipped models (small: CPU-only, one thread, ~25 minutes each on a shared CPU).
DEFAULTS = {"reranker": dict(steps=90, batch=16, max_length=192), "judge": dict(steps=100, batch=16, max_length=160)}


def cmd_train(args) -> int:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from rag import crossencoder as ce

    d = DEFAULTS[args.role]
    pairs = (ce.reranker_pairs if args.role == "reranker" else ce.judge_pairs)(args.data, seed=0)
    out = args.out or ce.trained_path(args.role)
    work = args.work or Path("var") / "train" / args.role
    ce.train(pairs, out, work, max_steps=args.steps or d["steps"], batch=args.batch or d["batch"],
             max_length=d["max_length"], save_steps=args.save_steps, threads=args.threads)
    print(f"{args.role}: adapter written to {out}")
    return 0


def cmd_calibrate(args) -> int:
    from rag.calibrate import calibrate_collection
    from rag.config import Settings
    from rag.pipeline import RagService

    svc = RagService(Settings())
    result = calibrate_collection(svc, args.collection, args.data, target=args.target, limit=args.limit)
    print(json.dumps(result, indent=1))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train the reranker or the grounding judge (cross-encoders)")
    p.add_argument("role", choices=["reranker", "judge"])
    p.add_argument("--data", type=Path, default=DEFAULT_TRAIN, help="the shared/data/train folder")
    p.add_argument("--out", type=Path, default=None, help="adapter folder (default: rag/models_trained/ROLE)")
    p.add_argument("--work", type=Path, default=None, help="checkpoint folder (default: var/train/ROLE)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--save-steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("calibrate", help="refit a collection's abstention threshold on labelled questions")
    p.add_argument("--collection", default="default")
    p.add_argument("--data", type=Path, required=True, help="a QA folder (qa.jsonl with 'answerable')")
    p.add_argument("--target", type=float, default=0.05, help="max share of unanswerable questions answered")
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(fn=cmd_calibrate)
