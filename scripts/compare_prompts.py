"""Compare decoder instructions on the same retrieved passages (the experiment behind the
phrase-only prompt in rag/prompt.py). Run from the repo root with the dev SQuAD folder:

    RAG_DATA_DIR=var/evals python scripts/compare_prompts.py ../shared/data/dev/squad2 25

It ingests the corpus (as `rag eval qa` does), takes the first N answerable questions of the
deterministic 120-question subset, and prints F1 and the count of bare "[n]" replies per variant."""

import json
import sys
from pathlib import Path

import rag.prompt as P
from evals.metrics import f1_score
from evals.qa import prepare, subset
from rag.config import Settings

VARIANTS = {
    "cite-in-reply (before)": (
        "Answer the question using only the numbered passages. Reply with the shortest exact phrase "
        "from the passages that answers it, followed by the number of its passage in brackets. "
        f"Answer in the language of the question. If the passages do not contain the answer, reply exactly: {P.ABSTAIN}"),
    "phrase-only (shipped)": P.SYSTEM,
}


def main(data: Path, n: int) -> None:
    svc, collection = prepare(Settings(adapter="none", rerank="off", verify="off"), data)
    items = [q for q in subset([json.loads(x) for x in open(data / "qa.jsonl")], 120, "qid") if q["answerable"]][:n]
    contexts = {q["qid"]: svc.rank(q["question"], collection, svc.settings.top_k) for q in items}
    for name, system in VARIANTS.items():
        f1s, bare = [], 0
        for q in items:
            msgs = P.build_messages(q["question"], contexts[q["qid"]])
            msgs[0]["content"] = system
            raw = svc.generator.generate(msgs, 40).text
            bare += not P.strip_markers(raw)
            f1s.append(0.0 if P.is_abstention(raw) else f1_score(P.strip_markers(raw), q["answers"]))
        print(f"{name}: f1 {sum(f1s) / len(f1s):.3f}, bare markers {bare} of {len(items)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25)
