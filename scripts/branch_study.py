"""How many branches answer selection should use, measured on the train split only.

Runs SQuAD 2.0 train questions (a fixed shuffle, rows START..START+N, after the rows the
answerability probe was fitted on) through the pipeline's retrieval and `HFGenerator.branch`
with K branches, scores every reply with the support probe and prints, for k = 1..K (the
first k branches; branch 0 is greedy decoding): answerable F1 when every question is
answered, and at the default gates, answerable F1 and the share of unanswerable questions
answered. Resumable (one JSON line per question).
Usage: RAG_DATA_DIR=var/probe python scripts/branch_study.py OUT.jsonl [N] [START] [K]
(var/probe holds the `train-squad2` collection that `rag train answerability` ingests)."""
import json
import random
import sys
from pathlib import Path

from tqdm import tqdm

from evals.metrics import f1_score
from rag.config import Settings
from rag.pipeline import RagService, pick_reply
from rag.prompt import build_messages
from rag.state_judge import claim_text

out = Path(sys.argv[1])
n, start, k = (int(sys.argv[i]) if len(sys.argv) > i else d for i, d in ((2, 200), (3, 5000), (4, 4)))
svc = RagService(Settings())
rows = [json.loads(line) for line in open("../shared/data/train/squad2/qa.jsonl")]
random.Random(0).shuffle(rows)  # the shuffle of `rag train answerability`
rows = rows[start:start + n]
done = {json.loads(line)["qid"] for line in open(out)} if out.exists() else set()
judge, probe = svc.verifier.state_judge, svc.answerability
with open(out, "a") as f:
    for r in tqdm([r for r in rows if r["qid"] not in done], desc="branches", unit="q"):
        hits = svc.rank(r["question"], "train-squad2", svc.settings.top_k)
        b = svc.generator.branch(build_messages(r["question"], hits), k, svc.settings.max_new_tokens,
                                 [probe.layer], [judge.probe.layer], claim_text)
        f.write(json.dumps({"qid": r["qid"], "answers": r["answers"], "answerable": r["answerable"],
                            "texts": b.texts, "answerability": probe.score(b.prompt_state[probe.layer]),
                            "support": [judge.probe.score(s[judge.probe.layer]) if s else None
                                        for s in b.claim_states], "seconds": b.total_s}) + "\n")
        f.flush()

recs = [json.loads(line) for line in open(out)]


def chosen(r, kk):
    """select_answer's choice among the first kk branches: (reply, support) or None."""
    i = pick_reply(r["texts"][:kk], r["support"][:kk])
    return None if i is None else (r["texts"][i], r["support"][i])


ans = [r for r in recs if r["answerable"]]
una = [r for r in recs if not r["answerable"]]
t_ans, t_sup = probe.threshold, svc.verifier.threshold
print(f"{len(recs)} train questions ({len(ans)} answerable); gates: answerability >= {t_ans:.3f}, "
      f"support >= {t_sup:.2f}")
print("| branches | f1, every question answered | f1 at the gates | unanswerable answered at the gates |")
print("|---|---|---|---|")
for kk in range(1, k + 1):
    picks = {r["qid"]: chosen(r, kk) for r in recs}
    gated = {r["qid"]: c for r in recs if (c := picks[r["qid"]]) and c[1] >= t_sup and r["answerability"] >= t_ans}
    f_all = sum(f1_score(picks[r["qid"]][0], r["answers"]) if picks[r["qid"]] else 0.0 for r in ans) / len(ans)
    f_gate = sum(f1_score(gated[r["qid"]][0], r["answers"]) if r["qid"] in gated else 0.0 for r in ans) / len(ans)
    u_gate = sum(r["qid"] in gated for r in una) / max(1, len(una))
    print(f"| {kk} | {f_all:.3f} | {f_gate:.3f} | {u_gate:.3f} |")
