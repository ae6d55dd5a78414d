"""Decoders: the Generator protocol and the transformers-backed HFGenerator (the scripted fake
is rag.answer.prompt.ScriptedGenerator: it speaks the prompt format).

HFGenerator loads a packaged GGUF with transformers (which de-quantizes it), casts it to
bfloat16 and caches the converted weights as safetensors in the data folder, so only the
first start pays the GGUF conversion (about a minute for the 0.5B model). It computes in
bfloat16 where the CPU has bf16 instructions (3-6x faster prefill than float32 there) and in
float32 where it has not (there bf16 is emulated and slower): rag.models.weights.compute_dtype.
Decoding is greedy: answers must be reproducible. `tap` reads a layer's hidden state during
the prefill that generation does anyway: the probes of rag.answer read it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.errors import ModelError
from rag.models.weights import compute_dtype, decoder_gguf, set_threads


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    new_tokens: int
    ttft_s: float  # time to first token
    total_s: float


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


class Generator(Protocol):
    name: str

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int) -> Generation: ...

    def stream(self, messages: list[dict[str, str]], max_new_tokens: int,
               tap_layer: int | None = None) -> Iterator[str | np.ndarray]:
        """Text pieces; with `tap_layer`, a generator that can read its hidden state yields
        one last item: that layer's output at the last prompt position (rag.answer.answerability)."""
        ...


class HFGenerator:
    """A packaged decoder run by transformers on the CPU, optionally with a LoRA adapter."""

    def __init__(self, decoder: str, cache_dir: Path, adapter: Path | None = None, threads: int = 0,
                 dtype: str = "auto"):
        self.decoder = decoder
        self.dtype = dtype  # Settings.dtype
        self.cache_dir = cache_dir
        self.adapter = adapter
        self.threads = threads
        self.name = decoder + (f"+lora:{adapter.name}" if adapter else "")
        self._model = None
        self._tok = None
        self._lock = threading.Lock()  # one generate at a time: torch on 2 cores gains nothing from more
        # (prompt ids, its KV cache) of the last prompt answered: the grounding check feeds the
        # answer behind it instead of prefilling the prompt again (states). One entry, ~10 MB.
        self._prompt_cache: tuple | None = None

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        set_threads(self.threads)
        dtype = compute_dtype(self.dtype)
        converted = self.cache_dir / f"{self.decoder}-bf16"
        if not (converted / "config.json").exists():
            gguf = decoder_gguf(self.decoder, self.cache_dir)
            try:
                tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
            except Exception as e:  # noqa: BLE001 - any loader failure is a model problem to the user
                raise ModelError(f"could not load decoder {self.decoder} from {gguf}: {e}") from e
            model = model.to(torch.bfloat16)
            # The weights are de-quantized already; the GGUF quantizer marker left on the model
            # makes save_pretrained refuse ("quantized with gguf and is not serializable").
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            tmp = converted.with_name(converted.name + ".tmp")
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            tmp.rename(converted)
            del model
        # Always from the converted copy, also right after converting: the model cast in memory
        # computed slightly different states than every later start's (seen on dev squad2: one
        # answerability score 0.502 in the converting run, 0.497 after), so answers depended on
        # whether the process had converted the weights.
        tok = AutoTokenizer.from_pretrained(converted)
        model = AutoModelForCausalLM.from_pretrained(converted, dtype=dtype)
        if self.adapter is not None:
            from rag.models.adapter import apply_adapter

            model = apply_adapter(model, self.adapter, self.decoder)
        self._model = model.eval()
        self._tok = tok

    @property
    def tokenizer(self):
        self.load()
        return self._tok

    @property
    def model(self):
        self.load()
        return self._model

    def encode(self, messages: list[dict[str, str]]):
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        return ids if hasattr(ids, "shape") else ids["input_ids"]

    def states(self, messages: list[dict[str, str]], answer: str, layers: list[int]) -> dict[int, np.ndarray]:
        """The hidden state after each of `layers` at the last token of the prompt followed by
        `answer` (the prompt's own end when `answer` is empty): what the probes read
        (rag.answer.answerability, rag.answer.judge). When this prompt is the one the decoder just
        answered, only the answer's tokens run (behind the prompt's cached keys and values);
        otherwise one prefill of both. No generation."""
        import torch

        ids = self.encode(messages)
        # The lock: no other call's forward pass may land in the hooks.
        with self._lock, torch.inference_mode():
            return self._states_after(ids, answer, layers)

    def _states_after(self, ids, answer: str, layers: list[int]) -> dict[int, np.ndarray]:
        import copy

        import torch

        tail = self.tokenizer(answer, add_special_tokens=False, return_tensors="pt")["input_ids"] if answer else None
        cached = self._prompt_cache
        with tap(self.model, layers) as seen:
            if tail is not None and cached is not None and torch.equal(cached[0], ids):
                self.model(input_ids=tail, past_key_values=copy.deepcopy(cached[1]), use_cache=True)
            else:
                self.model(input_ids=ids if tail is None else torch.cat([ids, tail], 1), use_cache=False)
        return dict(seen)

    # -- generation ------------------------------------------------------------------------
    def generate(self, messages: list[dict[str, str]], max_new_tokens: int) -> Generation:
        t0 = time.perf_counter()
        ttft = None
        pieces = []
        n_prompt = 0
        for i, piece in enumerate(self._stream(messages, max_new_tokens)):
            if i == 0:
                n_prompt = piece  # the first item is the prompt length
                continue
            if ttft is None:
                ttft = time.perf_counter() - t0
            pieces.append(piece)
        total = time.perf_counter() - t0
        text = "".join(pieces)
        n_new = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        return Generation(text.strip(), int(n_prompt), n_new, ttft if ttft is not None else total, total)

    def stream(self, messages: list[dict[str, str]], max_new_tokens: int,
               tap_layer: int | None = None) -> Iterator[str | np.ndarray]:
        it = self._stream(messages, max_new_tokens, tap_layer)
        next(it)  # prompt length
        yield from it

    def _stream(self, messages, max_new_tokens, tap_layer: int | None = None):
        import torch
        from transformers import TextIteratorStreamer

        ids = self.encode(messages)
        yield ids.shape[1]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                      do_sample=False, streamer=streamer, pad_token_id=self.tokenizer.eos_token_id)
        with self._lock:
            err: list[BaseException] = []

            def run():
                try:
                    with torch.inference_mode():
                        out = self.model.generate(**kwargs, return_dict_in_generate=True)
                    cache = out.past_key_values
                    extra = cache.get_seq_length() - ids.shape[1]
                    if extra > 0:
                        cache.crop(-extra)  # keep the prompt's part: what a check of this answer reuses
                    self._prompt_cache = (ids, cache)
                except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                    err.append(e)
                    streamer.end()

            # The hook reads the prefill that generation does anyway: the state costs nothing.
            with tap(self.model, [tap_layer] if tap_layer else []) as seen:
                th = threading.Thread(target=run, daemon=True)
                th.start()
                for piece in streamer:
                    if piece:
                        yield piece
                th.join()
            if err:
                raise ModelError(f"generation failed: {err[0]}") from err[0]
            if tap_layer in seen:
                yield seen[tap_layer]
