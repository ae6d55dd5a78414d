"""Training the cross-encoders of rag.models.crossencoder (`rag train reranker|judge`): their
pairs, built from shared/data/train only, and the LoRA fine-tuning through sentence-transformers'
CrossEncoderTrainer (HF Trainer underneath: checkpoints, resume)."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rag.jsonl import read_jsonl
from rag.models.crossencoder import base_model, judge_text, passage_text

LORA_TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
# LoRA in the top layers only: backward stops at the lowest trainable layer, so training costs
# about a third less on a CPU that is shared and slow (one step of 16 pairs takes ~10-20 s).
LORA_LAYERS = [2, 3, 4, 5]


# -- training data (only shared/data/train; never dev) --------------------------------------
@dataclass(frozen=True)
class Pairs:
    a: list[str]
    b: list[str]
    label: list[float]

    def __len__(self) -> int:
        return len(self.label)


def other_answers(q: dict, by_doc: dict[str, list[dict]]) -> list[str]:
    """Answers of the other questions on q's paragraph that do not overlap q's own: spans in the
    passage that answer something else (a judge's hardest negatives)."""
    return [a for o in by_doc[q["doc_id"]] if o is not q for a in o["answers"]
            if not any(a.lower() in g.lower() or g.lower() in a.lower() for g in q["answers"])]


def reranker_pairs(train_dir: Path, seed: int = 0) -> Pairs:
    """Relevance pairs: does this passage answer this question?
    SQuAD 2.0 answerable questions: their own paragraph = 1; the two paragraphs BM25 ranks
    highest among those that do not contain the answer = 0 (the negatives retrieval really
    confuses), and one other paragraph of the same article = 0 (topical). Unanswerable questions
    are left out: their own paragraph is on topic but holds no answer, and labelling it 0 (as the
    first reranker's pairs did) teaches that the most topical passage is irrelevant;
    saying whether an answer is there is the readers' and the gate's job.
    HotpotQA: supporting docs = 1, up to four of the question's distractor docs = 0."""
    from rag.store.index import BM25Index
    from rag.text import tokenize

    rng = random.Random(seed)
    a, b, y = [], [], []
    docs = list(read_jsonl(train_dir / "squad2" / "corpus.jsonl"))
    corpus = {d["doc_id"]: d for d in docs}
    by_article = defaultdict(list)
    for d in docs:
        by_article[d["title"]].append(d["doc_id"])
    bm25 = BM25Index.build(list(range(len(docs))), [tokenize(d["title"] + " " + d["text"]) for d in docs])
    for q in read_jsonl(train_dir / "squad2" / "qa.jsonl"):
        if not q["answerable"]:
            continue
        doc = corpus[q["doc_id"]]
        a.append(q["question"]); b.append(passage_text(doc["title"], doc["text"])); y.append(1.0)
        has_answer = lambda d: any(ans.lower() in d["text"].lower() for ans in q["answers"])  # noqa: E731
        hard = [docs[i] for i, _ in bm25.search(tokenize(q["question"]), 12)
                if docs[i]["doc_id"] != doc["doc_id"] and not has_answer(docs[i])][:2]
        taken = {doc["doc_id"]} | {d["doc_id"] for d in hard}
        topical = [corpus[i] for i in by_article[doc["title"]] if i not in taken and not has_answer(corpus[i])]
        for neg in hard + ([rng.choice(topical)] if topical else []):
            a.append(q["question"]); b.append(passage_text(neg["title"], neg["text"])); y.append(0.0)
    hcorpus = {d["doc_id"]: d for d in read_jsonl(train_dir / "hotpotqa" / "corpus.jsonl")}
    for q in read_jsonl(train_dir / "hotpotqa" / "qa.jsonl"):
        gold = set(q["supporting_doc_ids"])
        distract = [i for i in q["context_doc_ids"] if i not in gold]
        # sorted: iterating the set would make the pair order depend on PYTHONHASHSEED
        for i in sorted(gold) + rng.sample(distract, min(4, len(distract))):
            d = hcorpus[i]
            a.append(q["question"]); b.append(passage_text(d["title"], d["text"])); y.append(float(i in gold))
    return _shuffled(Pairs(a, b, y), seed)


def judge_pairs(train_dir: Path, seed: int = 0) -> Pairs:
    """HaluEval: (question + right answer, knowledge) = 1, (question + hallucinated answer,
    knowledge) = 0. SQuAD 2.0: (question + gold answer, paragraph) = 1; (question + the
    answer of another question on the same paragraph, paragraph) = 0 -- a span that is in
    the passage but does not answer this question, the subtle error of an extractive model;
    (question + gold answer, another paragraph of the article) = 0."""
    rng = random.Random(seed)
    a, b, y = [], [], []
    for r in read_jsonl(train_dir / "halueval" / "halueval_qa.jsonl"):
        a.append(judge_text(r["question"], r["right_answer"])); b.append(r["knowledge"]); y.append(1.0)
        a.append(judge_text(r["question"], r["hallucinated_answer"])); b.append(r["knowledge"]); y.append(0.0)
    corpus = {d["doc_id"]: d for d in read_jsonl(train_dir / "squad2" / "corpus.jsonl")}
    by_doc, by_article = defaultdict(list), defaultdict(list)
    qs = [q for q in read_jsonl(train_dir / "squad2" / "qa.jsonl") if q["answerable"]]
    for q in qs:
        by_doc[q["doc_id"]].append(q)
    for d in corpus.values():
        by_article[d["title"]].append(d["doc_id"])
    for q in qs:
        doc = corpus[q["doc_id"]]
        gold = min(q["answers"], key=len)
        p = passage_text(doc["title"], doc["text"])
        a.append(judge_text(q["question"], gold)); b.append(p); y.append(1.0)
        wrong = other_answers(q, by_doc)
        if wrong:
            a.append(judge_text(q["question"], rng.choice(wrong))); b.append(p); y.append(0.0)
        other = [i for i in by_article[doc["title"]] if i != doc["doc_id"]
                 and gold.lower() not in corpus[i]["text"].lower()]
        if other and rng.random() < 0.5:
            o = corpus[rng.choice(other)]
            a.append(judge_text(q["question"], gold)); b.append(passage_text(o["title"], o["text"])); y.append(0.0)
    return _shuffled(Pairs(a, b, y), seed)


def _shuffled(p: Pairs, seed: int) -> Pairs:
    order = list(range(len(p)))
    random.Random(seed).shuffle(order)
    return Pairs([p.a[i] for i in order], [p.b[i] for i in order], [p.label[i] for i in order])


# -- training --------------------------------------------------------------------------------
def train(pairs: Pairs, out_dir: Path, work_dir: Path, max_steps: int, batch: int = 16, lr: float = 5e-4,
          rank: int = 16, max_length: int = 256, save_steps: int = 50, threads: int = 1,
          init: Path | None = None, offset: int = 0) -> Path:
    """LoRA-tune the base cross-encoder with BCE loss on pairs[offset:]; resumes from the
    newest checkpoint in work_dir; `init` continues from an earlier adapter (a second stage
    on fresh pairs). Writes the adapter (+ head) to out_dir. Returns out_dir."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from rag.models.weights import cpu_has_bf16

    torch.set_num_threads(threads)
    model = base_model(max_length)
    if init is not None:
        model.load_adapter(str(init), is_trainable=True)
    else:
        model.add_adapter(LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05, target_modules=LORA_TARGETS,
                                     layers_to_transform=LORA_LAYERS, layers_pattern="layer",
                                     modules_to_save=["classifier", "pooler"], task_type="SEQ_CLS"))
    n = min(len(pairs) - offset, max_steps * batch)
    sl = slice(offset, offset + n)
    ds = Dataset.from_dict({"a": pairs.a[sl], "b": pairs.b[sl], "label": pairs.label[sl]})
    args = CrossEncoderTrainingArguments(
        output_dir=str(work_dir), max_steps=max_steps, per_device_train_batch_size=batch, learning_rate=lr,
        warmup_steps=max(1, max_steps // 20), lr_scheduler_type="linear", save_steps=save_steps,
        save_total_limit=2, logging_steps=10, seed=0, data_seed=0, use_cpu=True,
        # bf16 autocast only where the CPU computes bf16 natively; elsewhere it is emulated and slower
        bf16=cpu_has_bf16(),
        dataloader_num_workers=0, report_to="none", disable_tqdm=False)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=ds, loss=BinaryCrossEntropyLoss(model))
    last = _last_checkpoint(work_dir)
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.transformers_model.save_pretrained(str(out_dir))
    (out_dir / "training.json").write_text(json.dumps(
        {"pairs": n, "offset": offset, "init": str(init) if init else None,
         "positives": int(sum(pairs.label[sl])), "max_steps": max_steps, "batch": batch, "lr": lr,
         "rank": rank, "max_length": max_length, "lora_targets": LORA_TARGETS, "lora_layers": LORA_LAYERS,
         "log": [h for h in trainer.state.log_history if "loss" in h][-5:]}, indent=1))
    return out_dir


def _last_checkpoint(work_dir: Path) -> Path | None:
    cps = sorted(work_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])) if work_dir.exists() else []
    return cps[-1] if cps else None
