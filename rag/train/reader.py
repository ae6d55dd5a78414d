"""Training the extractive reader of rag.answer.reader (`rag train reader`): its examples, built
from shared/data/train only (never dev), the fine-tuning with transformers' Trainer, and the
report of how it gates held-out train articles read through the pipeline's own retrieval."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from pathlib import Path

from rag.answer.reader import BASES, WEIGHTS, base_model, encode, tokenizer
from rag.jsonl import read_jsonl

def split_articles(train_dir: Path, holdout: int = 3, seed: int = 0, folder: str = "squad2") -> tuple[set[str], set[str]]:
    """(training articles, held-out articles) of a SQuAD-format folder of train_dir: whole
    articles, so no paragraph is shared."""
    titles = sorted({q["title"] for q in read_jsonl(train_dir / folder / "qa.jsonl")})
    random.Random(seed).shuffle(titles)
    return set(titles[holdout:]), set(titles[:holdout])


def gold_start(text: str, answers: list[str]) -> tuple[int, str] | None:
    """The shortest gold answer found in the text (SQuAD's golds are substrings; the shortest
    is the concise span the pipeline wants) and its first character offset."""
    for a in sorted(answers, key=len):
        i = text.find(a)
        if i >= 0:
            return i, a
    return None


def without_answer(text: str, answers: list[str]) -> str | None:
    """The text minus each sentence that holds an answer, or None when nothing answer-free is
    left: the passage that is about the question but does not answer it, which retrieval
    hands the reader all the time (a hard "no answer" example)."""
    from rag.entities import sentences

    low = [a.lower() for a in answers if a]
    keep = [text[s:e] for s, e in sentences(text) if not any(a in text[s:e].lower() for a in low)]
    rest = " ".join(keep).strip()
    return rest if rest and not any(a in rest.lower() for a in low) else None


def examples(train_dir: Path, articles: set[str], seed: int = 0, halueval: int = 0,
             answer_removed: bool = False, folder: str = "squad2") -> list[dict]:
    """The questions of a SQuAD-format folder of train_dir (SQuAD 2.0 train; korquad for the
    Korean reader) of the given articles on their paragraph (answer span, or none
    for the unanswerable ones); for half the answerable ones also another paragraph of the
    same article without the answer labelled "no answer" (in the pipeline the reader sees
    several retrieved passages and must not pick a span from one that does not answer).
    answer_removed: for a quarter of the answerable ones also their own paragraph without the
    answer's sentence, "no answer". halueval: that many multi-hop questions of HaluEval
    (HotpotQA knowledge), likewise with and without the answer's sentence (on SQuAD alone the
    reader read bridge and comparison questions badly: dev HotpotQA F1 0.22 against the
    decoder's 0.42)."""
    rng = random.Random(seed)
    corpus = {d["doc_id"]: d for d in read_jsonl(train_dir / folder / "corpus.jsonl")}
    by_article = defaultdict(list)
    for d in corpus.values():
        by_article[d["title"]].append(d["doc_id"])
    out = []

    def add(question: str, context: str, answers: list[str] | None) -> bool:
        found = gold_start(context, answers) if answers else None
        if answers and found is None:
            return False
        out.append({"question": question, "context": context,
                    "start": found[0] if found else -1, "answer": found[1] if found else ""})
        return True

    for q in read_jsonl(train_dir / folder / "qa.jsonl"):
        if q["title"] not in articles:
            continue
        text = corpus[q["doc_id"]]["text"]
        if not add(q["question"], text, q["answers"] if q["answerable"] else None) or not q["answerable"]:
            continue
        draw = rng.random()
        if draw < 0.5:
            other = [i for i in by_article[q["title"]] if i != q["doc_id"]
                     and not any(a.lower() in corpus[i]["text"].lower() for a in q["answers"])]
            if other:
                add(q["question"], corpus[rng.choice(other)]["text"], None)
        elif answer_removed and draw < 0.75 and (rest := without_answer(text, q["answers"])):
            add(q["question"], rest, None)
    rows = read_jsonl(train_dir / "halueval" / "halueval_qa.jsonl") if halueval else []
    rng.shuffle(rows)
    taken = 0
    for r in rows:
        if taken >= halueval:
            break
        # HaluEval joins its two paragraphs without a space ("century.First"): restore it
        text, answer = (re.sub(r"([.!?])(?=[A-Z])", r"\1 ", t).strip() for t in (r["knowledge"], r["right_answer"]))
        if add(r["question"].strip(), text, [answer]):
            taken += 1
            if rest := without_answer(text, [answer]):
                add(r["question"].strip(), rest, None)
    rng.shuffle(out)
    return out


def features(tok, rows: list[dict], padding: str | bool = "max_length") -> dict:
    """Token windows with start/end labels; a window without the whole answer points at [CLS]."""
    enc = encode(tok, [r["question"] for r in rows], [r["context"] for r in rows], padding=padding)
    starts, ends = [], []
    for w, offsets in enumerate(enc["offset_mapping"]):
        r = rows[enc["overflow_to_sample_mapping"][w]]
        seq = enc.sequence_ids(w)
        s_tok = e_tok = 0
        if r["start"] >= 0:
            a0, a1 = r["start"], r["start"] + len(r["answer"])
            ctx = [i for i, s in enumerate(seq) if s == 1]
            if offsets[ctx[0]][0] <= a0 and offsets[ctx[-1]][1] >= a1:
                s_tok = next(i for i in ctx if offsets[i][1] > a0)
                e_tok = next(i for i in reversed(ctx) if offsets[i][0] < a1)
        starts.append(s_tok)
        ends.append(e_tok)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "token_type_ids": enc["token_type_ids"], "start_positions": starts, "end_positions": ends}


