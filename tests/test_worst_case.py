"""Worst case per digit over attacks, and accuracy at a fixed clean false-detection rate,
on hand-made predictions."""

import numpy as np
import pytest

from keras_edd.evaluation import detection, metrics
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
