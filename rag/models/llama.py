"""The serving decoder: llama.cpp (llama-cpp-python's C API) runs the packaged GGUF as it ships,
memory-mapped and quantized, with no de-quantization to dense weights and no torch.

Measured against the transformers path (rag.models.decoder.HFGenerator, which now serves only
training) on an AVX2-only CPU, 2 threads: decode 46 vs 11 tokens/s, load 3 s vs
over a minute on a fresh data folder, a third of the resident memory; the prompt's tokens are
identical and the hidden states the probes read agree to cosine 0.9999 (tests/test_llama.py),
so the probes fitted on the transformers states keep their meaning.

The low-level API rather than llama_cpp.Llama, for three things the high-level class hides:
- a layer's output during the prefill (the answerability and support probes read it): the
  scheduler's eval callback asks for the graph tensor `l_out-<layer-1>` and copies its last row;
- greedy decoding by argmax over the logits, token by token, so streaming needs no sampler;
- the prompt's keys and values kept after an answer, so the grounding check runs only each
  claim's tokens behind them (`states`), and the next question starts from an empty cache
  (answers never depend on the question asked before).
The chat template is the GGUF's own, rendered the way transformers renders it."""

from __future__ import annotations

import codecs
import ctypes
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rag.errors import ModelError
from rag.models.decoder import Generation, Generator
from rag.models.weights import decoder_gguf

N_CTX = 8192  # prompts are four passages (~700 tokens), SQL schemas a few thousand
N_BATCH = 512
_FTYPES = {"q4_0": 2}  # Settings.decoder_quant -> llama_ftype (Q4_0 runs on repacked AVX-512/AVX2 kernels)
INSTALL_HINT = "pip install llama-cpp-python==0.3.36 (make setup builds it from source when no wheel fits)"


_QUIET = None


def _quiet_logs(L) -> None:
    """llama.cpp's log lines off (they would flood the server's output)."""
    global _QUIET
    if _QUIET is None:
        _QUIET = L.llama_log_callback(lambda level, text, data: None)  # kept: C holds the pointer
        L.llama_log_set(_QUIET, ctypes.c_void_p(0))


def served_gguf(decoder: str, cache_dir: Path, quant: str = "shipped") -> Path:
    """The GGUF the decoder serves: as shipped, or re-quantized once to `quant`
    (Settings.decoder_quant) and cached beside it (rag.models.prepared: keyed by the shipped
    file's sha256, atomic)."""
    shipped = decoder_gguf(decoder, cache_dir)
    if quant == "shipped":
        return shipped
    if quant not in _FTYPES:
        raise ModelError(f"unknown decoder quantization {quant!r}; choose one of {sorted(_FTYPES)}")
    from rag.models.prepared import prepared

    def build(path: Path) -> None:
        import llama_cpp as L

        _quiet_logs(L)
        params = L.llama_model_quantize_default_params()
        params.ftype, params.allow_requantize, params.nthread = _FTYPES[quant], True, os.cpu_count() or 1
        if L.llama_model_quantize(str(shipped).encode(), str(path).encode(), ctypes.byref(params)) != 0:
            raise ModelError(f"llama.cpp could not re-quantize {shipped.name} to {quant}")

    return prepared(decoder, shipped, build, cache_dir, f"{quant}.gguf")


