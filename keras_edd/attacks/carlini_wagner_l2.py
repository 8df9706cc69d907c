"""Carlini & Wagner (2017) L2 attack with a per-sample binary search over c.

Change of variables x' = tanh(w + arctanh(x_scaled)) * half_range + mid, so the
box constraint holds for any w. Per sample the objective is

    ||x' - x||_2^2 + c * max(Z_y - max_{i != y} Z_i, -kappa)       (untargeted)
    ||x' - x||_2^2 + c * max(max_{i != t} Z_i - Z_t, -kappa)       (targeted)

(with an outlier class, untargeted uses max(Z_y, Z_out) - max_{i not in {y,out}}
Z_i, so landing in the "detected" class is not a success). The constant c is
found by binary search per sample as in Carlini's reference code: after a
successful run the upper bound is c and c = (lower + upper) / 2; after a failure
the lower bound is c and c is bisected if an upper bound exists, else
multiplied by 10. Of all iterates that succeed with margin >= kappa the one with
the smallest L2 distance is returned; samples that never succeed return x.

The paper's "AdaDelta (kappa = 7)" attack is this attack with
`optimizer="adadelta"`, `confidence=7`.

State. The perturbation variable w and the Keras optimizer are created afresh
in every call (a Keras 3 optimizer binds to the variables of its first
`apply`). Between binary-search steps w and the optimizer variables are reset
to their initial values with `assign`, so the compiled inner loop is traced
once per call.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_edd.attacks import utils

# Default learning rates, measured on an MNIST CNN at kappa = 7, 5 binary-search
# steps, c_0 = 0.01: Adam lr 0.01 (Carlini's) succeeds on 100% with the default
# 1000 iterations (1% with 100). AdaDelta (rho 0.95, epsilon 1e-6 as in Zeiler
# 2012) moves tanh-saturated pixels very slowly: lr 1.0 gave 57% after 1000
# iterations, lr 10 gave 97%, hence 10.
DEFAULT_LEARNING_RATES = {"adam": 1e-2, "adadelta": 10.0}
_ARCTANH_SHRINK = 0.999999
_UPPER_BOUND_INIT = 1e10


def _make_optimizer(name, learning_rate):
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    return keras.optimizers.Adadelta(learning_rate=learning_rate, rho=0.95, epsilon=1e-6)


def carlini_wagner_l2(model_fn, x, *, y=None, targeted=False, confidence=0.0,
                      optimizer="adam", learning_rate=None, binary_search_steps=5,
                      max_iterations=1000, initial_const=1e-2, abort_early=True,
                      clip_min=0.0, clip_max=1.0, outlier_class=None):
    """Carlini-Wagner L2 attack; returns x_adv shaped like x.

    Args:
      model_fn: callable x -> logits Z (a Keras model is called with training=False).
        Must return logits: the margin is measured in logits.
      x: batch of inputs in [clip_min, clip_max].
      y: labels to avoid (untargeted) or targets t (targeted); None = the
        model's prediction (untargeted only).
      targeted: reach y instead of leaving it.
      confidence: kappa >= 0, the logit margin a success must reach.
      optimizer: "adam" (default, Carlini's choice) or "adadelta" (the paper's).
      learning_rate: None = 0.01 for Adam, 10.0 for AdaDelta (see
        DEFAULT_LEARNING_RATES; with only ~100 iterations use ~0.1 for Adam).
      binary_search_steps: steps of the per-sample search over c (>= 1).
      max_iterations: optimiser steps per binary-search step (>= 1).
      initial_const: c_0 > 0.
      abort_early: stop a binary-search step when the batch loss has not
        decreased by 0.01% over the last max_iterations // 10 iterations.
      clip_min, clip_max: the input box.
      outlier_class: index of the "detected" logit, see the module docstring.
    Defaults: Adam, lr 0.01, 5 binary-search steps, 1000 iterations, c_0 = 0.01,
    kappa = 0, abort_early (cleverhans v4's defaults apart from lr).
    """
    confidence = utils.check_real("confidence", confidence, low=0.0)
    utils.check_choice("optimizer", optimizer, tuple(DEFAULT_LEARNING_RATES))
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES[optimizer]
    learning_rate = utils.check_real("learning_rate", learning_rate, low=0.0,
                                     low_inclusive=False)
    binary_search_steps = utils.check_int("binary_search_steps", binary_search_steps, low=1)
    max_iterations = utils.check_int("max_iterations", max_iterations, low=1)
    initial_const = utils.check_real("initial_const", initial_const, low=0.0,
                                     low_inclusive=False)
    clip_min, clip_max = utils.check_box(clip_min, clip_max)
    model_fn = utils.as_model_fn(model_fn)
    x = utils.prepare_inputs(x, clip_min, clip_max)
    labels, outlier_class, _ = utils.resolve_labels(model_fn, x, y, targeted, outlier_class)
    targeted = bool(targeted)
    batch = int(x.shape[0])
    mid = (clip_max + clip_min) / 2.0
    half_range = (clip_max - clip_min) / 2.0
    x_tanh = tf.atanh((x - mid) / half_range * _ARCTANH_SHRINK)
    reduce_axes = list(range(1, x.shape.rank))

    w = keras.Variable(tf.zeros_like(x), name="cw_perturbation")
    opt = _make_optimizer(optimizer, learning_rate)
    opt.build([w])
    initial_state = [tf.constant(v.numpy()) for v in opt.variables]
    check_every = max(max_iterations // 10, 1)

    @tf.function
    def run_step(const):
        """One binary-search step: optimise w from 0 for this c."""
        w.assign(tf.zeros_like(x))
        for variable, value in zip(opt.variables, initial_state):
            variable.assign(value)
        best_l2 = tf.fill([batch], np.inf)
        best_x = x
        previous = tf.constant(np.inf)
        iteration = tf.constant(0)
        stop = tf.constant(False)
        while iteration < max_iterations and not stop:
            with tf.GradientTape() as tape:
                x_new = tf.tanh(w + x_tanh) * half_range + mid
                logits = model_fn(x_new)
                l2 = tf.reduce_sum(tf.square(x_new - x), axis=reduce_axes)
                real, other = utils.real_and_other(logits, labels, targeted=targeted,
                                                   outlier_class=outlier_class)
                margin_term = (other - real) if targeted else (real - other)
                margin_term = tf.maximum(margin_term, -confidence)
                loss = tf.reduce_sum(l2 + const * margin_term)
            grads = tape.gradient(loss, [w])
            success = utils.attack_success(logits, labels, targeted=targeted,
                                           outlier_class=outlier_class,
                                           confidence=confidence)
            improved = tf.logical_and(success, l2 < best_l2)
            best_l2 = tf.where(improved, l2, best_l2)
            best_x = tf.where(tf.reshape(improved, [-1] + [1] * len(reduce_axes)),
                              x_new, best_x)
            opt.apply(grads, [w])
            if abort_early and iteration % check_every == 0:
                stop = loss > previous * 0.9999  # never at iteration 0: previous = inf
                previous = loss
            iteration += 1
        return best_l2, best_x

    const = np.full(batch, initial_const, np.float32)
    lower = np.zeros(batch, np.float32)
    upper = np.full(batch, _UPPER_BOUND_INIT, np.float32)
    overall_l2 = np.full(batch, np.inf, np.float32)
    overall_x = x.numpy()
    for _ in range(binary_search_steps):
        step_l2, step_x = run_step(tf.constant(const))
        step_l2 = step_l2.numpy()
        succeeded = np.isfinite(step_l2)
        better = step_l2 < overall_l2
        overall_l2 = np.where(better, step_l2, overall_l2)
        overall_x[better] = step_x.numpy()[better]
        upper = np.where(succeeded, np.minimum(upper, const), upper)
        lower = np.where(succeeded, lower, np.maximum(lower, const))
        has_upper = upper < _UPPER_BOUND_INIT / 10
        const = np.where(has_upper, (lower + upper) / 2.0,
                         np.where(succeeded, const, const * 10.0)).astype(np.float32)
    return tf.convert_to_tensor(overall_x)
