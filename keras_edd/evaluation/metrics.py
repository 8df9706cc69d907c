"""The numbers of Papernot & McDaniel (2017), Figure 1: recovered / detected / misclassified.

An adversarial example x* built from a test input x of true class y is scored
on the *target* model f, which has n real classes and, for extended
distillation, an outlier class at index n:

    recovered      argmax f(x*) = y      (the defense undid the attack)
    detected       argmax f(x*) = n      (flagged as an outlier; 0 without one)
    misclassified  any other class       (the attack worked)

Filter. The "filtered" rates (the paper's convention, used in plots and tables)
count only the inputs that the target classifies correctly when clean; the
"unfiltered" rates count all attacked inputs. Either way the three rates sum
to 1. Also here: attack_failed (`failure_rate`), perturbation norms and the size
of the deployed logits.
Pure numpy on predictions; only `logit_statistics` runs a model.
"""

import numpy as np

from keras_edd import models, stats
from keras_edd.attacks import perturbation_norms

FILTER_STATEMENT = (
    "Adversarial examples are built from the first N test inputs (N per attack in "
    "'num_examples'). 'filtered' rates count only the inputs the target classifies "
    "correctly when clean (count in 'filtered.count'); 'unfiltered' rates count all N. "
    "recovered = target predicts the true class, detected = target predicts the outlier "
    "class (always 0 for models without one), misclassified = any other class. "
    "attack_failed = the attack found no example meeting its own success criterion on the "
    "model it ran on (CW: margin >= kappa; JSMA: target reached; others: the decision left "
    "the true class and, adaptive, the outlier class), over the same inputs.")


def outcome_rates(predictions, labels, *, outlier_class=None, mask=None):
    """Fractions of recovered, detected and misclassified predictions.

    Args:
      predictions: [m] predicted classes of the target on adversarial inputs.
      labels: [m] true classes y (never the outlier class).
      outlier_class: index n of the outlier class, or None (detected = 0).
      mask: optional [m] booleans; only those examples are counted.
    Returns:
      {"count", "recovered", "detected", "misclassified"}; the rates sum to 1,
      or are None when no example is counted.
    """
    predictions = np.asarray(predictions).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.size} predictions but {labels.size} labels")
    if mask is not None:
        mask = np.asarray(mask, bool).reshape(-1)
        if mask.shape != labels.shape:
            raise ValueError(f"mask has {mask.size} entries, expected {labels.size}")
        predictions, labels = predictions[mask], labels[mask]
    count = int(labels.size)
    if count == 0:
        return {"count": 0, "recovered": None, "detected": None, "misclassified": None}
    recovered = predictions == labels
    detected = (np.zeros(count, bool) if outlier_class is None
                else (predictions == outlier_class) & ~recovered)
    misclassified = ~recovered & ~detected
    return {"count": count, "recovered": float(recovered.sum() / count),
            "detected": float(detected.sum() / count),
            "misclassified": float(misclassified.sum() / count)}


def attack_rates(adversarial_predictions, clean_predictions, labels, *, outlier_class=None):
    """Rates filtered on the inputs the target gets right when clean, and unfiltered."""
    correct = np.asarray(clean_predictions) == np.asarray(labels)
    return {"filtered": outcome_rates(adversarial_predictions, labels,
                                      outlier_class=outlier_class, mask=correct),
            "unfiltered": outcome_rates(adversarial_predictions, labels,
                                        outlier_class=outlier_class)}


def clean_rates(clean_predictions, labels, *, outlier_class=None):
    """Clean accuracy and the clean detected rate (false alarms)."""
    rates = outcome_rates(clean_predictions, labels, outlier_class=outlier_class)
    return {"count": rates["count"], "accuracy": rates["recovered"],
            "detected": rates["detected"], "misclassified": rates["misclassified"]}


def success_rate(rates):
    """1 - recovered: the attack changed the target's decision (detected or not)."""
    return None if rates["recovered"] is None else 1.0 - rates["recovered"]


def success_upper_bound(rates, z=1.645):
    """One-sided 95 % Wilson upper bound on the success rate of `rates` (filtered).

    The true success rate is below it with 95 % confidence; None without inputs. A
    masking flag fires only when even this bound stays below the threshold, so 16
    successes of 17 (94.1 %, bound 98.7 %) are not read as masking at 95 %. The upper end
    of the two-sided 90 % interval of keras_edd.stats (z = 1.645).
    """
    interval = stats.interval_of(success_rate(rates), rates["count"], z)
    return None if interval is None else interval[1]


