"""The outlier class as a detector: scores, ROC, AUROC, detection rates at fixed false alarms.

A model with an outlier class (n real classes, logit n) detects x by a score
that grows with its belief that x is an outlier, read at T = 1:

    softmax score  s(x) = softmax(z(x))_n
    margin score   m(x) = z_n(x) - max_{i<n} z_i(x)   (m > 0: argmax is the outlier class)

Positives are adversarial inputs, negatives clean ones. Threshold rule, the same
everywhere: x is flagged when score > tau (strictly).

  auroc          P(a > c) + P(a = c) / 2 over pairs (adversarial a, clean c): the
                 Mann-Whitney statistic, exact, ties counted 1/2 (all equal: 0.5).
  roc_curve      (fpr, tpr, thresholds) at every distinct score, from (0, 0) to
                 (1, 1); its trapezoid area is `auroc`.
  tpr_at_fpr     tau chosen on the clean scores alone: with m clean scores and
                 k = floor(alpha * m), tau is the (k + 1)-th largest clean score,
                 so at most k clean scores exceed it (FPR <= alpha, ties at tau not
                 flagged; no interpolation between thresholds). Returns the TPR,
                 the FPR reached and tau.
  clean_accuracy_vs_threshold
                 fraction of clean inputs that are not flagged and whose real-class
                 argmax is the true class, at each tau.
  detection_results
                 results["detection"] of an evaluation: the above per target with
                 an outlier class and per attack entry scored on it.
Pure numpy.
"""

import numpy as np

SCORES = ("softmax", "margin")
FALSE_ALARM_TARGETS = (0.01, 0.05)


