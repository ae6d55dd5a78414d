"""The answerability probe: the hook reads the right hidden state, the folded-in scaler gives
sklearn's probabilities, the threshold meets its target, and the pipeline abstains on a low
score with the reason in the trace."""

from __future__ import annotations

import numpy as np
import pytest

from rag.answer.answerability import Probe, load_probe
from rag.models.decoder import tap
from rag.train.calibrate import fit_threshold
from rag.train.probes import fit

torch = pytest.importorskip("torch")


def test_tap_reads_the_prefill_state_of_each_layer():
    from test_finetune import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_llama(tok).eval()
    ids = tok("a question and its passages", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        ref = model(input_ids=ids, output_hidden_states=True).hidden_states
        before = len(model.model.layers[0]._forward_hooks)
        with tap(model, [1, 2]) as seen:
            model(input_ids=ids)
            model(input_ids=ids[:, :1])  # a one-token decode step must not overwrite the prefill state
    # hidden_states[0] is the embedding output; the last entry is after the final norm
    assert np.allclose(seen[1], ref[1][0, -1].numpy(), atol=1e-6)
    assert not np.allclose(seen[1], seen[2])
    assert len(model.model.layers[0]._forward_hooks) == before  # ours are removed on exit


def test_generator_stream_yields_the_state_last():
    from test_finetune import tiny_generator

    gen = tiny_generator()
    items = list(gen.stream([{"role": "user", "content": "hi"}], 3, tap_layer=2))
    assert isinstance(items[-1], np.ndarray) and items[-1].shape == (32,)
    assert all(isinstance(i, str) for i in items[:-1])
    assert all(isinstance(i, str) for i in gen.stream([{"role": "user", "content": "hi"}], 3))


def test_fit_folds_the_scaler_and_reports_the_target_threshold_out_of_fold():
    rng = np.random.default_rng(0)
    n, d = 400, 6
    y = (rng.random(n) < 0.5).astype(int)
    x = rng.normal(size=(n, 2, d)) * 3 + 5  # two "layers"; only layer index 1 carries the label
    x[:, 1, 0] += 9 * y
    groups = [f"g{i % 20}" for i in range(n)]
    probe, report = fit(x, y, groups, [7, 9], "dec", target=0.1, cs=(1.0,))
    assert probe.layer == 9 and report["cv_auroc"] > 0.9
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(x[:, 1], y)
    got = np.array([probe.score(v) for v in x[:, 1]])
    assert np.allclose(got, ref.predict_proba(x[:, 1])[:, 1], atol=1e-6)
    # the default gate is the decision boundary; the target threshold was fitted out of fold: on
    # the training scores themselves it still passes about the target share of negatives
    assert probe.threshold == 0.5
    assert 0.0 < (got[y == 0] >= report["threshold_at_target"]).mean() <= 0.2


def test_target_threshold_meets_the_target():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.95, 0.85])
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    t = fit_threshold(scores, labels == 1, 0.2)  # the probe's target threshold: 1 of 5 negatives may pass
    assert (scores[labels == 0] >= t).sum() == 1 and t > 0.8


def test_probe_round_trip_and_decoder_check(tmp_path, monkeypatch):
    import rag.answer.answerability as ab

    p = Probe("qwen-x", 3, (0.5, -0.5), 0.1, 0.4, {"note": 1})
    monkeypatch.setattr(ab, "TRAINED_DIR", tmp_path)
    p.save(ab.probe_path("qwen-x"))
    assert load_probe("qwen-x") == p
    assert load_probe("other-decoder") is None
    # a file renamed onto another decoder is refused: it would read a foreign state
    ab.probe_path("qwen-y").write_text(ab.probe_path("qwen-x").read_text())
    assert load_probe("qwen-y") is None


class StateGenerator:
    """Fake decoder that answers with a span and yields a fixed prompt state."""

    name = "state-fake"

    def __init__(self, state):
        self.state = state

    def stream(self, messages, max_new_tokens, tap_layer=None):
        yield "Margaret Ellison"
        if tap_layer:
            yield self.state


def test_pipeline_abstains_when_the_probe_says_the_passages_do_not_answer(sample_service):
    svc = sample_service
    svc._generator = StateGenerator(np.array([1.0, 0.0]))
    q = "Who was the first keeper of the lighthouse?"
    svc._lazy["answerability"] = Probe("state-fake", 1, (-4.0, 0.0), 0.0, 0.5, {})  # P = 0.018
    a = svc.ask(q, "default")
    assert a.abstained and a.trace["abstain_code"] == "low_confidence"
    assert "2% sure" in a.trace["abstain_reason"] and "50% or more" in a.trace["abstain_reason"]
    assert a.trace["withheld_answer"].startswith("Margaret Ellison")
    svc._lazy["answerability"] = Probe("state-fake", 1, (4.0, 0.0), 0.0, 0.5, {})  # P = 0.98
    a = svc.ask(q, "default")
    assert not a.abstained and a.trace["answerability"] > 0.9 and a.trace["abstain_threshold"] == 0.5
