"""How `evaluate` and `robustness_curve` judge the points an attack returns: one rule.

  logits          the model's logits on a batch of points, batch by batch (numpy)
  norms           ||delta||_norm per example (float64)
  within          whether a norm counts as inside a radius: at most
                  eps * (1 + 1e-6) + NORM_TOLERANCE, so that float32 rounding of a
                  point on the sphere does not turn a success into a failure
  attacker_wins   the untargeted success at kappa = 0, outlier-aware
  sanity_checks   AutoAttack's checks (logits, zero gradients, determinism), warned
  warn            a RuntimeWarning that is also kept for the result's `warnings`
"""

import warnings

import numpy as np
import tensorflow as tf

from keras_edd.attacks import checks

# A returned point counts when its norm is at most eps * (1 + 1e-6) + NORM_TOLERANCE.
NORM_TOLERANCE = 1e-5
# Digits the sanity checks look at (the first ones).
CHECK_EXAMPLES = 100


def warn(issued, message, stacklevel=3):
    issued.append(message)
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)


def logits(model_fn, x, batch_size):
    return np.concatenate([np.asarray(model_fn(tf.constant(x[start:start + batch_size])),
                                      np.float32)
                           for start in range(0, len(x), batch_size)], axis=0)


def norms(delta, norm):
    flat = np.asarray(delta, np.float64).reshape(len(delta), -1)
    if norm == "linf":
        return np.abs(flat).max(axis=1) if flat.shape[1] else np.zeros(len(flat))
    return np.sqrt((flat ** 2).sum(axis=1))


def within(values, eps):
    """values <= eps, with the tolerance of the module docstring."""
    return np.asarray(values) <= eps * (1.0 + 1e-6) + NORM_TOLERANCE


def in_box(points):
    """Per example: every value in [0, 1] (to 1e-6)."""
    flat = np.asarray(points).reshape(len(points), -1)
    return (flat.min(axis=1) >= -1e-6) & (flat.max(axis=1) <= 1.0 + 1e-6)


def attacker_wins(logits, y, outlier_class):
    """Untargeted success at kappa = 0, as the attacks judge it (utils.attack_success):
    max_{i not in avoided} Z_i > max_{i in avoided} Z_i, avoided = {y} or {y, out}."""
    avoided = np.zeros(logits.shape, bool)
    avoided[np.arange(len(y)), y] = True
    if outlier_class is not None:
        avoided[:, outlier_class] = True
    real = np.where(avoided, logits, -np.inf).max(axis=1)
    other = np.where(avoided, -np.inf, logits).max(axis=1)
    return other > real


def sanity_checks(model_fn, x, y, outlier_class, issued, eot=False):
    """AutoAttack's checks, first: logits not probabilities, gradients, determinism
    (`eot`: the attacks average over the model's randomness, attacks="rand")."""
    measured = {
        "probabilities": bool(checks.check_logits(model_fn, x, action="ignore")),
        "zero_gradient_fraction": float(checks.zero_gradient_fraction(
            model_fn, x, y, outlier_class=outlier_class)),
        "stochastic": bool(checks.check_deterministic(model_fn, x, action="ignore")),
    }
    if measured["probabilities"]:
        warn(issued, "check: the model outputs look like probabilities (rows in [0, 1] "
                     "summing to 1); the attacks expect logits: remove the final softmax", 4)
    if measured["zero_gradient_fraction"] > 0.5:
        warn(issued, f"check: {measured['zero_gradient_fraction']:.1%} of the input gradients "
                     "are exactly zero: likely gradient masking; gradient attacks under-report, "
                     "trust the gradient-free attack (square) and the logit-margin losses", 4)
    if measured["stochastic"] and not eot:
        warn(issued, "check: the model's outputs differ between two calls on the same x (a "
                     "stochastic model, e.g. dropout on): plain attacks are unreliable on it; "
                     "call Keras models with training=False, or attack the expectation over "
                     "the randomness with attacks='rand' (EOT, Athalye et al. 2018; "
                     "AutoAttack's version='rand')", 4)
    if eot and not measured["stochastic"]:
        warn(issued, "check: attacks='rand' averages over the model's randomness, but its "
                     "outputs are the same on two calls (a deterministic model): EOT only "
                     "costs time here; use attacks='standard'", 4)
    return measured
