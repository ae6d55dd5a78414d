"""Answerability probe: do the passages answer the question? Read off the decoder's own state.

Why: SQuAD-style unanswerable questions come with an on-topic passage, and the 0.5B decoder
copies a plausible span from it; the grounding judge then passes that span, because it *is*
in the passage. What the decoder has understood about the question and the passages is in
its hidden state at the end of the prompt (the position that writes the first answer token),
and whether the context holds the answer is close to linearly readable there (Slobodkin et
al., 2023, "The Curious Case of Hallucinatory (Un)answerability"). So a logistic regression
on that one vector (896 numbers for Qwen2.5-0.5B) gives P(answerable) at no extra model
cost: the vector is captured by a forward hook during the prefill that generation does
anyway (`HFGenerator.stream(..., tap_layer=L)`).

Training (`rag train answerability`) reads only shared/data/train: SQuAD 2.0 questions with
the contexts the pipeline itself retrieves from the train corpus (label: the retrieved
passages contain a gold answer), HotpotQA and our Korean set in the fine-tuning prompt format
(rag.finetune_data). Layer and regularisation are chosen by cross-validation grouped by
article. The default threshold is the model's decision boundary (0.5); `rag calibrate` fits
one per collection to a stated target or to SQuAD 2.0 F1. The probe belongs to one decoder (+ adapter):
loading checks the name, and a mismatch disables it rather than reading a foreign state.
Limits: fitted on encyclopedic English (+ a little Korean); refit (`rag train answerability`,
then `rag calibrate`) for other corpora or decoders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

TRAINED_DIR = Path(__file__).parent / "models_trained"  # probes in TRAINED_DIR/<role>/<generator>.json


def logistic(z: float) -> float:
    """1 / (1 + e^-z), clipped so that extreme scores cannot overflow."""
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))


@dataclass(frozen=True)
class Probe:
    decoder: str  # the generator name it was fitted on (decoder + adapter)
    layer: int  # hidden state after this many decoder layers (1-based), last prompt position
    weights: tuple[float, ...]  # standardisation folded in: p = sigmoid(w . x + bias)
    bias: float
    threshold: float  # default gate: answer only when P(answerable) reaches it
    fit: dict  # how it was fitted: data counts, CV scores, the threshold's target

    def score(self, state: np.ndarray) -> float:
        z = float(np.dot(np.asarray(self.weights, np.float64), np.asarray(state, np.float64)) + self.bias)
        return logistic(z)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> Probe:
        d = json.loads(Path(path).read_text())
        return cls(d["decoder"], int(d["layer"]), tuple(d["weights"]), float(d["bias"]),
                   float(d["threshold"]), d.get("fit", {}))


def probe_path(generator_name: str, role: str = "answerability") -> Path:
    """role: "answerability" (state at the prompt's end) or "support" (at a claim's end, rag.state_judge)."""
    return TRAINED_DIR / role / (generator_name.replace("/", "_").replace(":", "_") + ".json")


def load_probe(generator_name: str, role: str = "answerability") -> Probe | None:
    """The shipped probe of `role` fitted on this generator, or None (without an answerability
    probe sufficiency falls back to the judge's support, rag.calibrate; without a support probe
    claims go to the cross-encoder judge, rag.verify)."""
    p = probe_path(generator_name, role)
    if not p.exists():
        return None
    probe = Probe.load(p)
    return probe if probe.decoder == generator_name else None


@contextmanager
def tap(model, layers: list[int]) -> Iterator[dict[int, np.ndarray]]:
    """Record, for each 1-based layer, its output at the last position of the first forward
    pass (in generation: the prefill; the decode steps after it are ignored). Yields
    {layer: vector}, filled when that pass has run."""
    blocks = model.get_decoder().layers
    seen: dict[int, np.ndarray] = {}
    handles = []
    for layer in layers:
        def hook(_mod, _inp, out, layer=layer):
            h = out[0] if isinstance(out, tuple) else out
            if layer not in seen:
                seen[layer] = h[0, -1].float().cpu().numpy()
        handles.append(blocks[layer - 1].register_forward_hook(hook))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


# -- training data (only shared/data/train) --------------------------------------------------
@dataclass(frozen=True)
class Item:
    messages: list[dict[str, str]]
    label: int  # 1 = the passages hold an answer
    group: str  # CV group: items of one article never straddle folds
    kind: str
    answer: str = ""  # text after the prompt whose last token is read (rag.state_judge); "" = the prompt's end


def squad_items(service, collection: str, rows: list[dict]) -> Iterator[Item]:
    """SQuAD 2.0 questions with the pipeline's own top-k passages from the train corpus."""
    from rag.prompt import build_messages

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
    import random

    from rag.finetune_data import hotpot_examples, korean_examples
    from rag.prompt import ABSTAIN

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

    from rag.calibrate import fit_threshold

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
