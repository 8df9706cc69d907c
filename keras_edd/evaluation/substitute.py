"""Jacobian-augmented substitute: the black-box attacker's own model ("surrogate J").

Papernot, McDaniel, Goodfellow, Jha, Celik & Swami (2017), "Practical Black-Box
Attacks against Machine Learning", Algorithm 1. The attacker sees only the
labels O(x) = argmax f(x) that the target f (the oracle) returns. Starting from
a small set S_0 of inputs (150 test inputs that are never attacked), repeat for
rho = 0 .. rounds:

    train the substitute F on {(x, O(x)) : x in S_rho}                (one-hot, T = 1)
    S_{rho+1} = S_rho  U  {clip(x + lambda_rho * sign(dF(x)[O(x)] / dx)) : x in S_rho}

and query O only on the new points. The set doubles each round, so after
`rounds` augmentations it holds |S_0| * 2**rounds points (150 -> 9,600 for
rounds = 6) and the oracle has answered exactly that many queries. S is a set:
a new point identical to one already labelled (x is re-augmented every round,
and a model that barely changed can map it to the same point again) is neither
queried nor added, and is counted in "duplicates_dropped"; then the set grows
by less than 2x and the query count still equals the number of distinct points.
lambda_rho = lambda, or with the paper's periodic step size
lambda_rho = lambda * (-1)**floor(rho / tau) when `tau` is given.

Choices, and why:
- Training continues on the same model each round (weights kept, a fresh Adam
  per round), as in the cleverhans `mnist_blackbox` tutorial that accompanies
  the paper (`train(..., init_all=False)` on one `model_sub`). The last training
  is on the full set S_rounds, as in the paper's table of substitute epochs
  rho = 0 .. 6 (the tutorial stops one augmentation earlier).
- Outlier class. The threat model gives the attacker the oracle's output label
  and nothing else; for a target with an outlier class n that label can be n
  ("rejected"). It is an answer the attacker observes like any other, so it is
  kept: the substitute gets n + 1 outputs and learns where the target rejects.
  Dropping those answers would discard information the attacker paid a query
  for, and would make the substitute blind to the region the defense guards.
- The substitute is the same family as the targets (`models.cleverhans_cnn`
  unless `model_fn` says otherwise) and is seeded with `keras.utils.set_random_seed`.
"""

import math
import time
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_edd import config, data, models
from keras_edd.defense import training

JACOBIAN_BATCH_SIZE = 1000


def agreement(substitute_predictions, target_predictions):
    """Fraction of inputs on which substitute and target predict the same class."""
    a = np.asarray(substitute_predictions).reshape(-1)
    b = np.asarray(target_predictions).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"{a.size} substitute predictions but {b.size} target predictions")
    if a.size == 0:
        raise ValueError("agreement of zero predictions is undefined")
    return float(np.mean(a == b))


def label_oracle(model, batch_size=models.EVAL_BATCH_SIZE):
    """The black-box view of a model: images -> argmax labels (no scores)."""
    def oracle(images):
        return models.predict_logits(model, images, batch_size).argmax(axis=1)
    return oracle


def jacobian_augment(model, x, labels, lam, *, clip_min=0.0, clip_max=1.0,
                     batch_size=JACOBIAN_BATCH_SIZE):
    """clip(x + lam * sign(dZ(x)[label] / dx)): one Jacobian-based augmentation step.

    Args:
      model: the substitute (logits Z), called with training=False.
      x: float inputs in [clip_min, clip_max].
      labels: [len(x)] oracle labels O(x): the logit whose gradient is followed.
      lam: the step lambda (a negative lam steps the other way, for tau).
    Returns:
      float32 array shaped like x.
    """
    x = np.asarray(x, np.float32)
    labels = np.asarray(labels, np.int32).reshape(-1)
    if len(labels) != len(x):
        raise ValueError(f"{len(labels)} labels for {len(x)} inputs")
    step = _augment_step(model)
    out = [step(x[i:i + batch_size], labels[i:i + batch_size], np.float32(lam),
                np.float32(clip_min), np.float32(clip_max)).numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out, axis=0) if out else x.copy()


_AUGMENT_STEPS = weakref.WeakKeyDictionary()


def _augment_step(model):
    """One compiled augmentation function per model (traced once per input shape)."""
    if model not in _AUGMENT_STEPS:
        @tf.function(reduce_retracing=True)
        def step(xb, yb, lam, clip_min, clip_max):
            with tf.GradientTape() as tape:
                tape.watch(xb)
                chosen = tf.gather(model(xb, training=False), yb, axis=1, batch_dims=1)
            grad = tape.gradient(chosen, xb)
            return tf.clip_by_value(xb + lam * tf.sign(grad), clip_min, clip_max)
        _AUGMENT_STEPS[model] = step
    return _AUGMENT_STEPS[model]


