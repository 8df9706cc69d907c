"""Worst case per digit over attacks, and accuracy at a fixed clean false-detection rate,
on hand-made predictions."""

import numpy as np
import pytest

from keras_edd.evaluation import detection, metrics, worst_case
from keras_edd.evaluation.metrics import DETECTED, MISCLASSIFIED, RECOVERED


def test_outcome_codes_follow_the_rates_rule():
    labels = np.array([0, 1, 2, 3])
    codes = metrics.outcome_codes([0, 10, 5, 3], labels, outlier_class=10)
    np.testing.assert_array_equal(codes, [RECOVERED, DETECTED, MISCLASSIFIED, RECOVERED])
    # Without an outlier class, predicting index 10 is just another wrong class.
    assert metrics.outcome_codes([10], [1])[0] == MISCLASSIFIED
    assert metrics.rates_of_codes(codes) == {
        "count": 4, "recovered": 0.5, "detected": 0.25, "misclassified": 0.25}
    assert metrics.rates_of_codes(codes) == {
        k: v for k, v in metrics.outcome_rates([0, 10, 5, 3], labels, outlier_class=10).items()}


def test_worst_case_takes_each_digits_worst_attack_over_the_attacks_that_covered_it():
    r, d, m = RECOVERED, DETECTED, MISCLASSIFIED
    fgsm = [r, d, r, r, d, r]
    cw = [r, m, d, r, r, r]
    square = [r, r, r, m]  # ran on the first 4 digits only
    codes, attacks = metrics.worst_case([fgsm, cw, square])
    np.testing.assert_array_equal(codes, [r, m, d, m, d, r])
    np.testing.assert_array_equal(attacks, [3, 3, 3, 3, 2, 2])
    with pytest.raises(ValueError, match="no attacks"):
        metrics.worst_case([])


def test_worst_case_rates_filter_on_the_clean_correct_digits():
    r, d, m = RECOVERED, DETECTED, MISCLASSIFIED
    labels = np.array([0, 1, 2, 3, 4])
    clean = np.array([0, 1, 9, 3, 4])  # digit 2 is wrong when clean
    row = metrics.worst_case_rates([[r, d, m, r, r], [r, r, r, m, d]], clean, labels)
    # Worst per digit: r, d, m, m, d; filtered drops digit 2.
    assert row["unfiltered"] == {"count": 5, "recovered": 0.2, "detected": 0.4,
                                 "misclassified": 0.4}
    assert row["filtered"] == {"count": 4, "recovered": 0.25, "detected": 0.5,
                               "misclassified": 0.25}
    assert row["attacks_per_input"] == {"min": 2, "max": 2} and row["num_examples"] == 5
    # The worst case is never better for the defender than any single attack.
    single = metrics.rates_of_codes([r, d, m, r, r], clean == labels)
    assert row["filtered"]["misclassified"] >= single["misclassified"]


def test_accuracy_at_threshold_counts_detection_both_ways():
    labels = np.array([0, 1, 2, 3])
    scores = np.array([0.9, 0.1, 0.5, 0.2])
    real = np.array([5, 1, 2, 0])  # real-class argmax: wrong, right, right, wrong
    # tau 0.4: digits 0 and 2 flagged.
    acc = detection.accuracy_at_threshold(scores, real, labels, 0.4)
    assert acc == {"count": 4, "detection_correct": 0.75, "rejection_error": 0.25,
                   "flagged": 0.5}
    # A score equal to tau is not flagged (score > tau strictly).
    assert detection.accuracy_at_threshold(scores, real, labels, 0.5)["flagged"] == 0.25


def test_threshold_at_five_percent_false_detection_on_clean_digits():
    clean_scores = np.arange(100, dtype=np.float64)  # 0..99
    tau = detection.false_alarm_threshold(clean_scores, 0.05)
    assert tau == 94.0 and np.mean(clean_scores > tau) == 0.05
    tau1 = detection.false_alarm_threshold(clean_scores, 0.01)
    assert tau1 == 98.0 and np.mean(clean_scores > tau1) == 0.01


