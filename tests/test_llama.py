"""The serving decoder on llama.cpp against the transformers path it replaced: the same prompt
tokens, the same hidden states where the probes read them, the same greedy answer; the cached
prompt gives the states a full prefill gives; Korean streams as whole characters."""

import numpy as np
import pytest

from rag.answer.prompt import build_messages
from rag.config import Settings
from rag.types import Chunk, Hit

pytestmark = pytest.mark.slow

PASSAGE = ("The Harbor Point Lighthouse was designed by Margaret Ellison and completed in 1874. "
           "The light was automated in 1962, and the last keeper, Thomas Reed, left the station that year.")
KOREAN = "한라산은 제주도에 있는 산으로, 높이는 1,947미터이며 대한민국에서 가장 높은 산이다."


def hits(text: str) -> list[Hit]:
    return [Hit(Chunk(1, "doc", text, 0, len(text), 0, "notes.txt", "Notes"), 1.0, "fused")]


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    from rag.models.decoder import HFGenerator
    from rag.models.llama import LlamaCppGenerator

    s = Settings()  # the shared model folder: the joined GGUF and the transformers copy are reused
    return LlamaCppGenerator(s.decoder, s.models_path, 2), HFGenerator(s.decoder, s.models_path, None, 2, "float32")


def cosine(a, b) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("question,text", [("When was the light automated?", PASSAGE),
                                           ("한라산의 높이는 얼마인가요?", KOREAN)])
def test_same_tokens_and_states_as_transformers(decoders, question, text):
    llama, hf = decoders
    messages = build_messages(question, hits(text))
    assert llama.encode(messages) == hf.encode(messages)[0].tolist()
    for layer in (14, 16):  # the answerability and support probes' layers
        assert cosine(llama.states(messages, "", [layer])[layer], hf.states(messages, "", [layer])[layer]) > 0.999
        assert cosine(llama.states(messages, "1962", [layer])[layer],
                      hf.states(messages, "1962", [layer])[layer]) > 0.999


def test_same_greedy_answer_and_the_prefill_state(decoders):
    llama, hf = decoders
    messages = build_messages("When was the light automated?", hits(PASSAGE))
    pieces = list(llama.stream(messages, 24, tap_layer=14))
    state = pieces.pop()
    assert isinstance(state, np.ndarray) and state.shape == (896,)
    assert "".join(pieces).strip() == hf.generate(messages, 24).text
    assert cosine(state, llama.states(messages, "", [14])[14]) > 0.9999


def test_a_claim_behind_the_cached_prompt_reads_like_a_full_prefill(decoders):
    llama, _ = decoders
    messages = build_messages("Who designed the lighthouse?", hits(PASSAGE))
    llama.generate(messages, 8)  # leaves this prompt's keys and values in the cache
    cached = llama.states(messages, "Margaret Ellison", [16])[16]
    llama.states(build_messages("Who?", hits(KOREAN)), "", [16])  # another prompt replaces the cache
    full = llama.states(messages, "Margaret Ellison", [16])[16]
    assert cosine(cached, full) > 0.999


def test_korean_streams_whole_characters(decoders):
    llama, _ = decoders
    messages = build_messages("한라산의 높이는 얼마인가요?", hits(KOREAN))
    out = llama.generate(messages, 24)
    assert "1,947" in out.text and "\ufffd" not in out.text
    assert out.prompt_tokens == len(llama.encode(messages)) and out.new_tokens > 0


def test_q4_0_is_prepared_once_and_reads_close_to_the_shipped_weights(decoders):
    """RAG_DECODER_QUANT=q4_0: the GGUF re-quantized once (the second call finds it), states
    close to the shipped weights' (not equal: why it is not the default, docs/results.md), the
    same answer on a plain question."""
    from rag.models.llama import LlamaCppGenerator, served_gguf

    llama, _ = decoders
    s = Settings()
    path = served_gguf(s.decoder, s.models_path, "q4_0")
    assert path.name.endswith("-q4_0.gguf") and served_gguf(s.decoder, s.models_path, "q4_0") == path
    q4 = LlamaCppGenerator(s.decoder, s.models_path, 2, "q4_0")
    messages = build_messages("When was the light automated?", hits(PASSAGE))
    assert 0.97 < cosine(q4.states(messages, "", [14])[14], llama.states(messages, "", [14])[14]) < 0.9999
    assert "1962" in q4.generate(messages, 24).text


def test_a_lora_adapter_reaches_llama_cpp_as_transformers_merges_it(decoders, tmp_path):
    """The shipped experimental adapter, converted once to a GGUF LoRA (rag.models.adapter.adapter_gguf)
    and applied by llama.cpp beside the quantized weights: the same greedy answers as transformers
    with the adapter merged into float32 weights, and not the base model's. A truncated
    conversion is detected and rebuilt."""
    from pathlib import Path

    from rag.models.adapter import adapter_gguf
    from rag.models.decoder import HFGenerator
    from rag.models.llama import LlamaCppGenerator, served_gguf

    s = Settings()
    adapter = Path(__file__).parents[1] / "rag/models/adapters/experimental/qwen2.5-coder-0.5b"
    base, _ = decoders
    tuned = LlamaCppGenerator(s.decoder, s.models_path, 2, adapter=adapter)
    merged = HFGenerator(s.decoder, s.models_path, adapter, 2, "float32")
    answers = []
    for q in ("When was the light automated?", "Who designed the lighthouse?", "What color is the lighthouse?"):
        messages = build_messages(q, hits(PASSAGE))
        t = tuned.generate(messages, 24).text
        assert t == merged.generate(messages, 24).text
        answers.append((base.generate(messages, 24).text, t))
    assert any(b != t for b, t in answers)  # the adapter changes what the decoder says
    shipped = served_gguf(s.decoder, s.models_path)
    lora = adapter_gguf(adapter, s.decoder, shipped, tmp_path)
    lora.write_bytes(lora.read_bytes()[:1000])  # truncated: rebuilt on the next call, never loaded
    assert adapter_gguf(adapter, s.decoder, shipped, tmp_path).stat().st_size > 1000

