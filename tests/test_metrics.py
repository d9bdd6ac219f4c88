import numpy as np
import pytest
from sklearn.metrics import f1_score

from mmsets.metrics import binarize, best_threshold, choose_decision, f1_micro, multilabel_metrics


def test_multilabel_metrics_by_hand():
    y_true = np.array([[1, 0, 1], [0, 1, 0]])
    y_pred = np.array([[1, 0, 0], [0, 1, 1]])
    m = multilabel_metrics(y_true, y_pred)
    assert m["f1_micro"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert m["f1_macro"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["f1_samples"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_empty_predictions_count_as_zero_not_error():
    assert multilabel_metrics(np.zeros((2, 2)), np.zeros((2, 2))) == {"f1_micro": 0.0, "f1_macro": 0.0,
                                                                      "f1_samples": 0.0}


def test_fast_f1_micro_matches_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(5):
        y, p = rng.random((50, 7)) < 0.3, rng.random((50, 7)) < 0.4
        assert f1_micro(y, p) == pytest.approx(f1_score(y, p, average="micro", zero_division=0))


def test_binarize_top1_keeps_the_most_likely_label():
    probs = np.array([[0.1, 0.3, 0.2], [0.9, 0.8, 0.1]])
    np.testing.assert_array_equal(binarize(probs, 0.5), [[0, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(binarize(probs, 0.5, top1=True), [[0, 1, 0], [1, 1, 0]])


def test_threshold_and_top1_are_chosen_on_the_data():
    y = np.array([[1, 0], [0, 1], [1, 0]])
    probs = np.array([[0.3, 0.1], [0.2, 0.25], [0.9, 0.4]])  # top-1 is always right, thresholds never are
    assert best_threshold(y, probs)[1] < 1.0
    decision = choose_decision(y, probs)
    assert decision.top1 and decision.dev_f1_micro == 1.0
    np.testing.assert_array_equal(decision.apply(probs), y)
    off = choose_decision(y, probs, try_top1=False)
    assert not off.top1 and off.dev_f1_micro_top1 is None