def test_worst_case_at_threshold():
    labels = np.array([0, 1, 2])
    tau = 0.5
    a = (np.array([0.9, 0.1, 0.1]), np.array([7, 1, 2]))  # flagged, right, right
    b = (np.array([0.1, 0.1]), np.array([0, 4]))            # right, wrong (2 digits)
    worst = detection.worst_case_at_threshold([a, b], labels, tau)
    # Digit 0: flagged by a, right under b -> robust, not correct (flag is an error).
    # Digit 1: right under a, wrong under b -> neither.  Digit 2: right -> both.
    assert worst == {"count": 3, "detection_correct": pytest.approx(2 / 3),
                     "rejection_error": pytest.approx(1 / 3)}
    with pytest.raises(ValueError, match="3 scores, 2 predictions"):
        detection.accuracy_at_threshold([0.1, 0.2, 0.3], [1, 2], labels, tau)


# ------------------------------------------------ keras_edd.evaluation.worst_case on hand-made logits


class _Spec:
    def __init__(self, name, outlier_class=None):
        self.name, self.outlier_class = name, outlier_class


def _onehot_logits(predictions, width, high=5.0):
    logits = np.zeros((len(predictions), width))
    logits[np.arange(len(predictions)), predictions] = high
    return logits


def test_worst_case_rows_per_threat_model():
    labels = np.array([0, 1, 2, 0])
    ext, plain = _Spec("ext", outlier_class=3), _Spec("und")
    clean = {"ext": _onehot_logits([0, 1, 2, 3], 4), "und": _onehot_logits([0, 1, 0, 0], 3)}
    adv = {
        ("whitebox", "ext", "ext", "fgsm", "plain"): (_onehot_logits([0, 3, 2, 1], 4), 4),
        ("whitebox", "ext", "ext", "cw", "adaptive"): (_onehot_logits([1, 1], 4), 2),
        ("blackbox", "ext", "U", "fgsm", "plain"): (_onehot_logits([0, 1, 3, 0], 4), 4),
        ("blackbox", "ext", "D", "fgsm", "plain"): (_onehot_logits([2, 1, 2, 0], 4), 4),
        ("whitebox", "und", "und", "fgsm", "plain"): (_onehot_logits([1, 1, 2, 0], 3), 4),
    }
    rows = worst_case.worst_case_rows([ext, plain], clean, labels, adv)
    got = {(r["target"], r["setting"], r["source"]): r for r in rows}
    assert list(got) == [("ext", "whitebox", "ext"), ("ext", "blackbox", "U"),
                         ("ext", "blackbox", "D"), ("ext", "blackbox", "any"),
                         ("und", "whitebox", "und")]
    white = got[("ext", "whitebox", "ext")]
    # Per digit: fgsm r, d, r, m; cw (2 digits) m, r -> worst m, d, r, m. Digit 3 is
    # detected when clean, so the filter keeps digits 0-2: m, d, r.
    assert white["unfiltered"] == {"count": 4, "recovered": 0.25, "detected": 0.25,
                                   "misclassified": 0.5}
    assert white["filtered"]["count"] == 3
    assert white["filtered"]["misclassified"] == pytest.approx(1 / 3)
    assert white["attacks_per_input"] == {"min": 1, "max": 2}
    assert white["attacks"] == ["fgsm (plain)", "cw (adaptive)"]
    # Over the 2 digits both attacks covered: m, d.
    assert white["all_attacks"]["num_examples"] == 2
    assert white["all_attacks"]["unfiltered"]["misclassified"] == 0.5
    # Any surrogate: U r, r, d, r and D m, r, r, r -> m, r, d, r.
    anyone = got[("ext", "blackbox", "any")]
    assert anyone["unfiltered"] == {"count": 4, "recovered": 0.5, "detected": 0.25,
                                    "misclassified": 0.25}
    assert anyone["attacks"] == ["fgsm (plain) from U", "fgsm (plain) from D"]
    # No outlier class: only recovered or misclassified; clean digit 2 is wrong, so the
    # filter drops it.
    und = got[("und", "whitebox", "und")]
    assert und["filtered"] == {"count": 3, "recovered": pytest.approx(2 / 3), "detected": 0.0,
                               "misclassified": pytest.approx(1 / 3)}