def _step_size(lam, tau, rho):
    return lam if tau is None else lam * (-1) ** (rho // tau)


def _unseen(images, seen):
    """Mask of the rows not in `seen` (nor earlier in `images`); adds them to `seen`."""
    mask = np.zeros(len(images), bool)
    for i, row in enumerate(images):
        key = row.tobytes()
        if key not in seen:
            seen.add(key)
            mask[i] = True
    return mask


def _validate(x_initial, num_classes, outlier_class, rounds, lam, tau, epochs_per_round,
              batch_size):
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 0:
        raise ValueError(f"rounds={rounds!r}: need an integer >= 0")
    if not (isinstance(lam, (int, float, np.floating)) and math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam={lam!r}: need a finite step lambda > 0")
    if tau is not None and (isinstance(tau, bool) or not isinstance(tau, (int, np.integer))
                            or tau < 1):
        raise ValueError(f"tau={tau!r}: need None or an integer >= 1")
    if not isinstance(epochs_per_round, (int, np.integer)) or epochs_per_round < 1:
        raise ValueError(f"epochs_per_round={epochs_per_round!r}: need an integer >= 1")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: need an integer >= 1")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes!r}: need at least 2 classes")
    if outlier_class is not None and outlier_class != num_classes:
        raise ValueError(f"outlier_class={outlier_class!r}: must be None or num_classes="
                         f"{num_classes}")
    if x_initial.ndim < 2 or len(x_initial) == 0:
        raise ValueError(f"x_initial of shape {x_initial.shape}: need at least one input")


def train_jacobian_substitute(oracle, x_initial, *, num_classes, input_shape=None,
                              outlier_class=None, rounds=6, lam=0.1, tau=None,
                              epochs_per_round=10, batch_size=128,
                              learning_rate=config.TRAIN_LEARNING_RATES["adam"], seed=0,
                              model_fn=None, agreement_data=None, progress=False):
    """Train a substitute from oracle labels only, with Jacobian-based augmentation.

    Args:
      oracle: callable float32 images in [0, 1] -> integer labels, the target's
        argmax (the attacker's only view of the target). Called once on S_0 and
        once per round on the new points only.
      x_initial: S_0, uint8 or float32 NHWC inputs (e.g. the last 150 test inputs,
        disjoint from the attacked ones).
      num_classes: n real classes.
      input_shape: (height, width, channels); default x_initial.shape[1:].
      outlier_class: None, or n when the oracle can answer the outlier class n;
        the substitute then has n + 1 outputs (see the module docstring).
      rounds: number of augmentations rho (>= 0); the substitute is trained
        rounds + 1 times, last on (at most) |S_0| * 2**rounds points.
      lam: the step lambda > 0; tau: None (constant step) or the period of the
        sign flip lambda_rho = lam * (-1)**floor(rho / tau).
      epochs_per_round, batch_size, learning_rate: Adam training per round with
        `training.fit`; the batch is capped at the set size (fit drops the
        remainder, so a 150-point round with batch 128 is one step per epoch).
        Round rho shuffles with seed + rho.
      seed: seeds the substitute's initialisation, dropout and data order.
      model_fn: callable (num_outputs, input_shape) -> logits model; default
        `models.cleverhans_cnn`, the targets' family.
      agreement_data: optional (images, target_labels) to measure, after each
        round, the agreement with the target on held-out inputs (the
        evaluator's measurement: not counted as oracle queries).
      progress: show training progress bars.
    Returns:
      (substitute, report): report has "oracle_queries", "set_sizes" (per
      round), "per_round" (size, queries so far, step, training agreement with the
      oracle labels, held-out agreement if asked, outlier answers, seconds),
      "outlier_answers", "wall_seconds" and the settings.
    """
    t_start = time.perf_counter()
    x = np.asarray(x_initial)
    _validate(x, num_classes, outlier_class, rounds, lam, tau, epochs_per_round, batch_size)
    training_images, seen = _initial_set(x)
    input_shape = tuple(input_shape or x.shape[1:])
    outputs = int(num_classes) + (outlier_class is not None)
    query = _Oracle(oracle, outputs, num_classes, outlier_class)

    keras.utils.set_random_seed(seed)
    substitute = _build(model_fn, outputs, input_shape)
    labels = query(training_images)
    held_out = None
    if agreement_data is not None:
        held_out = (np.asarray(agreement_data[0]), np.asarray(agreement_data[1]).reshape(-1))
    per_round = []
    for rho in range(rounds + 1):
        t_round = time.perf_counter()
        history = training.fit(
            substitute, training_images, training.one_hot(labels, outputs),
            epochs=epochs_per_round, batch_size=min(batch_size, len(training_images)),
            optimizer="adam", learning_rate=learning_rate, seed=seed + rho,
            progress=progress, log_epochs=False, description=f"substitute round {rho}")
        entry = _round_entry(substitute, training_images, labels, rho, query.queries,
                             history, outlier_class, held_out)
        if rho < rounds:
            training_images, labels = _augment(substitute, training_images, labels, entry,
                                               _step_size(lam, tau, rho), query, seen)
        entry["seconds"] = time.perf_counter() - t_round
        per_round.append(entry)
        if progress:
            _print_round(entry)
    report = {"method": "jacobian_augmentation", "initial_size": int(len(x)),
              "rounds": int(rounds), "lam": float(lam), "tau": tau,
              "epochs_per_round": int(epochs_per_round), "batch_size": int(batch_size),
              "learning_rate": float(learning_rate), "seed": int(seed), "outputs": outputs,
              "outlier_class": outlier_class, "oracle_queries": query.queries,
              "set_sizes": [e["size"] for e in per_round], "per_round": per_round,
              "wall_seconds": time.perf_counter() - t_start}
    report["duplicates_dropped"] = sum(e.get("duplicates_dropped", 0) for e in per_round)
    if outlier_class is not None:
        report["outlier_answers"] = int(np.sum(labels == outlier_class))
    return substitute, report


def _build(model_fn, outputs, input_shape):
    """The untrained substitute: model_fn(outputs, input_shape), by default the targets'
    family (models.cleverhans_cnn); ValueError if it has another number of outputs."""
    build = model_fn or (lambda n, shape: models.cleverhans_cnn(n, shape, name="substitute_J"))
    substitute = build(outputs, input_shape)
    if substitute.output_shape[-1] != outputs:
        raise ValueError(f"model_fn gave {substitute.output_shape[-1]} outputs, expected {outputs}")
    return substitute


def _print_round(entry):
    """One progress line per round."""
    shown = "" if "agreement" not in entry else f", held-out agreement {entry['agreement']:.4f}"
    print(f"substitute round {entry['rho']}: {entry['size']} points, training agreement "
          f"{entry['train_agreement']:.4f}{shown} ({entry['seconds']:.1f}s)", flush=True)


def _initial_set(x):
    """S_0 as float32 in [0, 1] (uint8 scaled by 1/255) and the set of inputs seen so
    far; ValueError for values outside [0, 1] or repeated inputs."""
    try:
        training_images = data.to_float(x)
    except ValueError as exc:
        raise ValueError(f"x_initial: {exc}") from None
    seen = set()
    fresh = _unseen(training_images, seen)
    if not fresh.all():
        raise ValueError(f"x_initial holds {int((~fresh).sum())} repeated inputs: "
                         "S_0 must be a set")
    return training_images, seen


class _Oracle:
    """The target's labels for new inputs, checked, and the number of queries asked."""

    def __init__(self, oracle, outputs, num_classes, outlier_class):
        self.oracle = oracle
        self.outputs = outputs
        self.num_classes = num_classes
        self.outlier_class = outlier_class
        self.queries = 0

    def __call__(self, images):
        labels = np.asarray(self.oracle(images)).reshape(-1)
        if labels.shape != (len(images),):
            raise ValueError(f"oracle returned {labels.size} labels for {len(images)} inputs")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"oracle returned {labels.dtype} labels: need integer classes")
        bad = labels[(labels < 0) | (labels >= self.outputs)]
        if bad.size:
            raise ValueError(f"oracle label {int(bad[0])} outside 0..{self.outputs - 1} "
                             f"(num_classes={self.num_classes}, "
                             f"outlier_class={self.outlier_class})")
        self.queries += len(images)
        return labels.astype(np.int64)


