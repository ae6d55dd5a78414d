"""The compute dtype of the decoder and readers (rag.models.weights.compute_dtype, RAG_DTYPE): bfloat16
only where the CPU has bf16 instructions, since torch emulates it elsewhere and runs slower."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from rag.config import Settings
from rag.models.weights import compute_dtype


def caps(**flags):
    base = {"avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": False}
    return lambda: {**base, **flags}


@pytest.mark.parametrize("flags, expected", [
    ({}, torch.float32),                       # AVX-512 without BF16 (e.g. Ice Lake): emulated bf16
    ({"avx512_bf16": True}, torch.bfloat16),   # Cooper Lake, Zen 4
    ({"amx_bf16": True}, torch.bfloat16),      # Sapphire Rapids and later
])
def test_auto_follows_the_cpus_bf16_instructions(monkeypatch, flags, expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", caps(**flags))
    assert compute_dtype() == compute_dtype("auto") == expected


def test_a_cpu_without_x86_flags_keeps_bfloat16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"architecture": "aarch64"})
    assert compute_dtype("auto") == torch.bfloat16


def test_an_explicit_choice_wins_over_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", caps())
    assert compute_dtype("bfloat16") == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "get_capabilities", caps(amx_bf16=True))
    assert compute_dtype("float32") == torch.float32


def test_the_setting_reads_rag_dtype_and_rejects_others(monkeypatch):
    assert Settings().dtype == "auto"
    monkeypatch.setenv("RAG_DTYPE", "float32")
    assert Settings().dtype == "float32"
    monkeypatch.setenv("RAG_DTYPE", "float16")
    with pytest.raises(ValidationError):
        Settings()


def test_the_service_hands_the_setting_to_the_torch_models(tmp_path):
    from rag.models.llama import LlamaCppGenerator, serving_generator
    from rag.pipeline import RagService

    svc = RagService(Settings(data_dir=tmp_path, dtype="float32", adapter="none"))
    # All are built lazily: nothing is loaded here.
    assert svc.reader.dtype == "float32"
    assert isinstance(svc.generator, LlamaCppGenerator)  # llama.cpp picks its kernels itself
    # a LoRA adapter runs on llama.cpp too (converted to a GGUF LoRA when it loads)
    with_adapter = serving_generator(svc.settings.decoder, tmp_path, tmp_path / "adapter", 2)
    assert isinstance(with_adapter, LlamaCppGenerator) and with_adapter.adapter == tmp_path / "adapter"
