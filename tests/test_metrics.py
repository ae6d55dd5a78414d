from rag import metrics as M


def test_squad_normalisation_and_scores():
    assert M.normalize_answer("The  Eiffel, Tower!") == "eiffel tower"
    assert M.exact_match("the eiffel tower", ["Eiffel Tower"]) == 1.0
    # SQuAD reference: pred "eiffel tower in paris" vs gold "eiffel tower": P=2/4 R=1 -> F1=2/3
    assert abs(M.f1_score("Eiffel Tower in Paris", ["the Eiffel Tower"]) - 2 / 3) < 1e-9
    assert M.f1_score("", ["x"]) == 0.0
    assert M.f1_score("blue", ["red", "blue sky"]) == 2 * (1 * 0.5) / 1.5


def test_korean_f1_is_character_level():
    # KorQuAD v1: characters of whitespace tokens. "2013년" vs "2013년에": 5 common of 5 and 6
    f1 = M.f1_score("2013년에", ["2013년"])
    assert abs(f1 - 2 * (5 / 6) * 1 / (5 / 6 + 1)) < 1e-9
    assert M.exact_match("경주", ["경주"]) == 1.0


def test_retrieval_metrics_against_hand_computed_values():
    ranked = ["a", "b", "c"]
    assert M.recall_at_k(ranked, {"b", "z"}, 10) == 0.5
    assert M.mrr_at_k(ranked, {"c"}, 10) == 1 / 3
    # one relevant doc at rank 2: DCG = 1/log2(3), IDCG = 1
    assert abs(M.ndcg_at_k(ranked, {"b": 1.0}, 10) - 1 / __import__("math").log2(3)) < 1e-12
    assert M.ndcg_at_k(ranked, {"zz": 1.0}, 10) == 0.0


def test_abstention_metrics():
    m = M.abstention_metrics([True, True, False, False], [False, True, False, True])
    assert m["abstain_precision"] == 0.5
    assert m["abstain_recall"] == 0.5
    assert m["answered_unanswerable_rate"] == 0.5


def test_percentile_matches_numpy():
    import numpy as np

    xs = [0.3, 1.2, 0.7, 5.0, 2.2, 0.1]
    for q in (50, 95):
        assert abs(M.percentile(xs, q) - float(np.percentile(xs, q))) < 1e-12
