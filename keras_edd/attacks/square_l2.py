"""Square Attack, L2 (Andriushchenko et al., ECCV 2020), score-based.

The L2 companion of keras_edd.attacks.square (L_inf): random search over
perturbations of L2 norm eps, using only the logits of proposed points. Per
sample, with the margin loss L = max(Z_y, Z_out) - max_{i not in {y, out}} Z_i
(as in square.py; L < 0 is `utils.attack_success`, never in the outlier class):

  1. query x; a sample already misclassified there is returned as x;
  2. start: the image is tiled with windows of side s_0 = max(H // 5, 1); each
     window of each channel gets the pattern eta(s_0) times a random sign; the
     sum is scaled to L2 norm eps, x_0 = clip(x + delta), kept whatever its loss;
  3. each later query moves perturbation mass between two windows of side s_i
     at random positions (shared by the batch): window 2 is emptied, and window
     1, per channel, gets eta(s_i) * (random sign) + its old content (normalised)
     rescaled to norm sqrt(max(eps^2 - ||delta||^2, 0) / C + ||delta on both
     windows||^2); the whole delta is then scaled to norm eps and the point
     clipped to the box. The proposal replaces x_best only if L decreases;
  4. a sample stops, keeping its point, as soon as L < 0 or after max_queries.

eta(s) is the paper's "meta pseudo-Gaussian" pattern: the top s // 2 rows hold
M(s // 2, s), the others -M(s - s // 2, s), where M(a, b) sums 1 / (k + 1)^2 over
centred rectangles of growing size k; unit L2 norm; transposed with probability
1/2 at each draw. Square side s_i = round(sqrt(p_i H W)), at least 3, made odd,
at most min(H, W), with p_i the schedule of square.p_schedule.

One compiled model call (forward pass and margin, `_margin_loss`) per query on the
samples still active; the proposal arithmetic is numpy with a Generator keyed by
`seed`, so the result is a function of (x, y, seed).
"""

import numpy as np
import tensorflow as tf

from keras_edd.attacks import utils
from keras_edd.attacks.square import checked_arguments, p_schedule


