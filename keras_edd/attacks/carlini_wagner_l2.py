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

Cost. Abort-early (Carlini's rule) stops a binary-search step when the loss has
not fallen by 0.01% over the last max_iterations // 10 iterations.
`early_exit="sample"` (default) applies the rule to each sample's own loss, and
the work is organised in `batch_size` slots inside one compiled loop: a slot
holds one input through all of its binary-search steps; when the input is done
the slot takes the next unstarted input, so the batch stays full and the cost
follows each sample's own iteration counts. Every input's trajectory depends
only on itself (the model runs in inference mode), so the result does not
depend on `batch_size` or on which slot an input lands in. The optimiser state
(AdaDelta, or Adam with a per-slot step count for its bias correction) is
plain tensor math per slot, equal to Keras' update rules.
`early_exit="batch"` is the earlier behaviour: the whole batch runs each
binary-search step until the summed loss stalls, so it waits for its slowest
sample (kept to reproduce earlier numbers).

State. All variables and optimiser state are created afresh in every call; in
batch mode w and the Keras optimizer are reset with `assign` between
binary-search steps, so the compiled inner loop is traced once per call.
"""

import collections
import itertools

import keras
import numpy as np
import tensorflow as tf

from keras_edd.attack_settings import CW_LEARNING_RATES, CwEarlyExit
from keras_edd.attacks import utils
from keras_edd.validation import choices
from keras_edd.attacks.cw_optimizers import adadelta_update, adam_update, make_optimizer

# Default learning rates by optimizer (measured: see keras_edd.attack_settings).
DEFAULT_LEARNING_RATES = CW_LEARNING_RATES
EARLY_EXITS = choices(CwEarlyExit)
# The `progress` callbacks of the calls running now, by call number. The compiled loop gets
# its call's number as a tensor and reports through tf.py_function, so its trace does not
# depend on the callback, and calls from several threads each reach their own.
_RUNNING = {}
_CALL_NUMBERS = itertools.count(1)


def _report_finished(call, count):
    progress = _RUNNING.get(int(call))
    if progress is not None and int(count):
        progress(int(count))
    return np.int32(0)


_ARCTANH_SHRINK = 0.999999
_UPPER_BOUND_INIT = 1e10

CWResult = collections.namedtuple("CWResult", ["x_adv", "success", "l2", "iterations"])
CWResult.__doc__ = """Carlini-Wagner L2 result with per-input details.

x_adv: float32 tensor shaped like x. success: bool [batch], an example with
margin >= kappa was found (attack_failed = ~success). l2: float [batch], the
L2 distance ||x_adv - x||_2 of the best success (inf where none). iterations:
int [batch, binary_search_steps], optimiser iterations of each input in each
binary-search step (in batch mode the batch's count).
"""


def carlini_wagner_l2(model_fn, x, *, y=None, targeted=False, confidence=0.0,
                      optimizer="adam", learning_rate=None, binary_search_steps=5,
                      max_iterations=1000, initial_const=1e-2, abort_early=True,
                      clip_min=0.0, clip_max=1.0, outlier_class=None,
                      early_exit="sample", batch_size=128, return_details=False,
                      progress=None):
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
      abort_early: stop a binary-search step when the loss has not decreased
        by 0.01% over the last max_iterations // 10 iterations.
      clip_min, clip_max: the input box.
      outlier_class: index of the "detected" logit, see the module docstring.
      early_exit: "sample" (each input's own loss decides, the batch is
        refilled with new inputs) or "batch" (the summed loss of all of x
        decides; the earlier behaviour).
      batch_size: inputs optimised at once with early_exit="sample" (slots);
        "batch" runs all of x at once.
      return_details: return a CWResult (x_adv, success, l2, iterations)
        instead of x_adv alone.
      progress: optional callable, called with the number of inputs that have
        just finished all their binary-search steps (progress bars over one
        long call); with early_exit="batch", once with len(x) at the end.
    Defaults: Adam, lr 0.01, 5 binary-search steps, 1000 iterations, c_0 = 0.01,
    kappa = 0, abort_early (cleverhans v4's defaults apart from lr).
    """
    confidence = utils.check_real("confidence", confidence, low=0.0)
    utils.check_choice("optimizer", optimizer, tuple(DEFAULT_LEARNING_RATES))
    utils.check_choice("early_exit", early_exit, EARLY_EXITS)
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES[optimizer]
    learning_rate = utils.check_real("learning_rate", learning_rate, low=0.0,
                                     low_inclusive=False)
    binary_search_steps = utils.check_int("binary_search_steps", binary_search_steps, low=1)
    max_iterations = utils.check_int("max_iterations", max_iterations, low=1)
    initial_const = utils.check_real("initial_const", initial_const, low=0.0,
                                     low_inclusive=False)
    batch_size = utils.check_int("batch_size", batch_size, low=1)
    clip_min, clip_max = utils.check_box(clip_min, clip_max)
    model_fn = utils.as_model_fn(model_fn)
    x = utils.prepare_inputs(x, clip_min, clip_max)
    labels, outlier_class, _ = utils.resolve_labels(model_fn, x, y, targeted, outlier_class)
    settings = dict(targeted=bool(targeted), confidence=confidence, optimizer=optimizer,
                    learning_rate=learning_rate, binary_search_steps=binary_search_steps,
                    max_iterations=max_iterations, initial_const=initial_const,
                    abort_early=bool(abort_early), clip_min=clip_min, clip_max=clip_max,
                    outlier_class=outlier_class)
    if early_exit == "batch":
        x_adv, squared_l2, iterations = _batch_search(model_fn, x, labels, **settings)
        if progress is not None:
            progress(int(x.shape[0]))
    else:
        slots = min(batch_size, int(x.shape[0]))
        call = next(_CALL_NUMBERS)
        if progress is not None:
            _RUNNING[call] = progress
        try:
            x_adv, squared_l2, iterations = (
                value.numpy() for value in _sample_search(
                    model_fn, x, labels, tf.constant(call, tf.int64), slots=slots,
                    **dict(settings, **{key: tf.constant(settings[key], tf.float32) for key in
                                        ("confidence", "learning_rate", "initial_const")})))
        finally:
            _RUNNING.pop(call, None)
        x_adv = tf.convert_to_tensor(x_adv)
    if not return_details:
        return x_adv
    success = np.isfinite(squared_l2)
    return CWResult(x_adv, success, np.sqrt(squared_l2.astype(np.float64)),
                    iterations.astype(np.int64))


def _tanh_space(x, clip_min, clip_max):
    mid = (clip_max + clip_min) / 2.0
    half_range = (clip_max - clip_min) / 2.0
    return tf.atanh((x - mid) / half_range * _ARCTANH_SHRINK), mid, half_range


def _margin_loss_terms(logits, labels, targeted, outlier_class, confidence):
    real, other = utils.real_and_other(logits, labels, targeted=targeted,
                                       outlier_class=outlier_class)
    margin_term = (other - real) if targeted else (real - other)
    return tf.maximum(margin_term, -confidence)


@tf.function
def _sample_search(model_fn, x, labels, call, *, slots, targeted, confidence, optimizer,
                   learning_rate, binary_search_steps, max_iterations, initial_const,
                   abort_early, clip_min, clip_max, outlier_class):
    """All binary-search steps of every input, `slots` inputs at a time.

    Per slot: the input index (-1 = idle), its c, bounds, step index, its best
    squared L2 and x' so far, the iteration count and abort-early reference of
    the running step, w and the optimiser state. Each loop iteration runs one
    optimiser step on the busy slots only. Returns (x_adv, best squared L2 [n]
    with inf = no success, iterations [n, binary_search_steps]).
    """
    n = tf.shape(x)[0]
    image_shape = tf.shape(x)[1:]
    x_flat = tf.reshape(x, [n, -1])
    features = x_flat.shape[1]
    x_tanh, mid, half_range = _tanh_space(x_flat, clip_min, clip_max)
    check_every = max(max_iterations // 10, 1)
    steps = binary_search_steps
    zeros = tf.zeros([slots, features])
    slot_state = dict(
        digit=tf.range(slots, dtype=tf.int32),
        const=tf.fill([slots], initial_const), lower=tf.zeros([slots]),
        upper=tf.fill([slots], _UPPER_BOUND_INIT), step=tf.zeros([slots], tf.int32),
        best_l2=tf.fill([slots], np.inf), best_x=zeros,
        iterations=tf.zeros([slots, steps], tf.int32),
        iteration=tf.zeros([slots], tf.int32), previous=tf.fill([slots], np.inf),
        step_success=tf.zeros([slots], tf.bool),
        w=zeros, state_1=zeros, state_2=zeros)
    output = dict(x_adv=x_flat, best_l2=tf.fill([n], np.inf),
                  iterations=tf.zeros([n, steps], tf.int32))
    next_input = tf.constant(slots, tf.int32)

    def condition(state, output, next_input):
        return tf.reduce_any(state["digit"] >= 0)

    def body(state, output, next_input):
        busy = tf.where(state["digit"] >= 0)  # [busy, 1]
        s = {key: tf.gather_nd(value, busy) for key, value in state.items()}
        x_own = tf.gather(x_flat, s["digit"])
        with tf.GradientTape() as tape:
            tape.watch(s["w"])
            x_new = tf.tanh(s["w"] + tf.gather(x_tanh, s["digit"])) * half_range + mid
            logits = model_fn(tf.reshape(x_new, tf.concat([[-1], image_shape], 0)))
            l2 = tf.reduce_sum(tf.square(x_new - x_own), axis=1)
            own_labels = tf.gather(labels, s["digit"])
            margin_term = _margin_loss_terms(logits, own_labels, targeted, outlier_class,
                                             confidence)
            loss = l2 + s["const"] * margin_term
            total_loss = tf.reduce_sum(loss)
        grad = tape.gradient(total_loss, s["w"])
        success = utils.attack_success(logits, own_labels, targeted=targeted,
                                       outlier_class=outlier_class, confidence=confidence)
        improved = tf.logical_and(success, l2 < s["best_l2"])
        s["best_l2"] = tf.where(improved, l2, s["best_l2"])
        s["best_x"] = tf.where(improved[:, None], x_new, s["best_x"])
        s["step_success"] = tf.logical_or(s["step_success"], success)
        iteration = s["iteration"] + 1
        if optimizer == "adam":
            s["w"], s["state_1"], s["state_2"] = adam_update(
                s["w"], grad, s["state_1"], s["state_2"], iteration, learning_rate)
        else:
            s["w"], s["state_1"], s["state_2"] = adadelta_update(
                s["w"], grad, s["state_1"], s["state_2"], learning_rate)
        if abort_early:
            check = tf.equal(s["iteration"] % check_every, 0)
            stalled = tf.logical_and(check, loss > s["previous"] * 0.9999)
            s["previous"] = tf.where(check, loss, s["previous"])
        else:
            stalled = tf.zeros_like(success)
        s["iteration"] = iteration
        ended = tf.logical_or(stalled, iteration >= max_iterations)
        _end_search_steps(s, ended, iteration, steps)
        state = {key: tf.tensor_scatter_nd_update(state[key], busy, s[key]) for key in state}
        return _refill_slots(state, output, next_input, x_flat, n, steps, initial_const,
                             call)

    _, output, _ = tf.while_loop(condition, body, (slot_state, output, next_input))
    return tf.reshape(output["x_adv"], tf.shape(x)), output["best_l2"], output["iterations"]


def _reset_rows(values, restart, fill):
    """values with the rows where `restart` set to `fill`."""
    mask = tf.reshape(restart, [-1] + [1] * (values.shape.rank - 1))
    return tf.where(mask, tf.cast(fill, values.dtype), values)


def _end_search_steps(s, ended, iteration, steps):
    """Binary search over c for the busy slots whose step ended (Carlini's rule): the
    bounds and the next c, the step's iteration count, and fresh optimiser state.
    Updates the slot dict `s` (rows = busy slots) in place."""
    succeeded = s["step_success"]
    const = s["const"]
    upper = tf.where(succeeded, tf.minimum(s["upper"], const), s["upper"])
    lower = tf.where(succeeded, s["lower"], tf.maximum(s["lower"], const))
    next_const = tf.where(upper < _UPPER_BOUND_INIT / 10, (lower + upper) / 2.0,
                          tf.where(succeeded, const, const * 10.0))
    s["upper"] = tf.where(ended, upper, s["upper"])
    s["lower"] = tf.where(ended, lower, s["lower"])
    s["const"] = tf.where(ended, next_const, const)
    s["iterations"] += (tf.one_hot(s["step"], steps, dtype=tf.int32)
                        * tf.where(ended, iteration, 0)[:, None])
    s["step"] += tf.cast(ended, tf.int32)
    for key, fill in (("iteration", 0), ("previous", np.inf), ("step_success", False),
                      ("w", 0.0), ("state_1", 0.0), ("state_2", 0.0)):
        s[key] = _reset_rows(s[key], ended, fill)


def _refill_slots(state, output, next_input, x_flat, n, steps, initial_const, call):
    """Inputs done with every step hand in their result (their best x', else x); each
    freed slot takes the next input (-1 = idle once all n are taken). Returns the loop
    variables (state, output, next_input); `call` numbers the running call, whose
    progress callback hears of the finished inputs."""
    finished = tf.logical_and(state["digit"] >= 0, state["step"] >= steps)
    done = tf.where(finished)
    done_digit = tf.gather_nd(state["digit"], done)
    found = tf.gather_nd(state["best_l2"], done)
    result_x = tf.where(tf.math.is_finite(found)[:, None],
                        tf.gather_nd(state["best_x"], done),
                        tf.gather(x_flat, done_digit))
    output = dict(
        x_adv=tf.tensor_scatter_nd_update(output["x_adv"], done_digit[:, None], result_x),
        best_l2=tf.tensor_scatter_nd_update(output["best_l2"], done_digit[:, None], found),
        iterations=tf.tensor_scatter_nd_update(output["iterations"], done_digit[:, None],
                                               tf.gather_nd(state["iterations"], done)))
    rank = tf.cumsum(tf.cast(finished, tf.int32), exclusive=True)
    incoming = tf.where(next_input + rank < n, next_input + rank, -1)
    state["digit"] = tf.where(finished, incoming, state["digit"])
    for key, fill in (("const", initial_const), ("lower", 0.0),
                      ("upper", _UPPER_BOUND_INIT), ("step", 0), ("best_l2", np.inf),
                      ("iterations", 0)):
        state[key] = _reset_rows(state[key], finished, fill)
    finished_count = tf.reduce_sum(tf.cast(finished, tf.int32))
    reported = tf.ensure_shape(
        tf.py_function(_report_finished, [call, finished_count], tf.int32), [])
    next_input += finished_count + 0 * reported  # keeps the report in the loop
    return state, output, next_input


def _batch_search(model_fn, x, labels, *, targeted, confidence, optimizer, learning_rate,
                  binary_search_steps, max_iterations, initial_const, abort_early,
                  clip_min, clip_max, outlier_class):
    """early_exit="batch": each binary-search step runs the whole batch until the
    summed loss stalls. Returns (x_adv, best squared L2, iterations) as numpy
    except x_adv."""
    batch = int(x.shape[0])
    x_tanh, mid, half_range = _tanh_space(x, clip_min, clip_max)
    reduce_axes = list(range(1, x.shape.rank))

    w = keras.Variable(tf.zeros_like(x), name="cw_perturbation")
    opt = make_optimizer(optimizer, learning_rate)
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
                margin_term = _margin_loss_terms(logits, labels, targeted, outlier_class,
                                                 confidence)
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
        return best_l2, best_x, iteration

    const = np.full(batch, initial_const, np.float32)
    lower = np.zeros(batch, np.float32)
    upper = np.full(batch, _UPPER_BOUND_INIT, np.float32)
    overall_l2 = np.full(batch, np.inf, np.float32)
    overall_x = x.numpy()
    iterations = np.zeros((batch, binary_search_steps), np.int64)
    for step in range(binary_search_steps):
        step_l2, step_x, step_iterations = run_step(tf.constant(const))
        iterations[:, step] = int(step_iterations)
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
    return tf.convert_to_tensor(overall_x), overall_l2, iterations
