"""`evaluate`: robust accuracy of a Keras model in one call, AutoAttack's way.

The bookkeeping follows AutoAttack (Croce & Hein 2020, `run_standard_evaluation`):
the attacks aim at the TRUE label y; a digit wrong when clean is never attacked
and never robust; each attack runs only on the digits still robust; a digit
broken by an attack keeps that first adversarial example; robust accuracy is the
fraction of digits correct when clean and after every attack. A returned point
counts only when ||x_adv - x|| <= eps (+ points.NORM_TOLERANCE) and x_adv lies in
[0, 1]; a point outside is a failure of that attack and a warning.

With an outlier class (the "detected" logit of an extended-distillation model)
the attacks are the adaptive forms: the attacker wins only when a real class
other than y is on top. The outlier class is also read as a detector with a
threshold tau on the score s(x) = Z_out - max_{i real} Z_i, chosen on the clean
inputs per false-detection rate (Tramer et al. 2020, "On adaptive attacks to
adversarial example defenses"; Stutz et al. 2020, CCAT): see ThresholdResult.
"""

import time

import numpy as np
import tensorflow as tf

from keras_edd import data
from keras_edd import progress as progress_bars
from keras_edd import validation as v
from keras_edd.attacks import utils
from keras_edd.evaluation import detection
from keras_edd.robustness import inputs, suite
from keras_edd.robustness.points import (CHECK_EXAMPLES, attacker_wins, in_box, logits,
                                         norms, sanity_checks, warn, within)
from keras_edd.robustness.rates import Rate
from keras_edd.robustness.result import RobustnessResult, ThresholdResult

