"""The prompt the decoder sees, and the parsing of what it says back.

One format everywhere: the pipeline, the LoRA training examples (rag.train.finetune) and the
evaluation all build prompts here, so the adapter is trained on exactly what it is served.
Passages are numbered [1]..[n]; the reply is a short phrase copied from them, or the
abstention phrase; the pipeline attaches the citation, giving e.g. "9.7 million [1]"."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence

from rag.models.decoder import Generation
from rag.text import is_korean, tokenize
from rag.types import Citation, Hit

# The reply is a short phrase copied from a passage, and its marker: 48 tokens leave room.
MAX_NEW_TOKENS = 48
ABSTAIN = "I don't know"
ABSTAIN_KO = "모르겠습니다"
# What the user sees when the service abstains, in the question's language.
ABSTAIN_MESSAGE = "I don't know: the documents do not contain the answer."
ABSTAIN_MESSAGE_KO = "모르겠습니다: 문서에서 답을 찾을 수 없습니다."

# The decoder is asked for the answer phrase only; the pipeline then cites the passage that
# contains it (rag.pipeline.attribute). Asked to cite [n] itself, the 0.5B base model replied
# with a bare "[1]" to 10 of 25 answerable dev questions (F1 0.24); asked for the phrase alone,
# to none (F1 0.43). Markers a model writes anyway (a tuned adapter) are still parsed and checked.
SYSTEM = (
    "Answer the question using only the passages. Reply with only the shortest exact phrase "
    "copied from the passages that answers it, nothing else. Answer in the language of the "
    f"question. If the passages do not contain the answer, reply exactly: {ABSTAIN}"
)

# Korean questions get the same instruction in Korean: with the English one the 0.5B decoder
# drifted into Chinese ("2013年" for "2013년"), which the grounding check then rightly rejected.
SYSTEM_KO = (
    "주어진 문단만 사용하여 질문에 답하세요. 문단에서 답이 되는 가장 짧은 구절을 그대로 복사하여 "
    f"한국어로 답하고, 다른 말은 쓰지 마세요. 문단에 답이 없으면 정확히 이렇게 답하세요: {ABSTAIN_KO}"
)

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_ABSTAIN_RE = re.compile(
    r"^\W*(i\s*don'?t\s*know|i\s*do\s*not\s*know|unanswerable|no answer|모르겠|알\s*수\s*없)", re.I
)


def format_passage(i: int, hit: Hit) -> str:
    title = hit.chunk.title.replace("_", " ").strip()
    head = f"[{i}] {title}: " if title else f"[{i}] "
    return head + " ".join(hit.chunk.text.split())


def build_messages(question: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
    passages = "\n\n".join(format_passage(i, h) for i, h in enumerate(hits, 1))
    user = f"Passages:\n{passages}\n\nQuestion: {question.strip()}"
    system = SYSTEM_KO if is_korean(question) else SYSTEM
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def is_abstention(text: str) -> bool:
    """The abstention phrase, or a reply with no answer text at all (a bare "[1]" cites nothing)."""
    content = strip_markers(text)
    return not content or bool(_ABSTAIN_RE.match(content))


def abstain_message(question: str) -> str:
    return ABSTAIN_MESSAGE_KO if is_korean(question) else ABSTAIN_MESSAGE


def parse_citations(text: str, hits: Sequence[Hit]) -> tuple[str, tuple[Citation, ...]]:
    """Split the model's reply into answer text and citations. Markers that point to no
    passage are dropped from the text; each valid passage is cited once, in order."""
    seen: list[int] = []

    def keep(m: re.Match) -> str:
        nums = [int(n) for n in re.split(r"\s*,\s*", m.group(1))]
        valid = [n for n in nums if 1 <= n <= len(hits)]
        for n in valid:
            if n not in seen:
                seen.append(n)
        return "".join(f"[{n}]" for n in valid)

    cleaned = _MARKER.sub(keep, text)
    cleaned = re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"[ \t]+", " ", cleaned)).strip()
    answer_plain = strip_markers(cleaned)
    cites = tuple(
        Citation(n, hits[n - 1].chunk.id, hits[n - 1].chunk.source, best_quote(answer_plain, hits[n - 1].chunk.text))
        for n in seen
    )
    return cleaned, cites


def strip_markers(text: str) -> str:
    return re.sub(r"\s+", " ", _MARKER.sub("", text)).strip(" .")


def sentences(text: str) -> list[str]:
    """Rough sentence split for quotes and claims (Korean endings included)."""
    parts = re.split(r"(?<=[.!?。])\s+|(?<=[다요죠까])\.?\s+(?=[가-힣A-Z])", text.strip())
    return [p.strip() for p in parts if p and p.strip()]


def best_quote(answer: str, passage: str, limit: int = 300) -> str:
    """The passage sentence that holds the answer (or overlaps it most): the span the UI
    highlights and the judge checks."""
    sents = sentences(passage) or [passage]
    low = answer.lower()
    for s in sents:
        if low and low in s.lower():
            return s[:limit]
    a = set(tokenize(answer))
    best = max(sents, key=lambda s: len(a & set(tokenize(s))))
    return best[:limit]


def scripted_answer(messages: list[dict[str, str]]) -> str:
    """The fake decoder's policy (see rag.models.decoder.ScriptedGenerator)."""
    user = messages[-1]["content"]
    question = user.rsplit("Question:", 1)[-1]
    q = set(tokenize(question))
    best, best_n, best_overlap = "", 0, 0
    for n, block in re.findall(r"\[(\d+)\] (.*?)(?=\n\n\[\d+\] |\n\nQuestion:)", user, flags=re.S):
        for s in sentences(block.split(": ", 1)[-1]):
            overlap = len(q & set(tokenize(s)))
            if overlap > best_overlap:
                best, best_n, best_overlap = s, int(n), overlap
    if best_overlap < 2:
        return ABSTAIN_KO if is_korean(question) else ABSTAIN
    return f"{best.rstrip('.')} [{best_n}]"


class ScriptedGenerator:
    """Deterministic stand-in for tests and `RAG_BACKEND=fake`: answers with the passage
    sentence that shares the most words with the question and cites it, or abstains when
    no passage shares a content word. Never loads a model."""

    name = "scripted"

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int) -> Generation:
        t0 = time.perf_counter()
        text = scripted_answer(messages)
        dt = time.perf_counter() - t0
        return Generation(text, 0, len(text.split()), dt, dt)

    def stream(self, messages: list[dict[str, str]], max_new_tokens: int,
               tap_layer: int | None = None) -> Iterator[str]:
        text = self.generate(messages, max_new_tokens).text
        for word in text.split(" "):
            yield word + " "
