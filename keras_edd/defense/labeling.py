"""MC-dropout uncertainty sigma(x) and the outlier-class labels k(x) (paper, Section 3).

For a teacher f with dropout, N stochastic forward passes (`training=True`) give
logits z^m(x), m = 1..N, and

    sigma(x) = (1/N) sum_m sum_j (z_j^m(x) - zbar_j(x))^2,   zbar = (1/N) sum_m z^m,

the per-class variance of the logits summed over classes. With n real classes,
the labels over n + 1 classes are, for true class l and sigma_max = max over the
*training* set of sigma,

    k_l(x) = 1 - alpha * sigma(x) / sigma_max,   k_n(x) = alpha * sigma(x) / sigma_max,

and 0 elsewhere. Inputs the teacher is unsure about move label mass to the
outlier class n, which the distilled model learns to predict for them.

With `precision="mixed_bfloat16"` the N passes run in bfloat16 on a copy of the
teacher (keras_edd.models.with_precision; the teacher itself is untouched and
may be float32-trained); the logits stay float32 and sigma is computed in
float32 from them. The dropout masks are then drawn in bfloat16, so sigma is
not bit-identical to the float32 one for the same seed, only close.

The original defensive distillation (Papernot et al., 2016) instead uses
`distillation_labels`: softmax(z(x) / T) of a teacher trained at temperature T.
"""

import contextlib

import numpy as np
import tensorflow as tf

from keras_edd import models
from keras_edd import progress as progress_lib
from keras_edd.data import make_pipeline

LABEL_BATCH_SIZE = 256  # images per MC call; the model sees LABEL_BATCH_SIZE * N at once


def uncertainty(logit_passes):
    """sigma from stacked MC logits.

    Args:
      logit_passes: [N, batch, classes] logits of N stochastic passes.
    Returns:
      [batch] float32 sigma(x) = (1/N) sum_m sum_j (z_j^m - zbar_j)^2.
    """
    logit_passes = tf.convert_to_tensor(logit_passes, tf.float32)
    deviations = logit_passes - tf.reduce_mean(logit_passes, axis=0, keepdims=True)
    return tf.reduce_mean(tf.reduce_sum(tf.square(deviations), axis=-1), axis=0)


def mc_dropout_logits(model, x, passes):
    """[passes, batch, classes] logits of `passes` dropout-on forward passes.

    The batch is tiled `passes` times and run as one call, so every copy draws
    its own dropout masks and the work is one large, efficient forward pass.
    """
    batch = tf.shape(x)[0]
    # Python-int multiples keep the static image shape (only the batch is unknown):
    # with a computed multiples tensor every dimension became unknown to the graph.
    tiled = tf.tile(x, [int(passes)] + [1] * (x.shape.rank - 1))
    logits = model(tiled, training=True)
    return tf.reshape(logits, tf.stack([passes, batch, -1]))


@tf.function
def _batch_sigma(model, x, passes):
    """Compiled sigma of one batch; traced once per (model, passes), reused across calls."""
    return uncertainty(mc_dropout_logits(model, x, passes))


@contextlib.contextmanager
def seeded_dropout(model, seed, calls_done=0):
    """Run `model`'s random layers from a state fixed by `seed`, then restore it.

    Keras keeps each dropout layer's RNG in a non-trainable `seed_generator_state`
    variable, [key, counter], whose counter each call of the layer advances by one;
    setting those makes MC sampling repeatable whatever the model did before, and
    restoring them leaves training runs undisturbed. `calls_done` starts the
    counters where they are after that many calls from `seed` (a worker labelling a
    later shard draws the masks a single process draws there).
    """
    states = [v for v in model.non_trainable_variables if "seed_generator_state" in v.path]
    saved = [v.numpy() for v in states]
    rng = np.random.default_rng(seed)
    for v in states:
        v.assign(np.array([rng.integers(0, 2**31 - 1), calls_done], dtype=v.dtype))
    try:
        yield
    finally:
        for v, value in zip(states, saved):
            v.assign(value)


