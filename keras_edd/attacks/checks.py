"""Sanity checks that keep an evaluation from fooling itself.

Three classic ways a robustness number is wrong: the attack got probabilities
where it expected logits (softmax saturates and gradients vanish), the input
gradients are zero (gradient masking, e.g. a distilled model at T=1), or the
model is stochastic at attack time (dropout left on). Each check returns what
it measured and warns (or raises with `action="raise"`); `check_warnings` turns what
`run_all_checks` measured into the one-line warnings of an evaluation's report. The
checks' warnings and their thresholds live here only.
"""

import warnings

import numpy as np
import tensorflow as tf

from keras_edd.attacks import utils

_ACTIONS = ("warn", "raise", "ignore")
# More than this fraction of exactly-zero input gradients is a gradient-masking warning.
ZERO_GRADIENT_THRESHOLD = 0.5


def _report(message, action):
    utils.check_choice("action", action, _ACTIONS)
    if action == "raise":
        raise ValueError(message)
    if action == "warn":
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def check_logits(model_fn, x, *, action="warn"):
    """Check that `model_fn(x)` looks like logits, not softmax probabilities.

    Returns True when the outputs look like probabilities (the problem case).
    """
    model_fn = utils.as_model_fn(model_fn)
    outputs = model_fn(tf.convert_to_tensor(x, tf.float32))
    is_probabilities = utils.looks_like_probabilities(outputs)
    if is_probabilities:
        _report("model outputs look like probabilities (rows in [0, 1] summing to 1); "
                "the attacks expect logits Z(x): remove the final softmax", action)
    return is_probabilities


def zero_gradient_fraction(model_fn, x, y=None, *, outlier_class=None):
    """Fraction of input-gradient entries of the cross-entropy that are exactly 0.

    A fraction near 1 means gradient-based attacks see nothing: gradient
    masking (e.g. saturated softmax at temperature 1), not robustness.
    """
    model_fn = utils.as_model_fn(model_fn)
    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model_fn(x)
        labels = (utils.predicted_labels(logits, outlier_class) if y is None
                  else utils.prepare_labels(y, x.shape[0], logits.shape[-1]))
        loss = tf.reduce_sum(utils.attack_objective(
            logits, labels, targeted=False, outlier_class=outlier_class))
    grad = tape.gradient(loss, x)
    if grad is None:
        return 1.0
    return float(tf.reduce_mean(tf.cast(tf.equal(grad, 0.0), tf.float32)))


def check_gradient_masking(model_fn, x, y=None, *, threshold=ZERO_GRADIENT_THRESHOLD,
                           outlier_class=None, action="warn"):
    """Warn when more than `threshold` of the input gradients are exactly zero.

    Returns the measured zero fraction.
    """
    utils.check_real("threshold", threshold, low=0.0, high=1.0)
    fraction = zero_gradient_fraction(model_fn, x, y, outlier_class=outlier_class)
    if fraction > threshold:
        _report(f"{fraction:.1%} of the input gradients are exactly zero "
                f"(threshold {threshold:.0%}): likely gradient masking; gradient "
                "attacks will under-report success, try logits-margin losses or "
                "black-box attacks", action)
    return fraction


def check_deterministic(model_fn, x, *, atol=1e-6, action="warn"):
    """Call the model twice on the same x; returns True when the outputs differ.

    A stochastic model at attack time (dropout on, `training=True`) gives the
    attacker noisy gradients and the defender a free random defence.
    """
    model_fn = utils.as_model_fn(model_fn)
    x = tf.convert_to_tensor(x, tf.float32)
    first = np.asarray(model_fn(x))
    second = np.asarray(model_fn(x))
    stochastic = not np.allclose(first, second, atol=atol, rtol=0.0)
    if stochastic:
        _report("model outputs differ between two calls on the same x: the model is "
                "stochastic at attack time (dropout on?); call Keras models with "
                "training=False", action)
    return stochastic


def run_all_checks(model_fn, x, y=None, *, outlier_class=None, action="warn"):
    """Run the three checks; returns a dict of what each measured."""
    return {
        "probabilities": check_logits(model_fn, x, action=action),
        "zero_gradient_fraction": check_gradient_masking(
            model_fn, x, y, outlier_class=outlier_class, action=action),
        "stochastic": check_deterministic(model_fn, x, action=action),
    }


def check_warnings(name, checks):
    """The warnings, one line each, of what `run_all_checks` measured on model `name`
    (`checks`, as saved in results.json; the adaptive run adds
    zero_gradient_fraction_adaptive)."""
    found = []
    if checks["probabilities"]:
        found.append(f"{name}: outputs look like probabilities, not logits")
    if checks["stochastic"]:
        found.append(f"{name}: outputs differ between calls (dropout on?)")
    for key in ("zero_gradient_fraction", "zero_gradient_fraction_adaptive"):
        if checks.get(key, 0.0) > ZERO_GRADIENT_THRESHOLD:
            found.append(f"{name}: {checks[key]:.1%} of input gradients are "
                         f"exactly zero ({key}): likely gradient masking")
    return found
