"""Write the held-out SQuAD 2.0 train articles as a `rag eval qa` data folder.

The readers never trained on these three articles (rag.reader.split_articles); the questions the
decoder's answerability probe was fitted and calibrated on (the first rows of the shuffle in
`rag train answerability`, as many as its shipped fit records) are left out too, so the whole pipeline can
be measured on train data none of its trained parts saw, before anything is tried on dev.
The corpus is the whole train corpus: retrieval must find the article among all of them.
Usage: python scripts/heldout_squad.py OUT_DIR [--train ../shared/data/train]
then:  RAG_DATA_DIR=var/heldout rag eval qa --data OUT_DIR --out OUT [--limit N]"""
import json
import random
import shutil
import sys
from pathlib import Path

from rag.answerability import load_probe
from rag.config import Settings
from rag.jsonl import read_jsonl
from rag.reader import split_articles

# The shipped probe's record says how many rows of the shuffle it was fitted on (its SQuAD
# items) and then calibrated on (the next ones): 800 + 200 for the default decoder's.
fit = load_probe(Settings().decoder).fit
PROBE_ROWS = fit["scored_items"] + fit["threshold_calibration"]["questions"]

out = Path(sys.argv[1])
train = Path(sys.argv[sys.argv.index("--train") + 1]) if "--train" in sys.argv else Path("../shared/data/train")
_, held_out = split_articles(train)
rows = read_jsonl(train / "squad2" / "qa.jsonl")
shuffled = list(rows)
random.Random(0).shuffle(shuffled)  # the order `rag train answerability` takes its questions in
seen = {r["qid"] for r in shuffled[:PROBE_ROWS]}
keep = [r for r in rows if r["title"] in held_out and r["qid"] not in seen]
out.mkdir(parents=True, exist_ok=True)
(out / "qa.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep), encoding="utf-8")
shutil.copy(train / "squad2" / "corpus.jsonl", out / "corpus.jsonl")
print(f"{len(keep)} questions ({sum(r['answerable'] for r in keep)} answerable) from {sorted(held_out)} in {out}")
