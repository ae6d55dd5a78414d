import numpy as np

from rag.store.index import BM25Index, FaissIndex
from rag.retrieve.hybrid import rrf


def test_faiss_matches_numpy_brute_force_and_removes(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(500, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(1000, 1500)
    idx = FaissIndex(32)
    idx.add(ids, vecs)
    q = vecs[7] + 0.1 * rng.normal(size=32).astype(np.float32)
    expected = ids[np.argsort(-(vecs @ q))[:10]]
    assert [i for i, _ in idx.search(q, 10)] == expected.tolist()
    assert idx.remove([1007]) == 1
    assert 1007 not in [i for i, _ in idx.search(q, 10)]
    idx.save(tmp_path)
    again = FaissIndex.load(tmp_path, 32)
    assert len(again) == 499
    assert again.search(q, 5) == idx.search(q, 5)


def test_bm25_ranks_matching_rows_and_round_trips(tmp_path):
    idx = BM25Index.build([10, 11, 12], [["seoul", "capital"], ["busan", "port"], []])
    assert idx.search(["port", "busan"], 3)[0][0] == 11
    assert idx.search(["unknown"], 3) == []
    idx.save(tmp_path)
    assert BM25Index.load(tmp_path).search(["seoul"], 2)[0][0] == 10


def test_rrf_fuses_rankings():
    fused = rrf([[1, 2, 3], [3, 1]], k=60)
    assert [i for i, _ in fused][:2] == [1, 3]
    assert abs(dict(fused)[1] - (1 / 61 + 1 / 62)) < 1e-12
