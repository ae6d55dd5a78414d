"""Fitting the probes on the decoder's state (`rag train answerability|support`): their items,
built from shared/data/train only, the hidden states read off the decoder, and the grouped
cross-validated logistic regression that becomes a shipped rag.answer.answerability.Probe."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.answer.answerability import Probe
from rag.answer.judge import claim_text, passage_hit
from rag.answer.prompt import build_messages
from rag.jsonl import read_jsonl
from rag.train.crossencoder import other_answers

# -- training data (only shared/data/train) --------------------------------------------------
@dataclass(frozen=True)
class Item:
    messages: list[dict[str, str]]
    label: int  # 1 = the passages hold an answer
    group: str  # CV group: items of one article never straddle folds
    kind: str
    answer: str = ""  # text after the prompt whose last token is read (rag.answer.judge); "" = the prompt's end


def squad_items(service, collection: str, rows: list[dict]) -> Iterator[Item]:
    """SQuAD 2.0 questions with the pipeline's own top-k passages from the train corpus."""
    k = service.settings.top_k
    for r in rows:
        hits = service.rank(r["question"], collection, k)
        context = " ".join(h.chunk.text for h in hits).lower()
        held = r["answerable"] and any(a.lower() in context for a in r["answers"])
        yield Item(build_messages(r["question"], hits), int(held), "squad:" + r["title"],
                   "squad" if r["answerable"] else "squad_unans")


def prompt_items(train_dir: Path, seed: int = 0) -> list[Item]:
    """HotpotQA and the Korean set in the fine-tuning prompt format (gold passages present or
    removed), so multi-hop and Korean questions are not read as 'unanswerable' by style."""
    from rag.answer.prompt import ABSTAIN
    from rag.train.examples import hotpot_examples, korean_examples

    rng = random.Random(seed)
    out, question = [], 0
    for ex in hotpot_examples(train_dir / "hotpotqa", rng, 360, 4):
        question += ex.kind == "hotpot"  # a question's "missing" variant follows it: same group
        out.append(Item(ex.messages, int(ex.target != ABSTAIN), f"hotpot:{question}", ex.kind))
    out += [Item(ex.messages, int(ex.target != ABSTAIN), "ko", ex.kind) for ex in korean_examples(rng, 1)]
    return out