def test_fixed_fpr_results_threshold_on_the_test_set_and_both_readings():
    ext, plain = _Spec("ext", outlier_class=2), _Spec("und")
    # Test set of 20 digits, label 0; margins z_2 - max(z_0, z_1) = -10, -9, ..., 9.
    test_labels = np.zeros(20, int)
    test = np.zeros((20, 3))
    test[:, 0] = 0.0
    test[:, 2] = np.arange(-10, 10)
    # Test-set thresholds: 5 % of 20 -> k = 1, tau = the 2nd largest margin = 8
    # (1 flagged); argmax rule tau 0: margins 1..9 flagged = 9 of 20.
    labels = np.array([0, 1, 0])
    clean = {"ext": np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]]),  # right, right, m=5
             "und": np.array([[5.0, 0], [0, 5.0], [5.0, 0]])}
    adv = {
        # margins: 9 (flagged at 5 %), -5 (real argmax 0: wrong for digit 1), 3
        ("whitebox", "ext", "ext", "pgd", "plain"): (
            np.array([[0, 0, 9.0], [5.0, 0, 0], [0, 0, 3.0]]), 3),
        ("whitebox", "und", "und", "pgd", "plain"): (np.array([[5.0, 0], [5.0, 0]]), 2),
    }
    test_logits = {"ext": test, "und": np.tile([5.0, 0], (20, 1))}
    out = worst_case.fixed_fpr_results([ext, plain], test_logits, test_labels, clean, labels,
                                       adv, alphas=(0.05,))
    th = out["targets"]["ext"]["thresholds"]
    assert th["0.05"]["threshold"] == 8.0 and th["0.05"]["false_detection"] == 0.05
    assert th["0.05"]["clean_accuracy"] == 0.95 and th["0.05"]["flags"] == "some"
    assert th["argmax"] == {"threshold": 0.0, "flags": "some", "false_detection": 0.45,
                            "clean_accuracy": 0.55, "count": 20}
    rows = {(r["attack"], r["source"]): r for r in out["targets"]["ext"]["rows"]}
    pgd = rows[("pgd", "ext")]["at"]
    # tau 8: digit 0 adv flagged (robust, not correct); digit 1 adv wrong (neither);
    # digit 2: clean margin 5 and adv margin 3 not flagged, real argmax 0 = label -> both.
    assert pgd["0.05"] == {"count": 3, "detection_correct": pytest.approx(2 / 3),
                           "rejection_error": pytest.approx(1 / 3)}
    # tau 0: digit 2's clean candidate is flagged (margin 5 > 0): robust, not correct.
    assert pgd["argmax"] == {"count": 3, "detection_correct": pytest.approx(2 / 3),
                             "rejection_error": 0.0}
    assert rows[("any", "ext")]["at"] == rows[("pgd", "ext")]["at"]  # one attack: the same
    # No outlier class: nothing flagged, both readings are the robust accuracy, over the
    # 2 digits the craft covers (digit 1 is misclassified).
    und = out["targets"]["und"]
    assert und["thresholds"]["0.05"]["flags"] == "none" and "argmax" not in und["thresholds"]
    at = {(r["attack"]): r for r in und["rows"]}["pgd"]["at"]["0.05"]
    assert at == {"count": 2, "detection_correct": 0.5, "rejection_error": 0.5}