def _round_entry(substitute, training_images, labels, rho, queries, history, outlier_class,
                 held_out):
    """The report of round rho after training: set size, queries so far, agreement
    with the oracle's labels (and on held-out inputs), outlier answers."""
    predictions = models.predict_logits(substitute, training_images).argmax(axis=1)
    entry = {"rho": rho, "size": int(len(training_images)), "queries": queries,
             "train_agreement": agreement(predictions, labels),
             "train_seconds": history["wall_seconds"]}
    if outlier_class is not None:
        entry["outlier_answers"] = int(np.sum(labels == outlier_class))
    if held_out is not None:
        entry["agreement"] = agreement(
            models.predict_logits(substitute, held_out[0]).argmax(axis=1), held_out[1])
    return entry


def _augment(substitute, training_images, labels, entry, step, query, seen):
    """One Jacobian augmentation: the new points not seen before, labelled by the
    oracle, added to the set. Records the step and the duplicates in `entry`;
    returns the grown (training_images, labels)."""
    new = jacobian_augment(substitute, training_images, labels, step)
    fresh = _unseen(new, seen)
    entry["step"] = step
    entry["duplicates_dropped"] = int(len(new) - fresh.sum())
    new = new[fresh]
    if len(new):
        labels = np.concatenate([labels, query(new)])
        training_images = np.concatenate([training_images, new])
    return training_images, labels