def _ggml():
    """The ggml functions the eval callback needs to read a tensor: its name, its size and data."""
    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_get_name.restype, lib.ggml_get_name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    for fn in (lib.ggml_nelements, lib.ggml_nrows):
        fn.restype, fn.argtypes = ctypes.c_int64, [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.restype = None
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    return lib


class LlamaCppGenerator:
    """A packaged decoder run by llama.cpp; the Generator protocol of rag.models.decoder."""

    def __init__(self, decoder: str, cache_dir: Path, threads: int = 0, quant: str = "shipped",
                 adapter: Path | None = None):
        self.decoder = decoder
        self.quant = quant
        self.cache_dir = cache_dir
        self.threads = threads or os.cpu_count() or 1
        self.adapter = adapter  # a LoRA adapter of `rag finetune`, converted to GGUF at load
        # the probes are keyed by the name: the states are the transformers path's
        self.name = decoder + (f"+lora:{adapter.name}" if adapter else "")
        self._ctx = None
        self._lock = threading.Lock()  # one context: one decode at a time
        self._want: dict[bytes, int] = {}  # tensor name -> layer, read by the eval callback
        self._seen: dict[int, np.ndarray] = {}
        self._cached: list[int] = []  # the prompt tokens whose keys and values are in the cache

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        if self._ctx is not None:
            return
        try:
            import llama_cpp as L
        except ImportError as e:
            raise ModelError(f"the decoder runtime llama-cpp-python is not installed: {INSTALL_HINT}") from e
        gguf = served_gguf(self.decoder, self.cache_dir, self.quant)
        self._L, self._g = L, _ggml()
        _quiet_logs(L)
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.use_mmap = True
        model = L.llama_model_load_from_file(str(gguf).encode(), mp)
        if not model:
            raise ModelError(f"llama.cpp could not load decoder {self.decoder} from {gguf}; reinstall its package")
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = N_CTX, N_BATCH, N_BATCH
        cp.n_threads = cp.n_threads_batch = self.threads
        self._callback = L.ggml_backend_sched_eval_callback(self._on_tensor)  # kept alive with the context
        cp.cb_eval, cp.cb_eval_user_data = self._callback, None
        ctx = L.llama_init_from_model(model, cp)
        if not ctx:
            raise ModelError(f"llama.cpp could not create a context for {self.decoder}")
        if self.adapter is not None:
            from rag.models.adapter import adapter_gguf

            lora_file = adapter_gguf(self.adapter, self.decoder, gguf, self.cache_dir)
            self._lora = L.llama_adapter_lora_init(model, str(lora_file).encode())
            if not self._lora or L.llama_set_adapter_lora(ctx, self._lora, 1.0) != 0:
                raise ModelError(f"llama.cpp could not apply adapter {self.adapter} ({lora_file.name}); "
                                 "delete that file to convert it again, or set RAG_ADAPTER=none")
        self._model, self._vocab = model, L.llama_model_get_vocab(model)
        self._n_vocab = L.llama_vocab_n_tokens(self._vocab)
        self._template = self._chat_template(L.llama_model_chat_template(model, None))
        self._ctx = ctx

    def size(self) -> dict:
        """What the bench reports: parameters, bytes of weights read per token, the GGUF's types."""
        self.load()
        desc = ctypes.create_string_buffer(128)
        self._L.llama_model_desc(self._model, desc, len(desc))
        return {"params": self._L.llama_model_n_params(self._model), "weight_bytes": self._L.llama_model_size(self._model),
                "weights": desc.value.decode()}

    @staticmethod
    def _chat_template(source: bytes | None):
        if not source:
            raise ModelError("the decoder's GGUF carries no chat template")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise ModelError(f"chat template: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        return env.from_string(source.decode("utf-8"))

    def _on_tensor(self, tensor, ask: bool, _data) -> bool:
        """The scheduler's eval callback: asked for every graph node whether to stop after it;
        after the nodes we asked for, copies the last row (the last token's state)."""
        if not self._want:
            return not ask  # nothing wanted: run the graph in one piece
        name = self._g.ggml_get_name(tensor)
        if ask:
            return name in self._want
        if name in self._want:
            n, rows = self._g.ggml_nelements(tensor), self._g.ggml_nrows(tensor)
            width = n // rows
            row = np.empty(width, np.float32)
            self._g.ggml_backend_tensor_get(tensor, row.ctypes.data, (rows - 1) * width * 4, width * 4)
            self._seen[self._want[name]] = row  # the last batch's last row wins: the last token
        return True

    # -- tokens ----------------------------------------------------------------------------
    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        self.load()
        return self.tokenize(self._template.render(messages=messages, add_generation_prompt=True), special=True)

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        self.load()
        data = text.encode("utf-8")
        out = (self._L.llama_token * (len(data) + 8))()
        n = self._L.llama_tokenize(self._vocab, data, len(data), out, len(out), False, special)
        return list(out[:n])

    def _piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._L.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    # -- evaluation ------------------------------------------------------------------------
    def _decode(self, tokens: list[int], layers: list[int]) -> dict[int, np.ndarray]:
        """Run tokens behind what the cache holds; returns the wanted layers' last-token states."""
        L = self._L
        self._want = {f"l_out-{layer - 1}".encode(): layer for layer in layers}
        self._seen = {}
        try:
            for i in range(0, len(tokens), N_BATCH):
                part = (L.llama_token * len(tokens[i:i + N_BATCH]))(*tokens[i:i + N_BATCH])  # alive during decode
                rc = L.llama_decode(self._ctx, L.llama_batch_get_one(part, len(part)))
                if rc != 0:
                    raise ModelError(f"llama.cpp decode failed (code {rc}); is the prompt longer than {N_CTX} tokens?")
        finally:
            self._want = {}
        return dict(self._seen)

    def _reset(self, keep: int = 0) -> None:
        """Drop the cache from position `keep` on (0: empty it)."""
        mem = self._L.llama_get_memory(self._ctx)
        if keep == 0:
            self._L.llama_memory_clear(mem, False)  # metadata only: the buffer is overwritten anyway
        else:
            self._L.llama_memory_seq_rm(mem, 0, keep, -1)

    def _check_length(self, n: int) -> None:
        if n >= N_CTX:
            raise ModelError(f"the prompt has {n} tokens, more than the decoder's context of {N_CTX}")

    def states(self, messages: list[dict[str, str]], answer: str, layers: list[int]) -> dict[int, np.ndarray]:
        """The hidden state after each of `layers` at the last token of the prompt followed by
        `answer` (the prompt's own end when `answer` is empty): what the probes read. When this
        prompt is the one just answered, only the answer's tokens run behind its cached keys
        and values; otherwise one prefill of both (then that prompt is the cached one)."""
        ids = self.encode(messages)
        tail = self.tokenize(answer) if answer else []
        with self._lock:
            if tail and ids == self._cached:
                self._reset(len(ids))
                seen = self._decode(tail, layers)
            else:
                self._check_length(len(ids) + len(tail))
                self._reset()
                seen = self._decode(ids + tail, layers)
                self._cached = ids
            self._reset(len(ids))
        return seen

    # -- generation ------------------------------------------------------------------------
    def generate(self, messages: list[dict[str, str]], max_new_tokens: int) -> Generation:
        t0 = time.perf_counter()
        ttft, pieces, info = None, [], {}
        for piece in self._stream(messages, max_new_tokens, None, info):
            if ttft is None:
                ttft = time.perf_counter() - t0
            pieces.append(piece)
        total = time.perf_counter() - t0
        return Generation("".join(pieces).strip(), info["prompt_tokens"], info["new_tokens"],
                          ttft if ttft is not None else total, total)

    def stream(self, messages: list[dict[str, str]], max_new_tokens: int,
               tap_layer: int | None = None) -> Iterator[str | np.ndarray]:
        yield from self._stream(messages, max_new_tokens, tap_layer, {})

    def _stream(self, messages, max_new_tokens: int, tap_layer: int | None, info: dict):
        """Greedy decoding: text pieces as they complete (UTF-8 split across tokens is joined
        first), then, with `tap_layer`, that layer's state at the last prompt token."""
        ids = self.encode(messages)
        L = self._L
        self._check_length(len(ids) + max_new_tokens)
        info["prompt_tokens"], info["new_tokens"] = len(ids), 0
        text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with self._lock:
            self._reset()
            self._cached = []
            seen = self._decode(ids, [tap_layer] if tap_layer else [])
            for _ in range(max_new_tokens):
                logits = np.ctypeslib.as_array(L.llama_get_logits_ith(self._ctx, -1), shape=(self._n_vocab,))
                token = int(np.argmax(logits))
                if L.llama_vocab_is_eog(self._vocab, token):
                    break
                info["new_tokens"] += 1
                piece = text.decode(self._piece(token))
                if piece:
                    yield piece
                self._decode([token], [])
            rest = text.decode(b"", final=True)
            # keep the prompt's part of the cache: what a check of this answer reuses
            self._reset(len(ids))
            self._cached = ids
        if rest:
            yield rest
        if tap_layer in seen:
            yield seen[tap_layer]


def serving_generator(decoder: str, cache_dir: Path, adapter: Path | None = None, threads: int = 0,
                      quant: str = "shipped") -> Generator:
    """The decoder as the service runs it: llama.cpp, with its LoRA adapter if one is set (trained
    with transformers, converted to a GGUF LoRA once: rag.models.adapter.adapter_gguf)."""
    return LlamaCppGenerator(decoder, cache_dir, threads, quant, adapter)