def train(rows: list[dict], out_dir: Path, work_dir: Path, epochs: float = 2.0, batch: int = 16,
          lr: float = 1e-4, save_steps: int = 100, threads: int = 2, weights: str = WEIGHTS,
          group_by_length: bool = False, base: str = "minilm", init: Path | None = None) -> Path:
    """Fine-tune the base encoder's transformer layers (six for MiniLM, twelve for e5) and the
    span head (the word embeddings stay the packaged ones) with transformers' Trainer: checkpoints in work_dir, a re-run resumes from
    the newest. Dropout is off: on this CPU it made a step 2.5x slower (2.6 s vs 1.1 s for 16
    windows), and two epochs over ~11k windows is the whole budget.
    group_by_length: batches of similar length padded to their longest (HaluEval's windows are
    short) instead of every window padded to MAX_LENGTH.
    init: trained tensors of the same base to start from instead of the fresh span head (the
    Korean reader starts from the English e5 reader: SQuAD's task, then KorQuAD's language).
    Writes the trained tensors (bf16, ~21 MB) to out_dir/weights and its record to training.json."""
    import torch
    from datasets import Dataset
    from safetensors.torch import save_file
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, default_data_collator

    torch.set_num_threads(threads)
    tok = tokenizer(base)
    data = Dataset.from_dict(features(tok, rows, padding=False if group_by_length else "max_length"))
    model = base_model(dropout=0.0, base=base)
    if init is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(init)), strict=False)
    for p in model.bert.embeddings.parameters():
        p.requires_grad = False
    warmup = int(0.06 * epochs * len(data) / batch)
    args = TrainingArguments(
        output_dir=str(work_dir), per_device_train_batch_size=batch, learning_rate=lr,
        num_train_epochs=epochs, warmup_steps=warmup, lr_scheduler_type="linear", weight_decay=0.01,
        bf16=True, use_cpu=True, save_steps=save_steps, save_total_limit=2, logging_steps=20,
        report_to=[], seed=0, dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if group_by_length else "random")
    collator = DataCollatorWithPadding(tok) if group_by_length else default_data_collator
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator)
    last = max(work_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]), default=None)
    result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    trained = {n: p.detach().to(torch.bfloat16).contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(trained, str(out_dir / weights))
    record = out_dir / "training.json"
    log = json.loads(record.read_text()) if record.exists() else {}
    log[weights] = {"examples": len(rows), "windows": len(data), "epochs": epochs, "batch": batch, "lr": lr,
                    "group_by_length": group_by_length, "train_loss": result.training_loss,
                    "base": BASES[base], **({"init": init.name} if init else {})}
    record.write_text(json.dumps(log, indent=1))
    return out_dir


def held_out_folder(train_dir: Path, folder: str, articles: set[str], out: Path, withheld: float = 1 / 3,
                    per_article: int = 30, seed: int = 0) -> Path:
    """A QA folder (corpus.jsonl, qa.jsonl) of held-out articles for `rag eval qa`, with
    unanswerable questions where the source has none (KorQuAD): `withheld` of each article's
    paragraphs are left out of the corpus, and their questions, whose answer is then in no
    kept paragraph, become unanswerable. They ask about the article's topic over its other
    paragraphs, which is what an unanswerable question meets in use. Questions whose answer
    also occurs in a kept paragraph are dropped (neither label is sure); at most `per_article`
    questions per article are kept, so every article weighs alike in the folds."""
    rng = random.Random(seed)
    corpus = [d for d in read_jsonl(train_dir / folder / "corpus.jsonl") if d["title"] in articles]
    by_article = defaultdict(list)
    for d in corpus:
        by_article[d["title"]].append(d["doc_id"])
    dropped = set()
    for ids in by_article.values():
        dropped |= set(rng.sample(sorted(ids), round(len(ids) * withheld)))
    kept = [d for d in corpus if d["doc_id"] not in dropped]
    kept_text = defaultdict(str)
    for d in kept:
        kept_text[d["title"]] += "\n" + d["text"].lower()
    questions = defaultdict(list)
    for q in read_jsonl(train_dir / folder / "qa.jsonl"):
        if q["title"] not in articles:
            continue
        if q["doc_id"] in dropped:
            if any(a.lower() in kept_text[q["title"]] for a in q["answers"]):
                continue
            q = {**q, "answerable": False, "answers": []}
        questions[q["title"]].append(q)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d in kept:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(out / "qa.jsonl", "w", encoding="utf-8") as f:
        for title in sorted(questions):
            for q in rng.sample(questions[title], min(per_article, len(questions[title]))):
                f.write(json.dumps(q, ensure_ascii=False) + "\n")
    return out
