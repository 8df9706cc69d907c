"""The outlier class as a detector: scores, AUROC, ROC and TPR at a false-detection rate,
on hand-made scores whose values are known exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_edd.evaluation import detection


def test_auroc_counts_ties_one_half():
    # Pairs (a, c) with a > c: a=1: 1 (c=0); a=2: 2; a=3: 3 -> 6. Ties: a=1/c=1, a=2/c=2 -> 2.
    assert detection.auroc([0, 1, 2], [1, 2, 3]) == pytest.approx((6 + 0.5 * 2) / 9)
    assert detection.auroc([0, 1], [2, 3]) == 1.0
    assert detection.auroc([2, 3], [0, 1]) == 0.0
    assert detection.auroc([0.5, 0.5, 0.5], [0.5, 0.5]) == 0.5  # all equal: chance
    assert detection.auroc([0.0, 1.0], [0.5]) == 0.5
    assert detection.auroc([], [1.0]) is None and detection.auroc([1.0], []) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=30),
       st.lists(st.integers(0, 4), min_size=1, max_size=30))
def test_auroc_is_the_pairwise_count_and_the_roc_area(clean, adversarial):
    pairs = [(a > c) + 0.5 * (a == c) for a in adversarial for c in clean]
    value = detection.auroc(clean, adversarial)
    assert value == pytest.approx(np.mean(pairs))
    fpr, tpr, thresholds = detection.roc_curve(clean, adversarial)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(value)
    # The curve kept in results.json (its corners) has the same area.
    roc = detection.summarize(clean, adversarial)["roc"]
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(value, abs=1e-5)


def test_tpr_at_fpr_hand_made():
    clean = np.arange(100) / 100.0            # 0.00 .. 0.99
    adversarial = np.array([0.985, 0.995, 0.96, 0.5, 0.999])
    # 1 %: k = 1 clean score may exceed tau -> tau = the 2nd largest clean score, 0.98.
    at_1 = detection.tpr_at_fpr(clean, adversarial, 0.01)
    assert at_1 == {"tpr": pytest.approx(3 / 5), "fpr": pytest.approx(0.01), "threshold": 0.98}
    # 5 %: k = 5 -> tau = 0.94; 0.96 now counts.
    at_5 = detection.tpr_at_fpr(clean, adversarial, 0.05)
    assert at_5["threshold"] == 0.94 and at_5["tpr"] == pytest.approx(4 / 5)
    assert at_5["fpr"] == pytest.approx(0.05)
    # Ties at the threshold are not flagged: the FPR stays <= the target.
    tied = detection.tpr_at_fpr([1.0] * 10, [1.0, 2.0], 0.05)
    assert tied == {"tpr": 0.5, "fpr": 0.0, "threshold": 1.0}
    everything = detection.tpr_at_fpr([0.0, 1.0], [0.5], 1.0)
    assert everything == {"tpr": 1.0, "fpr": 1.0, "threshold": None}


def test_outlier_scores_hand_computed():
    logits = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])  # outlier class 2
    scores = detection.outlier_scores(logits, 2)
    np.testing.assert_allclose(scores["margin"], [-2.0, 3.0])
    np.testing.assert_allclose(scores["softmax"], [1 / (np.e + np.e ** 2 + 1),
                                                   np.e ** 3 / (2 + np.e ** 3)])


def test_clean_accuracy_vs_threshold():
    scores = [0.1, 0.5, 0.9, 0.3]
    correct = [True, True, True, False]
    # tau 0.4: inputs 0 and 3 not flagged, 0 correct -> 1/4; tau 1: all not flagged -> 3/4.
    assert detection.clean_accuracy_vs_threshold(scores, correct, [0.4, 1.0, 0.0]) == [
        0.25, 0.75, 0.0]
    with pytest.raises(ValueError, match="4 scores but 1"):
        detection.clean_accuracy_vs_threshold(scores, [True], [0.5])
