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


def test_answer_metrics_per_level_with_intervals():
    # 4 answerable (2 right confident, 1 wrong caveat, 1 withheld), 2 unanswerable (1 answered as caveat)
    levels = ["answered", "answered", "caveat", "abstained", "caveat", "abstained"]
    answerable = [True, True, True, True, False, False]
    f1s = [1.0, 0.6, 0.2, 0.0, 0.0, 0.0]
    m = M.answer_metrics(levels, answerable, f1s, resamples=200)
    assert m["coverage"] == 3 / 4
    assert m["answer_precision"] == 2 / 4  # the caveat answer to the unanswerable question is wrong
    assert m["answer_precision_answered"] == 1.0 and m["answer_precision_caveat"] == 0.0
    assert m["share_answered"] == 2 / 6 and m["share_caveat"] == 2 / 6
    lo, hi = m["answer_precision_ci95"]
    assert 0.0 <= lo <= m["answer_precision"] <= hi <= 1.0 and lo < hi
    assert M.answer_metrics(levels, answerable, f1s, resamples=200) == m  # seeded: repeatable
    none_caveat = M.answer_metrics(["answered", "abstained"], [True, False], [1.0, 0.0], resamples=0)
    assert none_caveat["answer_precision_caveat"] is None and none_caveat["coverage"] == 1.0


def test_coverage_curve_by_hand():
    # four candidate answers; a fifth answerable question got none (an abstention at every bar)
    scores = [0.9, 0.7, 0.4, 0.2]
    answerable = [True, True, False, True]
    right = [True, False, False, True]
    curve = M.coverage_curve(scores, answerable, right, n_answerable=4, bars=(0.0, 0.5, 0.8, 0.95))
    assert curve[0] == {"bar": 0.0, "answers": 4, "coverage": 0.75, "answer_precision": 0.5}
    assert curve[1] == {"bar": 0.5, "answers": 2, "coverage": 0.5, "answer_precision": 0.5}
    assert curve[2] == {"bar": 0.8, "answers": 1, "coverage": 0.25, "answer_precision": 1.0}
    assert curve[3] == {"bar": 0.95, "answers": 0, "coverage": 0.0, "answer_precision": None}