def extract(generator, items: list[Item], layers: list[int], cache: Path, batch: int = 50,
            progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Hidden states of `items` at `layers` -> (X[n, len(layers), d], y, groups, kinds).
    Written in parts of `batch` items under `cache`; a rerun skips the parts it has (resume)."""
    from tqdm import tqdm

    cache.mkdir(parents=True, exist_ok=True)
    parts = []
    bar = tqdm(total=len(items), desc="hidden states", unit="q", disable=not progress)
    for start in range(0, len(items), batch):
        part = cache / f"part-{start:06d}.npz"
        chunk = items[start:start + batch]
        saved = np.load(part) if part.exists() else None
        if saved is None or len(saved["y"]) != len(chunk):  # missing, or a shorter run's last part
            states = []
            for it in chunk:
                seen = generator.states(it.messages, it.answer, layers)
                states.append(np.stack([seen[layer] for layer in layers]))
                bar.update(1)
            tmp = part.with_suffix(".tmp.npz")
            np.savez(tmp, x=np.stack(states).astype(np.float16), y=[it.label for it in chunk])
            tmp.rename(part)
            saved = np.load(part)
        else:
            bar.update(len(chunk))
        parts.append(saved["x"].astype(np.float32))
    bar.close()
    return (np.concatenate(parts), np.array([it.label for it in items]),
            [it.group for it in items], [it.kind for it in items])


# -- fitting --------------------------------------------------------------------------------
def fit(x: np.ndarray, y: np.ndarray, groups: list[str], layers: list[int], decoder: str,
        target: float = 0.08, cs: tuple[float, ...] = (0.01, 0.1, 1.0), folds: int = 5,
        score_mask: np.ndarray | None = None) -> tuple[Probe, dict]:
    """Choose (layer, C) by grouped-CV AUROC, refit on everything, fold the scaler into the
    weights, and set the threshold on the out-of-fold scores of `score_mask` items (the
    SQuAD ones: the pipeline's real contexts) to `target`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from rag.train.calibrate import fit_threshold

    mask = np.ones(len(y), bool) if score_mask is None else score_mask
    splits = list(GroupKFold(n_splits=folds).split(x[:, 0], y, groups))
    table, best = [], None
    for li, layer in enumerate(layers):
        for c in cs:
            oof = np.zeros(len(y))
            for tr, te in splits:
                m = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
                m.fit(x[tr, li], y[tr])
                oof[te] = m.predict_proba(x[te, li])[:, 1]
            auc = float(roc_auc_score(y[mask], oof[mask]))
            table.append({"layer": layer, "C": c, "auroc": round(auc, 4)})
            if best is None or auc > best[0]:
                best = (auc, li, c, oof)
    auc, li, c, oof = best
    scaler = StandardScaler().fit(x[:, li])
    lr = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x[:, li]), y)
    w = lr.coef_[0] / scaler.scale_
    b = float(lr.intercept_[0] - np.dot(lr.coef_[0], scaler.mean_ / scaler.scale_))
    # The default gate is the model's own decision boundary, P(answerable) = 0.5. A threshold set
    # to a stated target (`target`, out of fold) is reported, and `rag calibrate` fits one per
    # collection; on held-out train questions the F1-optimal one (0.80) answered only 1 in 5
    # answerable questions, too few for a useful default (docs/results.md).
    t_target = fit_threshold(oof[mask], y[mask] == 1, target)
    t = 0.5
    curve = [{"threshold": round(float(q), 4),
              "negatives_passed": round(float((oof[mask][y[mask] == 0] >= q).mean()), 4),
              "positives_passed": round(float((oof[mask][y[mask] == 1] >= q).mean()), 4)}
             for q in np.linspace(0.05, 0.95, 19)]
    report = {"items": int(len(y)), "positives": int(y.sum()), "scored_items": int(mask.sum()),
              "layer": layers[li], "C": c, "cv_auroc": round(auc, 4), "folds": folds, "grid": table,
              "target_negatives_passed": target, "threshold_at_target": t_target, "threshold": t,
              "oof_positives_passed_at_threshold": round(float((oof[mask][y[mask] == 1] >= t).mean()), 4),
              "oof_negatives_passed_at_threshold": round(float((oof[mask][y[mask] == 0] >= t).mean()), 4),
              "oof_curve": curve}
    return Probe(decoder, layers[li], tuple(float(v) for v in w), b, t, report), report


# -- support items (the state after a claim) -------------------------------------------------
def halueval_items(train_dir: Path, rows: int, seed: int = 1) -> list[Item]:
    data = read_jsonl(train_dir / "halueval" / "halueval_qa.jsonl")
    random.Random(seed).shuffle(data)
    out = []
    for r in data[:rows]:
        messages = build_messages(r["question"], [passage_hit(r["knowledge"])])
        group = "halueval:" + r["id"]
        out.append(Item(messages, 1, group, "halueval_right", claim_text(r["right_answer"])))
        out.append(Item(messages, 0, group, "halueval_hallucinated", claim_text(r["hallucinated_answer"])))
    return out


def squad_pair_items(train_dir: Path, questions: int, seed: int = 2) -> list[Item]:
    """Gold answer vs another question's answer on the same paragraph (both copied spans)."""
    rng = random.Random(seed)
    corpus = {d["doc_id"]: d for d in read_jsonl(train_dir / "squad2" / "corpus.jsonl")}
    qs = [q for q in read_jsonl(train_dir / "squad2" / "qa.jsonl") if q["answerable"]]
    by_doc: dict[str, list[dict]] = {}
    for q in qs:
        by_doc.setdefault(q["doc_id"], []).append(q)
    rng.shuffle(qs)
    out = []
    for q in qs[:questions]:
        doc = corpus[q["doc_id"]]
        messages = build_messages(q["question"], [passage_hit(doc["text"], doc["title"])])
        group = "squad:" + q["title"]  # one article's questions share paragraphs: one fold
        out.append(Item(messages, 1, group, "squad_gold", claim_text(min(q["answers"], key=len))))
        wrong = other_answers(q, by_doc)
        if wrong:
            out.append(Item(messages, 0, group, "squad_other_answer", claim_text(rng.choice(wrong))))
    return out