def outlier_scores(logits, outlier_class):
    """{"softmax": softmax(z)_n, "margin": z_n - max_{i != n} z_i} per input (float64)."""
    z = np.asarray(logits, np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    softmax = np.exp(shifted[:, outlier_class]) / np.exp(shifted).sum(axis=1)
    real = np.delete(z, outlier_class, axis=1)
    return {"softmax": softmax, "margin": z[:, outlier_class] - real.max(axis=1)}


def auroc(clean_scores, adversarial_scores):
    """Area under the ROC curve, exactly: P(a > c) + P(a = c) / 2; None if a side is empty."""
    clean = np.sort(np.asarray(clean_scores, np.float64).reshape(-1))
    adversarial = np.asarray(adversarial_scores, np.float64).reshape(-1)
    if clean.size == 0 or adversarial.size == 0:
        return None
    below = np.searchsorted(clean, adversarial, side="left")
    equal = np.searchsorted(clean, adversarial, side="right") - below
    return float((below.sum() + 0.5 * equal.sum()) / (clean.size * adversarial.size))


def roc_curve(clean_scores, adversarial_scores):
    """(fpr, tpr, thresholds): one point per threshold tau (flag score > tau).

    thresholds are the distinct scores, descending, then -inf; the first point
    is (0, 0) (nothing exceeds the largest score), the last (1, 1).
    """
    clean = np.asarray(clean_scores, np.float64).reshape(-1)
    adversarial = np.asarray(adversarial_scores, np.float64).reshape(-1)
    if clean.size == 0 or adversarial.size == 0:
        raise ValueError(f"roc_curve needs both sides: {clean.size} clean and "
                         f"{adversarial.size} adversarial scores")
    thresholds = np.append(np.unique(np.concatenate([clean, adversarial]))[::-1], -np.inf)
    fpr = _exceeding(clean, thresholds) / clean.size
    tpr = _exceeding(adversarial, thresholds) / adversarial.size
    return fpr, tpr, thresholds


def _exceeding(scores, thresholds):
    """How many scores are > each threshold."""
    ordered = np.sort(scores)
    return scores.size - np.searchsorted(ordered, thresholds, side="right")


def false_alarm_threshold(clean_scores, alpha):
    """tau with #(clean > tau) <= floor(alpha * m): the (k + 1)-th largest clean score."""
    clean = np.sort(np.asarray(clean_scores, np.float64).reshape(-1))[::-1]
    k = int(np.floor(alpha * clean.size + 1e-9))
    return -np.inf if k >= clean.size else float(clean[k])


def tpr_at_fpr(clean_scores, adversarial_scores, alpha):
    """{"tpr", "fpr", "threshold"} at the threshold of `false_alarm_threshold`."""
    clean = np.asarray(clean_scores, np.float64).reshape(-1)
    adversarial = np.asarray(adversarial_scores, np.float64).reshape(-1)
    if clean.size == 0 or adversarial.size == 0:
        return {"tpr": None, "fpr": None, "threshold": None}
    tau = false_alarm_threshold(clean, alpha)
    return {"tpr": float(np.mean(adversarial > tau)), "fpr": float(np.mean(clean > tau)),
            "threshold": tau if np.isfinite(tau) else None}  # None: every input flagged


def clean_accuracy_vs_threshold(scores, correct, thresholds):
    """Per tau: the fraction of clean inputs not flagged (score <= tau) and correct.

    correct: per input, the real-class argmax is the true class.
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    correct = np.asarray(correct, bool).reshape(-1)
    if scores.shape != correct.shape:
        raise ValueError(f"{scores.size} scores but {correct.size} correctness flags")
    if scores.size == 0:
        return [None for _ in thresholds]
    return [float(np.mean(correct & (scores <= tau))) for tau in thresholds]


def _corners(fpr, tpr):
    """Indices of the points where the curve changes direction (the plot is the same)."""
    keep = [0]
    for i in range(1, len(fpr) - 1):
        before = (fpr[i] - fpr[keep[-1]], tpr[i] - tpr[keep[-1]])
        after = (fpr[i + 1] - fpr[i], tpr[i + 1] - tpr[i])
        if before[0] * after[1] - before[1] * after[0] != 0:
            keep.append(i)
    keep.append(len(fpr) - 1)
    return np.array(sorted(set(keep)))


def summarize(clean_scores, adversarial_scores, *, targets=FALSE_ALARM_TARGETS):
    """AUROC, TPR at each false-alarm target and the ROC curve's corner points."""
    result = {"auroc": auroc(clean_scores, adversarial_scores),
              "at_fpr": {f"{alpha:g}": tpr_at_fpr(clean_scores, adversarial_scores, alpha)
                         for alpha in targets}}
    if result["auroc"] is not None:
        fpr, tpr, _ = roc_curve(clean_scores, adversarial_scores)
        keep = _corners(fpr, tpr)
        result["roc"] = {"fpr": [round(float(v), 6) for v in fpr[keep]],
                         "tpr": [round(float(v), 6) for v in tpr[keep]]}
    return result


def detection_results(targets, clean_logits, y, adversarial_logits, *, num_examples):
    """results["detection"]: the outlier class of each target as a detector.

    Per target with an outlier class, clean accuracy against the threshold of
    each score; per main entry scored on it, clean inputs (negatives) against
    that entry's adversarial inputs (positives), both restricted, like the
    filtered rates, to the attacked inputs the target classifies correctly when
    clean. The scores and the threshold rule are this module's.

    targets: the scored models (`name`, `outlier_class`); clean_logits: name ->
    logits of the attacked test inputs, for each target with an outlier class;
    y: their labels; adversarial_logits: (setting, target, source, attack,
    variant) -> (logits of the adversarial inputs, their number);
    num_examples: the evaluation's number of attacked inputs.
    """
    out = {"scores": {"softmax": "softmax(z)_n at T = 1",
                      "margin": "z_n - max_{i<n} z_i"},
           "positives": "adversarial inputs built from the attacked test inputs the "
                        "target classifies correctly when clean",
           "negatives": "the same test inputs, clean",
           "threshold_rule": "flag when score > tau; tau is the (k+1)-th largest clean "
                             "score, k = floor(alpha * number of clean inputs), so the "
                             "false-detection rate is <= alpha (no interpolation)",
           "targets": {}, "entries": []}
    for spec in targets:
        if spec.outlier_class is None:
            continue
        n = min(num_examples, len(y))
        logits = clean_logits[spec.name][:n]
        scores = outlier_scores(logits, spec.outlier_class)
        real_correct = np.delete(logits, spec.outlier_class, axis=1).argmax(axis=1) == y[:n]
        by_score = {}
        for score, values in scores.items():
            # Here the false detections are counted over all attacked clean inputs.
            thresholds = {f"fpr {alpha:g}": false_alarm_threshold(values, alpha)
                          for alpha in FALSE_ALARM_TARGETS}
            if score == "margin":
                thresholds["argmax (margin 0)"] = 0.0
            quantiles = np.quantile(values, np.linspace(0, 1, 21))
            by_score[score] = {
                "at_threshold": {label: {
                    "threshold": tau if np.isfinite(tau) else None,
                    "clean_accuracy": clean_accuracy_vs_threshold(
                        values, real_correct, [tau])[0],
                    "flagged": float(np.mean(values > tau))}
                    for label, tau in thresholds.items()},
                "curve": {"threshold": [float(t) for t in quantiles],
                          "clean_accuracy": clean_accuracy_vs_threshold(
                              values, real_correct, quantiles)}}
        out["targets"][spec.name] = {"num_examples": n, "scores": by_score}
        for key, (adv_logits, count) in adversarial_logits.items():
            setting, target, source, attack, variant = key
            if target != spec.name:
                continue
            mask = clean_logits[spec.name][:count].argmax(axis=1) == y[:count]
            clean_scores = outlier_scores(logits[:count][mask], spec.outlier_class)
            adv_scores = outlier_scores(adv_logits[mask], spec.outlier_class)
            out["entries"].append({
                "setting": setting, "target": target, "source": source, "attack": attack,
                "variant": variant, "num_examples": count, "count": int(mask.sum()),
                **{score: summarize(clean_scores[score], adv_scores[score])
                   for score in SCORES}})
    return out


# ------------------------------------------------------------- accuracy at a fixed false-detection rate


def decisions_at_threshold(scores, real_predictions, labels, tau):
    """Per input: (flagged, correct) with flag = score > tau and correct = not flagged
    and the real-class argmax is the true class."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    real = np.asarray(real_predictions).reshape(-1)
    labels = np.asarray(labels).reshape(-1)[:scores.size]
    if not scores.size == real.size == labels.size:
        raise ValueError(f"{scores.size} scores, {real.size} predictions, {labels.size} labels")
    flagged = scores > tau
    return flagged, ~flagged & (real == labels)


def accuracy_at_threshold(scores, real_predictions, labels, tau):
    """Accuracy of the detector-classifier at threshold tau (Tramer et al. 2020), both ways.

    detection_correct: a flagged input counts as correct (the defense refused it) —
    the robust accuracy of a detection defense; rejection_error: a flagged input
    counts as an error — plain accuracy. Also the flagged fraction.
    """
    flagged, correct = decisions_at_threshold(scores, real_predictions, labels, tau)
    if flagged.size == 0:
        return {"count": 0, "detection_correct": None, "rejection_error": None, "flagged": None}
    return {"count": int(flagged.size), "detection_correct": float(np.mean(flagged | correct)),
            "rejection_error": float(np.mean(correct)), "flagged": float(np.mean(flagged))}


def worst_case_at_threshold(entries, labels, tau):
    """Accuracy at tau when each input faces every attack that covered it.

    entries: (scores, real_predictions) per attack, each over the first n_a inputs.
    An input is robust (detection counted correct) only if every attack covering it
    was flagged or classified correctly; correct (rejection as error) only if every
    one was classified correctly and not flagged. Over the largest n_a inputs.
    """
    if not entries:
        raise ValueError("worst case of no attacks")
    n = max(np.asarray(scores).size for scores, _ in entries)
    robust = np.ones(n, bool)
    correct = np.ones(n, bool)
    for scores, real in entries:
        flagged, right = decisions_at_threshold(scores, real, labels, tau)
        robust[:flagged.size] &= flagged | right
        correct[:flagged.size] &= right
    return {"count": int(n), "detection_correct": float(robust.mean()),
            "rejection_error": float(correct.mean())}