def evaluate(model, x, y, *, eps: float, norm: str = "linf", attacks="standard",
             outlier_class: int | None = None,
             false_detection: tuple[float, ...] = (0.01, 0.05), batch_size: int = 250,
             seed: int = 0, progress: bool = True) -> RobustnessResult:
    """Robust accuracy of `model` on (x, y) under ||delta||_norm <= eps, AutoAttack's way.

    Args:
      model: a Keras model returning logits (or any callable x -> logits), a path
        to a `.keras` file, or a pretrained name such as "paper:extended".
      x: images [n, H, W, C] (or [n, H, W]): uint8 pixel values 0-255 (divided by
        255), or floats already in [0, 1] (used as they are; a float outside
        [0, 1] raises). Nothing else is accepted.
      y: true labels, integers [n] (logit indices, never the outlier class) or
        one-hot [n, classes].
      eps: the radius, >= 0 (L_inf: at most 1).
      norm: "linf" or "l2".
      attacks: "standard" (AutoAttack's: apgd_ce, apgd_t, fab_t, square at
        AutoAttack's defaults; attacks missing here are listed in
        `attacks_skipped` with a warning), "rand" (AutoAttack's version for a
        stochastic model: apgd_ce and apgd_dlr, each step's gradient averaged
        over 20 model calls, EOT; pass the model as a callable that is random,
        e.g. `lambda x: model(x, training=True)` for dropout at inference) or a
        list of names run in that order: apgd_ce, apgd_t, apgd_dlr, fab_t, fab,
        square, fgsm, pgd.
      outlier_class: index of the "detected" logit of an n + 1-logit model;
        None (the default) evaluates a plain classifier and never guesses one.
        Given, the attacks are adaptive (only a real class != y wins) and the
        result has `thresholds`.
      false_detection: clean false-detection rates f in (0, 1), one
        ThresholdResult each (outlier models only).
      batch_size: digits per attack call.
      seed: seed of the attacks' random draws; batch b starting at position p
        among the attacked digits gets seed + p.
      progress: show a progress bar (on a terminal).
    Returns:
      A RobustnessResult (frozen): clean_accuracy, robust_accuracy and
      robust_accuracy_by_attack as Rates (k of n, value, 95 % Wilson interval),
      per-digit robust mask, first adversarial example and its norm, thresholds,
      checks and warnings; summary() and to_dict().

    Definitions (n digits). clean_accuracy = #{argmax Z(x) = y} / n (over all
    logits: with an outlier class a clean detection is an error). A digit is
    robust when it is clean-correct and no attack returned a point x_adv, inside
    the eps-ball and [0, 1], where the attacker wins: argmax Z(x_adv) != y, or
    with an outlier class max_{i not in {y, out}} Z_i(x_adv) > max(Z_y, Z_out)
    (a detected adversarial counts as correct at the model's own decision rule,
    tau = 0). robust_accuracy = #robust / n. Nothing is written to disk.
    Raises ValueError (one line) on bad arguments.
    """
    started = time.perf_counter()
    norm = v.check_choice("norm", norm, suite.NORMS)
    batch_size = v.check_int("batch_size", batch_size, low=1)
    seed = v.check_int("seed", seed, low=0, high=2**31 - 1)
    false_detection = inputs.check_false_detection(false_detection)
    if not isinstance(progress, bool):
        raise ValueError(f"progress={progress!r}: expected True or False")
    rows, skipped = suite.resolve(attacks, norm, eps)
    x = data.to_float(x)
    model, description = inputs.resolve_model(model)
    x = inputs.fit_to_model(model, x)
    eps = v.check_eps("eps", eps, norm, size=int(np.prod(x.shape[1:])))
    version = isinstance(attacks, str) and attacks in suite.VERSIONS
    rows, skipped = suite.drop_unfit(rows, skipped, x.shape, named=not version)

    model_fn = utils.as_model_fn(model)
    clean_logits = logits(model_fn, x, batch_size)
    if clean_logits.ndim != 2 or clean_logits.shape[1] < 2:
        raise ValueError(f"the model outputs shape {clean_logits.shape[1:]} per example: "
                         "expected a vector of at least 2 logits")
    num_logits = clean_logits.shape[1]
    outlier_class = inputs.check_outlier_class(outlier_class, num_logits)
    y = inputs.check_labels(y, len(x), num_logits, outlier_class)

    issued = []
    for _, reason in skipped:
        warn(issued, f"standard attack not run: {reason}; robust accuracy is an upper bound "
                     "of AutoAttack's without it")
    sanity = sanity_checks(model_fn, x[:CHECK_EXAMPLES], y[:CHECK_EXAMPLES], outlier_class,
                            issued, eot=isinstance(attacks, str) and attacks == "rand")
    suites = 1 + 2 * len(false_detection) * (outlier_class is not None)
    bar = progress_bars.bar(total=suites * len(rows) * len(x), desc="evaluate",
                            progress=progress, unit="digit")
    try:
        clean_correct = clean_logits.argmax(axis=1) == y
        run = _run_suite(model_fn, x, y, clean_correct, rows, eps=eps, norm=norm,
                         outlier_class=outlier_class, seed=seed, batch_size=batch_size,
                         bar=bar, issued=issued)
        thresholds = ()
        if outlier_class is not None:
            thresholds = tuple(
                _threshold(model_fn, x, y, clean_logits, rate, rows, eps=eps, norm=norm,
                           outlier_class=outlier_class, seed=seed, batch_size=batch_size,
                           bar=bar, issued=issued)
                for rate in false_detection)
    finally:
        bar.close()

    n = len(x)
    broken_by = tuple(None if robust else ("clean" if index < 0 else rows[index].name)
                      for robust, index in zip(run["robust"], run["broken_by"]))
    return RobustnessResult(
        model=description, norm=norm, eps=eps, attacks=tuple(row.name for row in rows),
        attacks_skipped=skipped, settings={row.name: dict(row.settings) for row in rows},
        outlier_class=outlier_class, n=n, clean_accuracy=Rate(int(clean_correct.sum()), n),
        robust_accuracy=Rate(int(run["robust"].sum()), n),
        robust_accuracy_by_attack={row.name: Rate(k, n)
                                   for row, k in zip(rows, run["robust_after"])},
        clean_correct=clean_correct, robust=run["robust"], broken_by=broken_by,
        x_adv=run["x_adv"], perturbation_norm=norms(run["x_adv"] - x, norm),
        norm_violations=run["violations"], thresholds=thresholds, checks=sanity,
        warnings=tuple(issued), seed=seed, seconds=time.perf_counter() - started,
        seconds_by_attack=run["seconds"])


