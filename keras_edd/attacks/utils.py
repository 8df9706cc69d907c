"""Helpers shared by the attacks: argument checks, labels, objectives, norms.

Notation follows Papernot & McDaniel (2017) and Carlini & Wagner (2017):
`Z(x)` are the logits, `y` the label the attacker moves away from, `t` a
target label, `kappa` the confidence margin. On a model with an outlier
class (n real classes plus one "detected" logit at index `outlier_class`) an
untargeted attacker must avoid both `y` and the outlier class.
"""

import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

# The argument checks are shared with the configs; every attack reads them as utils.check_*.
from keras_edd.validation import check_box, check_choice, check_int, check_real  # noqa: F401

# Large finite number used to mask logits out of a max; finite so 0 * it is 0.
_MASK_VALUE = 1e9


def as_model_fn(model):
    """Return a callable `x -> logits` evaluated in inference mode.

    A `keras.Model` (or any Keras layer) is wrapped as
    `lambda x: model(x, training=False)` so dropout is off at attack time; any
    other callable is returned unchanged and must already return logits. The
    wrapper of a model is made once and lives as long as the model: tf.function
    keys a trace on a weak reference to it, so a wrapper made per call would
    die with the call and every later call on the same model would trace again.
    """
    if isinstance(model, keras.layers.Layer):
        wrapper = _WRAPPERS.get(model)
        if wrapper is None:
            wrapper = _WRAPPERS[model] = _InferenceModel(model)
        return wrapper
    if not callable(model):
        raise ValueError(f"model_fn={model!r}: expected a callable x -> logits")
    return model


class _InferenceModel:
    """Hashable wrapper so tf.function reuses traces for the same Keras model.

    It holds the model weakly, so caching it against the model does not keep
    the model alive."""

    def __init__(self, model):
        self._model = weakref.ref(model)

    @property
    def model(self):
        return self._model()

    def __call__(self, x):
        return self.model(x, training=False)

    def __eq__(self, other):
        return isinstance(other, _InferenceModel) and other.model is self.model

    def __hash__(self):
        return hash(("keras_edd_inference", id(self.model)))


_WRAPPERS = weakref.WeakKeyDictionary()


def prepare_inputs(x, clip_min, clip_max):
    """Convert `x` to a float32 tensor and check it is finite and lies in the box.

    NaN must be refused here: min/max ignore it, and the attacks would carry it
    into every pixel of the image through the gradient.
    """
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    if x.shape.rank is None or x.shape.rank < 2:
        raise ValueError(f"x has shape {x.shape}: expected a batch [batch, ...]")
    if x.shape[0] == 0:
        raise ValueError("x is empty: expected at least one example")
    finite = tf.reshape(tf.math.is_finite(x), [x.shape[0], -1])
    if not bool(tf.reduce_all(finite)):
        values = int(tf.size(finite)) - int(tf.math.count_nonzero(finite))
        examples = int(x.shape[0]) - int(tf.math.count_nonzero(tf.reduce_all(finite, axis=1)))
        raise ValueError(f"x contains {values} non-finite value(s) (NaN/inf) in {examples} of "
                         f"{x.shape[0]} examples: inputs must be finite, in "
                         f"[clip_min, clip_max] = [{clip_min}, {clip_max}]")
    low = float(tf.reduce_min(x))
    high = float(tf.reduce_max(x))
    tolerance = 1e-6 * (clip_max - clip_min)
    if low < clip_min - tolerance or high > clip_max + tolerance:
        raise ValueError(f"x spans [{low}, {high}]: allowed range is "
                         f"[clip_min, clip_max] = [{clip_min}, {clip_max}]")
    return tf.clip_by_value(x, clip_min, clip_max)


def check_outlier_class(outlier_class, num_classes):
    """Validate the outlier-class index against the number of logits."""
    if outlier_class is None:
        return None
    outlier_class = check_int("outlier_class", outlier_class, low=0, high=num_classes - 1)
    if num_classes < 3:
        raise ValueError(f"outlier_class={outlier_class}: need at least 2 real classes "
                         f"besides it, the model has {num_classes} logits")
    return outlier_class