def norm_summary(x, x_adv):
    """Mean L0 / L2 / L_inf of x_adv - x, over all inputs and over the changed ones."""
    norms = perturbation_norms(x, x_adv)
    changed = norms["l0"] > 0
    summary = {"changed_fraction": float(changed.mean())}
    for key, values in norms.items():
        summary[f"mean_{key}"] = float(np.mean(values))
        summary[f"mean_{key}_changed"] = float(np.mean(values[changed])) if changed.any() else None
    return summary


def logit_statistics(model, images):
    """Size of the deployed (T = 1) logits: what the logit penalty controls."""
    logits = models.predict_logits(model, images)
    return {"mean_abs": float(np.mean(np.abs(logits))),
            "mean_max": float(np.mean(logits.max(axis=1))),
            "p99_abs": float(np.quantile(np.abs(logits), 0.99)),
            "mean_top2_gap": float(np.mean(np.diff(np.sort(logits, axis=1)[:, -2:], axis=1)))}


def failure_rate(succeeded, mask=None):
    """attack_failed: the fraction of inputs (those in `mask`, if given) where the
    attack found no example meeting its own success criterion; None if none counted."""
    succeeded = np.asarray(succeeded, bool).reshape(-1)
    if mask is not None:
        succeeded = succeeded[np.asarray(mask, bool).reshape(-1)]
    return None if succeeded.size == 0 else float(1.0 - succeeded.mean())


# ----------------------------------------------------------------------- worst case per digit

# Outcome codes, ordered from the defender's best to its worst: the worst case of a digit
# over several attacks is the largest code.
RECOVERED, DETECTED, MISCLASSIFIED = 0, 1, 2


def outcome_codes(predictions, labels, *, outlier_class=None):
    """Per input RECOVERED, DETECTED or MISCLASSIFIED (the rule of `outcome_rates`)."""
    predictions = np.asarray(predictions).reshape(-1)
    labels = np.asarray(labels).reshape(-1)[:predictions.size]
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.size} predictions but {labels.size} labels")
    codes = np.full(predictions.shape, MISCLASSIFIED, np.int8)
    if outlier_class is not None:
        codes[predictions == outlier_class] = DETECTED
    codes[predictions == labels] = RECOVERED
    return codes


def worst_case(code_arrays):
    """The worst outcome of each input over several attacks: (codes, attacks per input).

    code_arrays: one array of outcome codes per attack, each over the first n_a test
    inputs (attacks may cover different numbers of inputs). Input i takes the attacks
    that covered it (n_a > i): misclassified if any misclassified it, else detected if
    any was detected, else recovered. Both arrays have the largest n_a entries.
    """
    arrays = [np.asarray(a, np.int8).reshape(-1) for a in code_arrays]
    if not arrays:
        raise ValueError("worst case of no attacks")
    n = max(a.size for a in arrays)
    codes = np.full(n, RECOVERED, np.int8)
    attacks = np.zeros(n, np.int64)
    for a in arrays:
        codes[:a.size] = np.maximum(codes[:a.size], a)
        attacks[:a.size] += 1
    return codes, attacks


def rates_of_codes(codes, mask=None):
    """`outcome_rates` of outcome codes (over `mask` when given)."""
    codes = np.asarray(codes).reshape(-1)
    if mask is not None:
        codes = codes[np.asarray(mask, bool).reshape(-1)[:codes.size]]
    count = int(codes.size)
    if count == 0:
        return {"count": 0, "recovered": None, "detected": None, "misclassified": None}
    return {"count": count, **{name: float(np.mean(codes == code)) for name, code in (
        ("recovered", RECOVERED), ("detected", DETECTED), ("misclassified", MISCLASSIFIED))}}


def worst_case_rates(code_arrays, clean_predictions, labels):
    """The "any attack" row: filtered and unfiltered rates of `worst_case`, plus how many
    attacks each input saw (min / max)."""
    codes, attacks = worst_case(code_arrays)
    correct = (np.asarray(clean_predictions).reshape(-1)[:codes.size]
               == np.asarray(labels).reshape(-1)[:codes.size])
    if correct.size != codes.size:
        raise ValueError(f"{correct.size} clean predictions for {codes.size} attacked inputs")
    return {"filtered": rates_of_codes(codes, correct), "unfiltered": rates_of_codes(codes),
            "num_examples": int(codes.size), "attacks_per_input": {
                "min": int(attacks.min()), "max": int(attacks.max())}}