def _rectangles(rows, cols):
    """M(rows, cols): sum over k of 1 / (k + 1)^2 on the centred (2k + 1)-rectangles, unit norm."""
    pattern = np.zeros((rows, cols))
    if rows == 0 or cols == 0:
        return pattern
    top, left = rows // 2, cols // 2
    for k in range(max(rows // 2 + 1, cols // 2 + 1)):
        pattern[max(top - k, 0):min(top - k + 2 * k + 1, rows),
                max(left - k, 0):min(left - k + 2 * k + 1, cols)] += 1.0 / (k + 1) ** 2
    return pattern / np.sqrt((pattern ** 2).sum())


def eta(side, rng):
    """The s x s pattern of the module docstring (unit L2 norm, maybe transposed)."""
    pattern = np.zeros((side, side))
    pattern[:side // 2] = _rectangles(side // 2, side)
    pattern[side // 2:] = -_rectangles(side - side // 2, side)
    pattern /= np.sqrt((pattern ** 2).sum())
    return pattern.T if rng.random() > 0.5 else pattern


def square_side(p, height, width):
    """round(sqrt(p H W)), at least 3, odd, at most min(H, W)."""
    side = max(int(round(np.sqrt(p * height * width))), 3)
    side += 1 - side % 2
    return min(side, height, width)


@tf.function(reduce_retracing=True)
def _margin_loss(model_fn, points, labels, outlier_class):
    """The margin loss L of every point (one compiled call: an eager Keras call per
    query costs more than the forward pass on a small model)."""
    return -utils.attack_margin(model_fn(points), labels, targeted=False,
                                outlier_class=outlier_class)


def _scaled_to(delta, eps):
    norms = np.sqrt((delta.reshape(len(delta), -1) ** 2).sum(axis=1))
    return delta * (eps / (norms + 1e-12)).reshape(-1, 1, 1, 1)


def square_l2(model_fn, x, *, eps, y=None, max_queries=5000, p_init=0.8, outlier_class=None,
              seed=0, clip_min=0.0, clip_max=1.0):
    """Untargeted L2 Square Attack with margin loss and per-sample stop.

    Args:
      model_fn: callable x -> logits Z(x) (a Keras model is called with
        training=False). Only its outputs are used, never its gradients.
      x: images [batch, H, W, C] (or [batch, H, W]) in [clip_min, clip_max].
      eps: radius eps >= 0 of the L2 ball; eps = 0 returns x.
      y: labels to move away from, integer [batch] or one-hot; None = the
        model's own prediction on x (no label leaking).
      max_queries: model evaluations per sample (>= 1), counting the query on
        x and the start; the loop runs at most max_queries - 2 steps.
      p_init: initial fraction of the image a square covers, in (0, 1].
      outlier_class: index of the "detected" logit; success then requires a
        real class other than y on top.
      seed: integer seed of the random draws (same seed, same result).
      clip_min, clip_max: the input box.
    Returns:
      x_adv, a float32 tensor shaped like x, with ||x_adv - x||_2 <= eps: the
      first point with L < 0, else the lowest-loss point found.
    """
    model_fn, x, eps, max_queries, p_init, seed, clip_min, clip_max = checked_arguments(
        model_fn, x, eps, max_queries, p_init, seed, clip_min, clip_max, min_side=1)
    if eps == 0.0 or max_queries == 1:
        return x
    labels, outlier_class, _ = utils.resolve_labels(model_fn, x, y, False, outlier_class)
    shape = x.shape
    images = x.numpy() if x.shape.rank == 4 else x.numpy()[..., None]
    labels = labels.numpy()
    batch, height, width, channels = images.shape
    rng = np.random.default_rng(seed)

    def loss_of(points, rows):
        points = tf.constant(points.reshape((-1,) + tuple(shape[1:])), tf.float32)
        return _margin_loss(model_fn, points, tf.constant(labels[rows]),
                            outlier_class).numpy()

    x_best = images.copy()
    loss_best = loss_of(images, np.arange(batch))
    active = np.flatnonzero(loss_best >= 0.0)
    if active.size:
        side = max(height // 5, 1)
        start = (height - 5 * side) // 2 if height >= 5 * side else 0
        delta = np.zeros((active.size, height, width, channels))
        for top in range(start, height - side + 1, side):
            for left in range(start, width - side + 1, side):
                signs = rng.choice([-1.0, 1.0], size=(active.size, 1, 1, channels))
                delta[:, top:top + side, left:left + side, :] += (
                    eta(side, rng)[None, :, :, None] * signs)
        x_best[active] = np.clip(images[active] + _scaled_to(delta, eps), clip_min, clip_max)
        loss_best[active] = loss_of(x_best[active], active)
    for step in range(max_queries - 2):
        active = np.flatnonzero(loss_best >= 0.0)
        if active.size == 0:
            break
        side = square_side(float(p_schedule(p_init, step, max_queries)), height, width)
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        top2, left2 = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        window = (slice(None), slice(top, top + side), slice(left, left + side), slice(None))
        window2 = (slice(None), slice(top2, top2 + side), slice(left2, left2 + side),
                   slice(None))
        delta = x_best[active].astype(np.float64) - images[active]
        norm_image = np.sqrt((delta.reshape(active.size, -1) ** 2).sum(axis=1))
        both = np.zeros_like(delta)
        both[window2] = delta[window2]
        both[window] = delta[window]
        norm_windows = np.sqrt((both.reshape(active.size, -1) ** 2).sum(axis=1))
        old = delta[window]
        old = old / (1e-12 + np.sqrt((old ** 2).sum(axis=(1, 2), keepdims=True)))
        signs = rng.choice([-1.0, 1.0], size=(active.size, 1, 1, channels))
        new = eta(side, rng)[None, :, :, None] * signs + old
        room = np.maximum(eps ** 2 - norm_image ** 2, 0.0) / channels + norm_windows ** 2
        new = new / (1e-12 + np.sqrt((new ** 2).sum(axis=(1, 2), keepdims=True)))
        new = new * np.sqrt(room).reshape(-1, 1, 1, 1)
        delta[window2] = 0.0
        delta[window] = new
        proposal = np.clip(images[active] + _scaled_to(delta, eps), clip_min, clip_max)
        loss = loss_of(proposal, active)
        better = loss < loss_best[active]
        x_best[active[better]] = proposal[better]
        loss_best[active[better]] = loss[better]
    return tf.convert_to_tensor(x_best.reshape(shape).astype(np.float32))