def mc_uncertainty(model, images, *, passes=20, seed=0, batch_size=LABEL_BATCH_SIZE,
                   precision="float32", progress=False, distribution=None):
    """sigma(x) for every image, from a batched `tf.data` pipeline.

    Deterministic given `seed` (see `seeded_dropout`). `precision` (one of
    keras_edd.config.PRECISIONS) is the arithmetic of the forward passes; the
    teacher is run as a copy in that precision when its own differs. With a
    multi-worker `distribution` (keras_edd.distribute), each worker labels its
    shard of whole batches, its dropout RNG advanced to the shard's first batch,
    and the shards are merged: every worker returns the sigma one process computes.
    Returns float32 [n].
    """
    if int(passes) < 2:
        raise ValueError(f"passes={passes!r}: MC-dropout needs at least 2 passes")
    passes = int(passes)
    model = models.with_precision(model, models.check_precision(precision))
    if distribution is None or distribution.num_workers == 1:
        return _mc_sigma(model, images, passes, seed, batch_size, progress)
    start, stop = distribution.shard(len(images), align=batch_size)
    sigma = np.zeros(len(images), np.float32)
    sigma[start:stop] = _mc_sigma(model, images[start:stop], passes, seed, batch_size,
                                  progress, first_batch=start // batch_size)
    return distribution.merge(sigma)


def _mc_sigma(model, images, passes, seed, batch_size, progress, first_batch=0):
    """sigma of `images`, the dropout RNG started as after `first_batch` batches."""
    if len(images) == 0:
        return np.zeros(0, np.float32)
    pipeline = make_pipeline(images, np.zeros(len(images), np.int32), batch_size)
    out = []
    with seeded_dropout(model, seed, calls_done=first_batch):
        with progress_lib.bar(total=-(-len(images) // batch_size), progress=progress,
                              desc=f"MC-dropout sigma (N={passes})", unit="batch") as bar:
            for x, _ in pipeline:
                out.append(_batch_sigma(model, x, passes).numpy())
                bar.update(1)
    return np.concatenate(out).astype(np.float32)


def outlier_labels(labels, sigma, sigma_max, *, alpha, num_classes):
    """k(x) over num_classes + 1 classes (the last one is the outlier class).

    Args:
      labels: [n] integer true classes l in [0, num_classes).
      sigma: [n] uncertainties sigma(x).
      sigma_max: the normaliser, max of sigma over the training set (> 0).
      alpha: in [0, 1]; 0 gives one-hot labels.
      num_classes: n, the number of real classes.
    Returns:
      float32 [n, num_classes + 1] rows summing to 1. sigma / sigma_max is capped
      at 1 so inputs outside the training set (sigma > sigma_max) still get
      valid distributions.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha!r}: allowed range is [0, 1]")
    if not sigma_max > 0:
        raise ValueError(f"sigma_max={sigma_max!r}: must be > 0")
    labels = np.asarray(labels)
    ratio = np.minimum(np.asarray(sigma, np.float64) / float(sigma_max), 1.0)
    outlier_mass = alpha * ratio
    rows = np.zeros((len(labels), num_classes + 1), np.float64)
    rows[np.arange(len(labels)), labels] = 1.0 - outlier_mass
    rows[:, num_classes] = outlier_mass
    return rows.astype(np.float32)


def distillation_labels(teacher_logits, temperature):
    """softmax(z / T): the soft labels of defensive distillation (Papernot et al. 2016)."""
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: must be > 0")
    return tf.nn.softmax(tf.convert_to_tensor(teacher_logits, tf.float32) / temperature,
                         axis=-1).numpy()


def sigma_statistics(sigma):
    """Summary of a sigma distribution for results.json."""
    sigma = np.asarray(sigma, np.float64)
    quantiles = np.quantile(sigma, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    return {"min": quantiles[0], "p05": quantiles[1], "p25": quantiles[2],
            "median": quantiles[3], "p75": quantiles[4], "p95": quantiles[5],
            "max": quantiles[6], "mean": float(sigma.mean()), "count": int(sigma.size)}
