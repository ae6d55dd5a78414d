"""Training examples for the LoRA decoder, built in the pipeline's own prompt format.

Every example is (messages, target): messages come from rag.answer.prompt.build_messages, exactly what
the pipeline sends the decoder, and the target is what it should reply: the shortest gold span
copied from the passages (the pipeline attaches the citation itself), or rag.answer.prompt.ABSTAIN.
Sources, all training splits:
- SQuAD 2.0 train folder: answerable questions with their paragraph among distractors (same
  article first: topical, hard), unanswerable ones (target: abstain), and answerable ones whose
  paragraph was removed (target: abstain: the answer is not in the passages).
- HotpotQA train folder: both supporting paragraphs (+ distractors), the one holding the
  answer (the target is its answer span); or drop that one (target: abstain).
- rag/data/train_ko: a small Korean set we wrote, so Korean questions keep Korean answers.

Limits, on purpose: passages are cut to a few hundred characters around the answer (or around
the sentence closest to an unanswerable question): CPU training cost grows with prompt length.
The dev split is never read here."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rag.jsonl import read_jsonl
from rag.answer.prompt import ABSTAIN, build_messages, sentences
from rag.types import Chunk, Hit

KOREAN_SET = Path(__file__).resolve().parents[1] / "data" / "train_ko" / "qa.jsonl"
# The training split beside the checkout (../shared/data/train): training and fitting read only it.
TRAIN_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "train"


@dataclass(frozen=True)
class Example:
    messages: list[dict[str, str]]
    target: str
    kind: str  # squad | squad_unans | squad_missing | hotpot | hotpot_missing | ko | ko_unans | ko_missing


@dataclass(frozen=True)
class Passage:
    title: str
    text: str


def _words(text: str) -> set[str]:
    # plain word sets: kiwi morphology (rag.text.tokenize) costs minutes over 9k questions
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 2}


def window(text: str, rng: random.Random, width: int, anchor: str | None = None, near: str | None = None) -> str:
    """A slice of about `width` characters, cut at word boundaries, that contains `anchor`
    (an answer span) or is centred on the sentence sharing most words with `near`."""
    if len(text) <= width:
        return text
    if anchor and anchor in text:
        i, j = text.index(anchor), text.index(anchor) + len(anchor)
    elif near:
        q = _words(near)
        best = max(sentences(text) or [text], key=lambda s: len(q & _words(s)))
        i = max(text.find(best), 0)
        j = i + min(len(best), width)
    else:
        i = j = rng.randrange(len(text) - width + 1)
    slack = max(width - (j - i), 0)
    start = max(0, min(i - rng.randint(0, slack), len(text) - width))
    end = max(j, start + width)
    # snap outward to word boundaries so no word is cut in half
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return text[start:end].strip()


def _hits(passages: list[Passage]) -> list[Hit]:
    return [Hit(Chunk(-1, "", p.text, 0, len(p.text), 0, "", p.title), 0.0, "fused") for p in passages]


def _example(question: str, passages: list[Passage], target: str, kind: str) -> Example:
    return Example(build_messages(question, _hits(passages)), target, kind)


def _place(rng: random.Random, gold: list[Passage], others: list[Passage]) -> tuple[list[Passage], list[int]]:
    """Shuffle gold passages among distractors; return the order and the gold positions (1-based)."""
    items = [(p, True) for p in gold] + [(p, False) for p in others]
    rng.shuffle(items)
    return [p for p, _ in items], [i for i, (_, g) in enumerate(items, 1) if g]


def _free_of(answers: list[str], text: str) -> bool:
    low = text.lower()
    return not any(a.lower() in low for a in answers)


def squad_examples(folder: Path, rng: random.Random, width: int, max_passages: int) -> list[Example]:
    corpus = {d["doc_id"]: d for d in read_jsonl(folder / "corpus.jsonl")}
    by_title: dict[str, list[str]] = defaultdict(list)
    for doc_id, d in corpus.items():
        by_title[d["title"]].append(doc_id)
    all_ids = sorted(corpus)
    out: list[Example] = []
    for q in read_jsonl(folder / "qa.jsonl"):
        gold_doc = corpus[q["doc_id"]]
        title = gold_doc["title"].replace("_", " ")
        answers = q["answers"]
        n_other = rng.randint(1, max_passages - 1)
        # mostly same-article distractors (topical, like real retrieval), sometimes any article
        pool = [i for i in by_title[gold_doc["title"]] if i != q["doc_id"]]
        pool = pool if pool and rng.random() < 0.8 else all_ids
        other_ids = [i for i in rng.sample(pool, min(len(pool), n_other + 2)) if i != q["doc_id"]]
        others = []
        for i in other_ids:
            text = window(corpus[i]["text"], rng, rng.randint(width // 2, width), near=q["question"])
            if _free_of(answers, text):
                others.append(Passage(corpus[i]["title"].replace("_", " "), text))
        others = others[:n_other]
        if not others:
            continue
        if q["answerable"]:
            short = min(answers, key=len)
            gold = Passage(title, window(gold_doc["text"], rng, width, anchor=short))
            if rng.random() < 0.15:  # the answer's paragraph was not retrieved: abstain
                out.append(_example(q["question"], others, ABSTAIN, "squad_missing"))
                continue
            order, _ = _place(rng, [gold], others)
            out.append(_example(q["question"], order, short, "squad"))
        else:
            gold = Passage(title, window(gold_doc["text"], rng, width, near=q["question"]))
            order, _ = _place(rng, [gold], others)
            out.append(_example(q["question"], order, ABSTAIN, "squad_unans"))
    return out


def hotpot_examples(folder: Path, rng: random.Random, width: int, max_passages: int) -> list[Example]:
    corpus = {d["doc_id"]: d for d in read_jsonl(folder / "corpus.jsonl")}
    out: list[Example] = []
    for q in read_jsonl(folder / "qa.jsonl"):
        ans = q["answers"][0]
        sup = [corpus[i] for i in q["supporting_doc_ids"] if i in corpus]
        holders = [d for d in sup if ans.lower() in d["text"].lower()]
        if not holders:
            continue  # comparison answers not stated verbatim: no span to copy
        m = re.search(re.escape(ans), holders[0]["text"], re.I)
        anchor = m.group(0) if m else ans
        distract = [corpus[i] for i in q["context_doc_ids"] if i in corpus and i not in q["supporting_doc_ids"]]
        distract = [d for d in distract if _free_of([ans], d["text"])]
        rng.shuffle(distract)
        gold = [Passage(d["title"], window(d["text"], rng, width, anchor=anchor if d is holders[0] else None,
                                           near=q["question"])) for d in sup]
        holder_p = gold[sup.index(holders[0])]
        if ans.lower() not in holder_p.text.lower():
            continue
        n_other = rng.randint(0, max(max_passages - len(gold), 0))
        others = [Passage(d["title"], window(d["text"], rng, width // 2 + rng.randint(0, width // 2),
                                             near=q["question"])) for d in distract[:n_other]]
        order, _ = _place(rng, gold, others)
        out.append(_example(q["question"], order, anchor, "hotpot"))
        # the same question with the answer's paragraph missing: the bridge alone does not answer
        rest = [p for p in gold if p is not holder_p and _free_of([ans], p.text)] + others
        if rest:
            order, _ = _place(rng, [], rest)
            out.append(_example(q["question"], order, ABSTAIN, "hotpot_missing"))
    return out


def korean_examples(rng: random.Random, repeats: int, path: Path = KOREAN_SET) -> list[Example]:
    items = read_jsonl(path)
    out: list[Example] = []
    for _ in range(repeats):
        for k, it in enumerate(items):
            others_pool = [Passage(o["title"], o["text"]) for j, o in enumerate(items) if j != k]
            gold = Passage(it["title"], it["text"])
            for question, answer in it["qa"]:
                others = rng.sample(others_pool, rng.randint(1, 2))
                if rng.random() < 0.15:
                    out.append(_example(question, others, ABSTAIN, "ko_missing"))
                    continue
                order, _ = _place(rng, [gold], others)
                out.append(_example(question, order, answer, "ko"))
            for question in it["unanswerable"]:
                order, _ = _place(rng, [gold], rng.sample(others_pool, rng.randint(1, 2)))
                out.append(_example(question, order, ABSTAIN, "ko_unans"))
    return out


def build_examples(train_dir: Path, seed: int = 0, width: int = 360, max_passages: int = 4,
                   korean_repeats: int = 2) -> list[Example]:
    """All training examples, shuffled deterministically by `seed`."""
    if "dev" in train_dir.resolve().parts:
        raise ValueError(f"{train_dir} looks like a dev split; train only on the training folders")
    rng = random.Random(seed)
    ex = squad_examples(train_dir / "squad2", rng, width, max_passages)
    ex += hotpot_examples(train_dir / "hotpotqa", rng, width, max_passages)
    ex += korean_examples(rng, korean_repeats)
    rng.shuffle(ex)
    return ex


def mix(examples: list[Example], n: int, shares: dict[str, float], seed: int = 0) -> list[Example]:
    """Pick n examples with the given share per kind group (prefix match: "squad" covers
    "squad" only; use exact kinds), keeping every example of kinds with fewer than asked."""
    rng = random.Random(seed)
    by_kind: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_kind[e.kind].append(e)
    picked: list[Example] = []
    for kind, share in shares.items():
        pool = by_kind.get(kind, [])
        picked += pool[: int(round(n * share))]
    rng.shuffle(picked)
    return picked
