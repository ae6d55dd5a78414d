"""Prepared artefacts (rag.models.prepared): keyed by their source, rebuilt when truncated,
stale or foreign, prepared once when two processes start together."""

import multiprocessing
import time

import pytest

from rag.models.prepared import prepared


def fake_build(path):
    time.sleep(0.2)  # long enough for a second process to arrive while the first exports
    path.write_bytes(b"onnx" * 1000)
    with open(path.parent / "builds.log", "a") as log:
        log.write("x")


def prepare(source, cache):
    return prepared("m", source, fake_build, cache, "fp32.onnx")


def test_prepared_once_then_reused_and_keyed_by_source(tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"a")
    first = prepare(source, tmp_path)
    assert first.read_bytes() == b"onnx" * 1000 and prepare(source, tmp_path) == first
    assert (tmp_path / "builds.log").read_text() == "x"
    source.write_bytes(b"b")  # other weights: another file
    assert prepare(source, tmp_path) != first and (tmp_path / "builds.log").read_text() == "xx"
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
        path.with_name(path.name + ".json").write_text("{not json")
    assert prepare(source, tmp_path).read_bytes() == b"onnx" * 1000
    assert "building it again" in capsys.readouterr().err


def test_two_processes_preparing_at_once_export_once(tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"a")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        paths = pool.starmap(prepare, [(source, tmp_path)] * 2)
    assert paths[0] == paths[1] and paths[0].read_bytes() == b"onnx" * 1000
    assert (tmp_path / "builds.log").read_text() == "x"
