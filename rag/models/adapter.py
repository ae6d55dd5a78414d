"""Loading a LoRA adapter onto its base decoder, checked, and merged for inference.

Merging folds the low-rank update into the base weights, so the tuned model decodes
exactly as fast as the base one. An adapter records the decoder it was trained on
(rag_adapter.json); loading it onto another base is refused instead of producing noise."""

from __future__ import annotations

import json
from pathlib import Path

from rag.errors import ModelError

META = "rag_adapter.json"


def adapter_meta(path: Path) -> dict:
    f = path / META
    if not f.exists():
        raise ModelError(f"{path} is not an adapter made by `rag finetune` (no {META})")
    return json.loads(f.read_text())


def check_base(path: Path, decoder: str) -> dict:
    """The adapter's metadata, refused unless it was trained on `decoder`."""
    meta = adapter_meta(path)
    if meta.get("base") != decoder:
        raise ModelError(f"adapter {path} was trained on {meta.get('base')!r}, not on {decoder!r}; "
                         f"set RAG_DECODER={meta.get('base')} or RAG_ADAPTER=none")
    return meta


def apply_adapter(model, path: Path, decoder: str):
    check_base(path, decoder)
    from peft import PeftModel

    try:
        tuned = PeftModel.from_pretrained(model, str(path))
    except Exception as e:  # noqa: BLE001 - shape mismatches and missing files alike
        raise ModelError(f"adapter {path} does not fit decoder {decoder}: {e}") from e
    merged = tuned.merge_and_unload()
    # merge_and_unload leaves every parameter with requires_grad=False, and on this CPU (torch
    # 2.13, bf16, inference mode) that alone made greedy decoding ~45% slower (24 new tokens:
    # 5.6-5.9 s vs 3.9-4.1 s, base and merged alike). Loaded models have True; match them.
    for p in merged.parameters():
        p.requires_grad_(True)
    return merged


def adapter_gguf(path: Path, decoder: str, base_gguf: Path, cache_dir: Path) -> Path:
    """The adapter as llama.cpp loads it (rag.models.llama): a GGUF LoRA file, converted once and
    cached keyed by the adapter's sha256 (rag.models.prepared: atomic, locked, rebuilt when stale).

    The conversion is llama.cpp's own convert_lora_to_gguf.py in a few lines, with the same
    library (gguf-py): each LoRA pair keeps PEFT's shapes (A: rank x in, B: out x rank, which
    ggml reads as the transposes llama.cpp multiplies by) under the base tensor's GGUF name plus
    ".lora_a"/".lora_b", and lora_alpha goes in the header (llama.cpp scales by alpha / rank, as
    PEFT does). The decoder is not merged or re-quantized: the low-rank product runs beside the
    quantized weights, so the tuned model keeps the shipped GGUF's memory and speed."""
    check_base(path, decoder)
    weights = path / "adapter_model.safetensors"
    config = json.loads((path / "adapter_config.json").read_text())
    if config.get("use_dora") or config.get("use_rslora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ModelError(f"adapter {path}: only plain LoRA (one rank and alpha) reaches llama.cpp")
    from rag.models.prepared import prepared

    def build(out: Path) -> None:
        import gguf
        from safetensors.numpy import load_file

        reader = gguf.GGUFReader(base_gguf)
        arch_name = bytes(reader.fields["general.architecture"].parts[-1]).decode()
        blocks = int(reader.fields[f"{arch_name}.block_count"].parts[-1][0])
        arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
        names = gguf.get_tensor_name_map(arch, blocks)
        writer = gguf.GGUFWriter(str(out), arch_name)
        writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
        for key, value in sorted(load_file(str(weights)).items()):
            module, _, part = key.removeprefix("base_model.model.").rpartition(".lora_")
            name = names.get_name(module + ".weight", try_suffixes=(".weight",))
            if name is None or part not in ("A.weight", "B.weight"):
                raise ModelError(f"adapter {path}: llama.cpp has no tensor for {key}")
            writer.add_tensor(f"{name}.lora_{part[0].lower()}", value.astype("float32"))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    return prepared(f"{decoder}-lora-{path.name}", weights, build, cache_dir, "lora.gguf")