def _run_suite(model_fn, x, y, clean_correct, rows, *, eps, norm, outlier_class, seed,
               batch_size, bar, issued):
    """The attacks in order, each on the digits still robust; see the module docstring."""
    robust = clean_correct.copy()
    broken_by = np.where(clean_correct, -2, -1)  # -1: wrong when clean, -2: not broken
    x_adv = x.copy()
    robust_after, violations, seconds = [], {}, {}
    for index, row in enumerate(rows):
        started = time.perf_counter()
        todo = np.flatnonzero(robust)
        bar.update(len(x) - len(todo))
        violations[row.name] = 0
        for position in range(0, len(todo), batch_size):
            batch = todo[position:position + batch_size]
            points = np.asarray(row.run(model_fn, x[batch], y[batch], eps=eps, norm=norm,
                                        outlier_class=outlier_class,
                                        seed=(seed + position) % 2**31),
                                np.float32).reshape(x[batch].shape)
            inside = within(norms(points - x[batch], norm), eps) & in_box(points)
            violations[row.name] += int((~inside).sum())
            wins = attacker_wins(logits(model_fn, points, batch_size), y[batch],
                                 outlier_class) & inside
            broken = batch[wins]
            robust[broken] = False
            broken_by[broken] = index
            x_adv[broken] = points[wins]
            bar.update(len(batch))
        if violations[row.name]:
            warn(issued, f"{row.name} returned {violations[row.name]} point(s) outside the "
                         f"{norm} ball of radius {eps:g} or the box [0, 1]: each counted as a "
                         "failure of the attack")
        robust_after.append(int(robust.sum()))
        seconds[row.name] = time.perf_counter() - started
    return {"robust": robust, "broken_by": broken_by, "x_adv": x_adv,
            "robust_after": robust_after, "violations": violations, "seconds": seconds}


class _ShiftedOutlier:
    """Logits with Z_out lowered by tau: the outlier class wins iff s(x) > tau."""

    def __init__(self, model_fn, outlier_class, tau, num_logits):
        self.model_fn = model_fn
        self.shift = tf.constant(tau * np.eye(num_logits, dtype=np.float32)[outlier_class])

    def __call__(self, x):
        return self.model_fn(x) - self.shift


def _threshold(model_fn, x, y, clean_logits, rate, rows, *, eps, norm, outlier_class, seed,
               batch_size, bar, issued):
    n = len(x)
    scores = detection.outlier_scores(clean_logits, outlier_class)["margin"]
    tau = detection.false_alarm_threshold(scores, rate)  # the (floor(f n) + 1)-th largest
    shifted = _ShiftedOutlier(model_fn, outlier_class, tau, clean_logits.shape[1])
    real_prediction = np.where(np.arange(clean_logits.shape[1]) == outlier_class, -np.inf,
                               clean_logits).argmax(axis=1)
    accepted_correct = (scores <= tau) & (real_prediction == y)
    common = dict(eps=eps, norm=norm, seed=seed, batch_size=batch_size, bar=bar,
                  issued=issued)
    detection_correct = _run_suite(shifted, x, y, accepted_correct, rows,
                                   outlier_class=outlier_class, **common)["robust"]
    # Any point not accepted as y is an error here, so only digits robust above need
    # attacking: plain attacks on the shifted logits (the outlier class is just a class).
    rejection_error = _run_suite(shifted, x, y, detection_correct, rows,
                                 outlier_class=None, **common)["robust"]
    return ThresholdResult(
        target_false_detection=rate, tau=tau, false_detection=Rate(int((scores > tau).sum()), n),
        clean_accuracy=Rate(int(accepted_correct.sum()), n),
        robust_accuracy_detection_correct=Rate(int(detection_correct.sum()), n),
        robust_accuracy_rejection_error=Rate(int(rejection_error.sum()), n))
