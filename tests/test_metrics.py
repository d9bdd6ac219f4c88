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
    assert decision.top1 and decision.dev_score == 1.0
    np.testing.assert_array_equal(decision.apply(probs), y)
    off = choose_decision(y, probs, try_top1=False)
    assert not off.top1 and off.dev_score_top1 is None


def test_per_class_thresholds_maximise_each_class_f1_and_so_f1_macro():
    rng = np.random.default_rng(0)
    y = rng.random((200, 4)) < [0.5, 0.2, 0.05, 0.3]
    probs = np.clip(y * rng.uniform(0.1, 0.6, (1, 4)) + rng.random((200, 4)) * 0.5, 0, 1)
    decision = choose_decision(y, probs, "f1_macro", try_top1=False)
    assert decision.rule == "f1_macro" and len(decision.threshold) == 4
    for k, t in enumerate(decision.threshold):  # no grid threshold does better for its class
        grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
        best = max(f1_score(y[:, k], probs[:, k] >= g, zero_division=0) for g in grid)
        assert f1_score(y[:, k], probs[:, k] >= t, zero_division=0) == pytest.approx(best)
    macro = f1_score(y, decision.apply(probs), average="macro", zero_division=0)
    assert macro == pytest.approx(decision.dev_score)
    micro = choose_decision(y, probs, "f1_micro", try_top1=False)
    assert macro >= f1_score(y, micro.apply(probs), average="macro", zero_division=0)


def test_paper_decision_is_half_and_never_tuned():
    y = np.array([[1, 0], [0, 1]])
    probs = np.array([[0.45, 0.1], [0.2, 0.7]])
    decision = choose_decision(y, probs, "paper")
    assert decision.threshold == 0.5 and not decision.top1
    np.testing.assert_array_equal(decision.apply(probs), [[0, 0], [0, 1]])
    with pytest.raises(ValueError, match="training.decision"):
        choose_decision(y, probs, "f1_weighted")


def test_old_checkpoint_decisions_still_read():
    raw = {"threshold": 0.3, "top1": True, "dev_f1_micro": 0.6, "dev_f1_micro_plain": 0.5, "dev_f1_micro_top1": 0.6}
    decision = decision_from_dict(raw)
    assert decision.rule == "f1_micro" and decision.dev_score == 0.6 and decision.top1


# ------------------------------------------------------------------- single-label, regression

from sklearn.metrics import roc_auc_score  # noqa: E402

from mmsets.metrics import (ArgmaxDecision, Decision, PriorDecision, ThresholdDecision,  # noqa: E402
                            ValueDecision, aggregate, aggregate_runs, choose_single_label_decision,
                            decision_from_dict, regression_metrics, single_label_metrics)


def test_binary_metrics_by_hand():
    y = np.array([0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45]])
    m = single_label_metrics(y, probs, ["non-parallel", "parallel"], probs.argmax(axis=1))
    assert m["accuracy"] == pytest.approx(3 / 5) and m["accuracy_argmax"] == pytest.approx(3 / 5)
    assert m["per_class_accuracy"] == {"non-parallel": pytest.approx(2 / 3), "parallel": pytest.approx(1 / 2)}
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["auc"] == pytest.approx(roc_auc_score(y, probs[:, 1]))
    assert m["n_predicted_classes"] == 2
    everything_positive = single_label_metrics(y, probs, ["non-parallel", "parallel"], np.ones(5, int))
    assert everything_positive["n_predicted_classes"] == 1 and everything_positive["balanced_accuracy"] == 0.5
    assert everything_positive["accuracy_argmax"] == m["accuracy_argmax"]  # the papers' figure reads the probabilities
    assert everything_positive["auc"] == m["auc"]  # and so does the AUC


def test_single_label_metrics_match_sklearn_under_any_prediction():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 60)
    probs = rng.dirichlet(np.ones(4), size=60)
    pred = rng.integers(0, 3, 60)  # never the last class
    m = single_label_metrics(y, probs, list("abcd"), pred)
    assert m["accuracy"] == pytest.approx((pred == y).mean())
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, labels=range(4), average="macro", zero_division=0))
    assert m["n_predicted_classes"] == 3