def prepare_labels(labels, batch_size, num_classes, name="y"):
    """Integer labels of shape [batch] from integer or one-hot labels.

    Refuses what would be misread silently: fractional labels (astype would truncate
    1.7 to 1) and one-hot rows of another width than the model's `num_classes`.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        if labels.shape[1] != num_classes:
            raise ValueError(f"{name} has shape {labels.shape}: one-hot rows must have exactly "
                             f"the model's {num_classes} columns")
        labels = labels.argmax(axis=1)
    whole = labels.dtype.kind == "f" and np.array_equal(labels, np.round(labels))
    if labels.dtype.kind not in "iu" and not whole:
        raise ValueError(f"{name} holds {labels.dtype} values that are not whole numbers "
                         f"(e.g. {labels.ravel()[:3].tolist()}): expected integer labels in "
                         f"[0, {num_classes - 1}] or [{batch_size}, {num_classes}] one-hot rows")
    if labels.ndim != 1 or labels.shape[0] != batch_size:
        raise ValueError(f"{name} has shape {labels.shape}: expected [{batch_size}] "
                         f"integer labels or [{batch_size}, {num_classes}] one-hot")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} contains {labels.min()}..{labels.max()}: "
                         f"allowed range is [0, {num_classes - 1}]")
    return tf.convert_to_tensor(labels.astype(np.int32))


def predicted_labels(logits, outlier_class=None):
    """argmax of the logits, over the real classes only if there is an outlier class.

    Used for `y=None` (the model's own label, which avoids label leaking). With
    an outlier class the label to move away from is the best *real* class.
    """
    logits = tf.convert_to_tensor(logits)
    if outlier_class is not None:
        logits = logits - _MASK_VALUE * tf.one_hot(outlier_class, tf.shape(logits)[-1],
                                                   dtype=logits.dtype)
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def looks_like_probabilities(outputs, atol=1e-3):
    """True when every row is in [0, 1] and sums to 1 (within `atol`)."""
    outputs = np.asarray(outputs, np.float64)
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        return False
    in_unit = np.all((outputs >= -atol) & (outputs <= 1 + atol))
    sums_to_one = np.allclose(outputs.sum(axis=1), 1.0, atol=atol)
    return bool(in_unit and sums_to_one)


def check_finite_logits(logits):
    """Raise ValueError when a model returned NaN or inf logits (a broken model).

    Run once per attack call, on the first evaluation of the model, never
    inside the compiled attack loops.
    """
    finite = np.isfinite(np.asarray(logits)).reshape(len(logits), -1).all(axis=1)
    if not finite.all():
        raise ValueError(f"model_fn returned non-finite logits (NaN/inf) for "
                         f"{int((~finite).sum())} of {len(finite)} inputs")


def resolve_labels(model_fn, x, y, targeted, outlier_class, *, check_logits=True):
    """Labels for an attack: the given ones, or the model's own prediction.

    Also validates `outlier_class` against the number of logits, refuses
    outlier targets, NaN/inf labels and non-finite logits, and warns when the
    model seems to return probabilities.
    Returns (labels [batch] int32, outlier_class, num_classes).
    """
    if y is not None:
        values = np.asarray(y)
        if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
            what = "target labels" if targeted else "labels"
            raise ValueError(f"y ({what}) contains {int(np.sum(~np.isfinite(values)))} "
                             "non-finite value(s) (NaN/inf): expected integer labels "
                             "or one-hot rows")
    logits = model_fn(x[:16] if y is not None else x)
    check_finite_logits(logits)
    num_classes = int(logits.shape[-1])
    if check_logits and looks_like_probabilities(logits[:16]):
        warnings.warn("model outputs look like probabilities (rows in [0, 1] summing "
                      "to 1); the attacks expect logits Z(x)", RuntimeWarning, stacklevel=3)
    outlier_class = check_outlier_class(outlier_class, num_classes)
    if y is None:
        if targeted:
            raise ValueError("targeted=True needs target labels y, got y=None")
        return predicted_labels(logits, outlier_class), outlier_class, num_classes
    labels = prepare_labels(y, x.shape[0], num_classes)
    if targeted and outlier_class is not None and bool(tf.reduce_any(labels == outlier_class)):
        raise ValueError(f"targets include outlier_class={outlier_class}: targets must "
                         "be real classes")
    return labels, outlier_class, num_classes


# --------------------------------------------------------------------------
# Objectives. Each returns a per-example value that the attacker MAXIMISES.

def avoided_mask(labels, num_classes, outlier_class=None, dtype=tf.float32):
    """One-hot of the classes an untargeted attacker must avoid: {y} or {y, out}."""
    mask = tf.one_hot(labels, num_classes, dtype=dtype)
    if outlier_class is not None:
        mask = tf.maximum(mask, tf.one_hot(outlier_class, num_classes, dtype=dtype)[None])
    return mask


def real_and_other(logits, labels, *, targeted, outlier_class=None):
    """The two logits compared by the margin objectives.

    Untargeted: real = max(Z_y, Z_out) (Z_y without an outlier class), other =
    max of the remaining classes; the attack succeeds with margin kappa when
    other - real >= kappa. Targeted (target t): real = Z_t, other =
    max_{i != t} Z_i (the outlier logit included); success when
    real - other >= kappa.
    Returns (real, other), each of shape [batch].
    """
    num_classes = tf.shape(logits)[-1]
    if targeted:
        mask = tf.one_hot(labels, num_classes, dtype=logits.dtype)
    else:
        mask = avoided_mask(labels, num_classes, outlier_class, logits.dtype)
    real = tf.reduce_max(logits - _MASK_VALUE * (1.0 - mask), axis=-1)
    other = tf.reduce_max(logits - _MASK_VALUE * mask, axis=-1)
    return real, other


def attack_margin(logits, labels, *, targeted, outlier_class=None):
    """How far the attack has got, in logits: > 0 means success at kappa = 0."""
    real, other = real_and_other(logits, labels, targeted=targeted, outlier_class=outlier_class)
    return real - other if targeted else other - real


def attack_success(logits, labels, *, targeted, outlier_class=None, confidence=0.0):
    """Success with margin kappa=`confidence`: margin >= kappa and margin > 0."""
    margin = attack_margin(logits, labels, targeted=targeted, outlier_class=outlier_class)
    return tf.logical_and(margin >= confidence, margin > 0.0)


def attack_objective(logits, labels, *, targeted, outlier_class=None, loss="ce"):
    """Per-example objective the attacker ascends (FGSM, PGD).

    loss="ce": untargeted, the cross-entropy against the avoided set,
    -log(p_y + p_out), which is the usual CE(y) without an outlier class;
    targeted, -CE(t). loss="cw": the logit margin of `attack_margin`.
    """
    if loss == "cw":
        return attack_margin(logits, labels, targeted=targeted, outlier_class=outlier_class)
    if targeted:
        return -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    mask = avoided_mask(labels, tf.shape(logits)[-1], outlier_class, logits.dtype)
    avoided = tf.reduce_logsumexp(logits - _MASK_VALUE * (1.0 - mask), axis=-1)
    return tf.reduce_logsumexp(logits, axis=-1) - avoided


def random_targets(labels, num_classes, *, outlier_class=None, seed=None):
    """Uniform random targets t != y (and != the outlier class), numpy int32."""
    labels = np.asarray(labels).astype(np.int64)
    rng = np.random.default_rng(seed)
    candidates = [c for c in range(num_classes) if c != outlier_class]
    targets = np.empty(labels.shape, np.int32)
    for i, label in enumerate(labels):
        choices = [c for c in candidates if c != label]
        targets[i] = choices[rng.integers(len(choices))]
    return targets


def perturbation_norms(x, x_adv):
    """Per-example L0 (number of changed features), L2 and L_inf of x_adv - x."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    delta = np.asarray(x_adv, np.float64).reshape(len(x), -1) - x
    return {
        "l0": np.count_nonzero(np.abs(delta) > 1e-6, axis=1),
        "l2": np.sqrt(np.sum(delta ** 2, axis=1)),
        "linf": np.max(np.abs(delta), axis=1) if delta.shape[1] else np.zeros(len(x)),
    }


def loop_until_done(state, nb_iter, step):
    """A per-sample early-stopping loop for compiled iterative attacks.

    `state` is a dict of tensors whose first axis is the batch, with a boolean "done"
    [batch]. For k = 0, 1, ... while k < nb_iter and some sample is not done,
    `step(k, active, s)` gets the indices `active` [m, 1] of the samples not done and
    `s`, their rows of every state tensor, and returns the updated rows (the same keys),
    which are scattered back. Work shrinks as samples finish. Returns the final state.
    """
    def condition(k, state):
        return tf.logical_and(k < nb_iter, tf.logical_not(tf.reduce_all(state["done"])))

    def body(k, state):
        active = tf.where(tf.logical_not(state["done"]))
        rows = step(k, active, {key: tf.gather_nd(value, active) for key, value in state.items()})
        return k + 1, {key: tf.tensor_scatter_nd_update(value, active, rows[key])
                       for key, value in state.items()}

    return tf.while_loop(condition, body, (tf.constant(0), state))[1]