def _collapsed_binary(n=90, positives=0.37, seed=0):
    """A binary table as the issue found it: 37 % positives, probabilities that rank the items well but all
    sit below 0.5, so the argmax predicts the negative class for every item."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) < round(n * positives)).astype(int)
    rng.shuffle(y)
    p = 0.45 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.5 * y - 0.5)))
    return y, np.stack([1 - p, p], axis=1)


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "f1_macro"])
def test_a_binary_threshold_tuned_on_dev_ends_the_one_class_collapse(metric):
    y, probs = _collapsed_binary()
    assert (y == 1).mean() == pytest.approx(0.37, abs=0.01)
    argmax = single_label_metrics(y, probs, ["neg", "pos"], ArgmaxDecision().apply(probs))
    assert argmax["n_predicted_classes"] == 1 and argmax["balanced_accuracy"] == 0.5
    decision = choose_single_label_decision(y, probs, metric)
    assert isinstance(decision, ThresholdDecision) and decision.metric == metric and decision.threshold < 0.5
    tuned = single_label_metrics(y, probs, ["neg", "pos"], decision.apply(probs))
    assert tuned["n_predicted_classes"] == 2
    assert tuned[metric] == pytest.approx(decision.dev_score) and decision.dev_score > decision.dev_score_argmax
    assert tuned["balanced_accuracy"] > 0.7 and tuned["auc"] == argmax["auc"]
    # unseen items of the same kind (a test split) are not collapsed either
    y_test, probs_test = _collapsed_binary(seed=1)
    assert single_label_metrics(y_test, probs_test, ["neg", "pos"],
                                decision.apply(probs_test))["n_predicted_classes"] == 2


def test_binary_threshold_is_the_best_cut_and_the_middle_of_ties():
    from mmsets.metrics import best_binary_threshold

    p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7])
    threshold, accuracy = best_binary_threshold(np.array([0, 0, 0, 1, 1, 1]), p)
    assert accuracy == 1.0 and threshold == pytest.approx(0.35)  # halfway between the classes
    # every cut that leaves one item wrong ties: the middle one of them
    threshold, accuracy = best_binary_threshold(np.array([0, 1, 0, 1, 0, 1]), p)
    scores = {t: ((p >= t) == np.array([0, 1, 0, 1, 0, 1], bool)).mean() for t in (0.05, 0.15, 0.25, 0.35, 0.5, 0.65)}
    assert accuracy == max(scores.values())
    tied = sorted(t for t, s in scores.items() if s == accuracy)
    assert threshold == pytest.approx(sorted(tied, reverse=True)[len(tied) // 2])
    # equal probabilities cannot be cut apart, and the ends predict one class
    assert best_binary_threshold(np.array([1, 0, 1]), np.array([0.5, 0.5, 0.5])) == (0.25, pytest.approx(2 / 3))
    assert best_binary_threshold(np.array([1, 1]), np.array([1.0, 1.0]))[1] == 1.0


def test_multiclass_prior_correction_is_kept_only_when_it_helps_on_dev():
    rng = np.random.default_rng(0)
    y = rng.choice(3, 300, p=[0.7, 0.2, 0.1])
    logits = rng.normal(0, 1, (300, 3))
    logits[np.arange(300), y] += 1.0
    logits[:, 0] += 1.5  # the frequent class dominates the argmax
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    decision = choose_single_label_decision(y, probs, "balanced_accuracy")
    assert isinstance(decision, PriorDecision) and decision.power > 0
    corrected = single_label_metrics(y, probs, list("abc"), decision.apply(probs))
    plain = single_label_metrics(y, probs, list("abc"), probs.argmax(axis=1))
    assert corrected["balanced_accuracy"] == pytest.approx(decision.dev_score)
    assert decision.dev_score > plain["balanced_accuracy"] == pytest.approx(decision.dev_score_argmax)
    np.testing.assert_allclose(decision.log_offsets, -decision.power * np.log(decision.class_priors))
    # a model already right on every dev item: nothing to correct, the argmax stays
    onehot = np.eye(3)[y] * 0.8 + 0.2 / 3
    assert isinstance(choose_single_label_decision(y, onehot, "balanced_accuracy"), ArgmaxDecision)
    with pytest.raises(ValueError, match="auc"):
        choose_single_label_decision(y, probs, "auc")


def test_multiclass_auc_is_macro_one_vs_rest_and_undefined_parts_are_none():
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    probs = rng.dirichlet(np.ones(3), size=len(y))
    m = single_label_metrics(y, probs, ["a", "b", "c"], probs.argmax(axis=1))
    assert m["auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    one_class = single_label_metrics(np.zeros(3, int), probs[:3], ["a", "b", "c"], probs[:3].argmax(axis=1))
    assert one_class["auc"] is None and one_class["per_class_accuracy"]["b"] is None
    assert single_label_metrics(np.zeros(3, int), probs[:3, :2] / probs[:3, :2].sum(1, keepdims=True),
                                ["a", "b"], np.zeros(3, int))["auc"] is None


def test_regression_metrics_by_hand():
    y, pred = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0])
    m = regression_metrics(y, pred, auc_threshold=1.5)
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert m["mae"] == pytest.approx(1.0)
    assert m["mape"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert m["r2"] == pytest.approx(1 - 5 / (((y - y.mean()) ** 2).sum()))
    assert m["auc"] == pytest.approx(1.0)  # both items above 1.5 get the higher predictions
    assert "auc" not in regression_metrics(y, pred)


def test_aggregate_mean_and_sample_std_over_nested_metrics():
    folds = [{"accuracy": 0.5, "auc": None, "per_class_accuracy": {"a": 1.0, "b": 0.0}, "name": "x"},
             {"accuracy": 0.7, "auc": 0.8, "per_class_accuracy": {"a": 0.5, "b": None}, "name": "y"}]
    mean, std = aggregate(folds)
    assert mean["accuracy"] == pytest.approx(0.6) and std["accuracy"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert mean["auc"] == 0.8 and std["auc"] == 0.0  # one fold had it
    assert mean["per_class_accuracy"] == {"a": 0.75, "b": 0.0}
    assert "name" not in mean


def test_aggregate_runs_over_seeds():
    runs = [{"run": f"r-s{s}", "dev": {"f1_micro": 0.5 + s / 10}, "test": {"f1_micro": 0.4 + s / 10}} for s in range(3)]
    out = aggregate_runs(runs)
    assert out["n_runs"] == 3 and out["runs"] == ["r-s0", "r-s1", "r-s2"]
    assert out["test"]["mean"]["f1_micro"] == pytest.approx(0.5)
    assert out["test"]["std"]["f1_micro"] == pytest.approx(0.1)
    assert out["dev"]["mean"]["f1_micro"] == pytest.approx(0.6)


def test_decisions_round_trip_through_their_dicts():
    import json

    for decision in (ArgmaxDecision(), ValueDecision(), Decision(0.3, True, "f1_micro", 0.8, 0.7, 0.8),
                     Decision([0.2, 0.4], False, "f1_macro", 0.5, 0.5, 0.4), Decision(0.5, False, "paper", 0.6, 0.6),
                     ThresholdDecision(0.31, "balanced_accuracy", 0.8, 0.5),
                     PriorDecision([0.1, 0.7, 1.2], "f1_macro", 0.6, 0.55, 0.5, [0.8, 0.25, 0.1]),
                     PriorDecision([0.0, 0.3, 0.4])):
        again = decision_from_dict(json.loads(json.dumps(decision.to_dict())))
        assert type(again) is type(decision) and again.to_dict() == decision.to_dict()
    np.testing.assert_array_equal(ArgmaxDecision().apply(np.array([[0.2, 0.8], [0.6, 0.4]])), [1, 0])
    # a checkpoint from before tuned decisions still decides by argmax
    old = decision_from_dict({"rule": "argmax"})
    assert isinstance(old, ArgmaxDecision) and old.to_dict() == {"rule": "argmax"}
    probs = np.array([[0.7, 0.3], [0.45, 0.55], [0.5, 0.5]])
    np.testing.assert_array_equal(old.apply(probs), [0, 1, 0])
    np.testing.assert_array_equal(ThresholdDecision(0.3).apply(probs), [1, 1, 1])
    np.testing.assert_array_equal(PriorDecision([0.0, np.log(0.5)]).apply(probs), [0, 0, 0])


def test_grouped_accuracy_is_the_accuracy_within_each_fine_class():
    from mmsets.metrics import grouped_accuracy

    truth = np.array([0, 1, 1, 1, 0])
    pred = np.array([0, 1, 0, 1, 1])
    groups = ["non", "eq", "neq", "eq", None]
    assert grouped_accuracy(truth, pred, groups) == {"eq": 1.0, "neq": 0.0, "non": 1.0}


def test_per_class_thresholds_leave_a_class_no_threshold_helps_at_half():
    y = np.array([[1, 0], [0, 0], [1, 0]])  # class 1 has no dev positive: F1 0 at every threshold
    probs = np.array([[0.8, 0.1], [0.2, 0.3], [0.7, 0.2]])
    decision = choose_decision(y, probs, "f1_macro", try_top1=False)
    assert decision.threshold[1] == 0.5 and 0.2 < decision.threshold[0] <= 0.7  # the middle of the tied range
