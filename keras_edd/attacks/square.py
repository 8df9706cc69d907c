"""Square Attack (Andriushchenko et al., ECCV 2020), L_inf, score-based.

No gradients are used, only the logits Z(x) of proposed points, which makes it
the gradient-free confirmation for gradient masking: a defence that stops FGSM
and PGD but not Square hides its gradients rather than its adversarial examples.

Per sample, the paper's random search with the L_inf proposal distribution:
  1. query x; a sample already misclassified there is returned as x (1 query);
  2. vertical-stripe start x_0 = clip(x + eps * s), one random sign s per
     column and channel, kept whatever its loss (query 2);
  3. each later query proposes a square window of side h_i at a uniformly
     random position; inside it every channel c gets a new random sign rho_c,
     x_new = clip(x + eps * rho_c) there and x_best elsewhere. Signs that would
     leave the window unchanged are redrawn (up to _SIGN_DRAWS draws), as in
     the reference code. The proposal replaces x_best only if the margin loss
     L decreases strictly;
  4. a sample stops, keeping its point, as soon as L < 0 or after max_queries.

Margin loss on logits: L = max(Z_y, Z_out) - max_{i not in {y, out}} Z_i, which
is Z_y - max_{i != y} Z_i without an outlier class: minus `utils.attack_margin`,
so L < 0 is `utils.attack_success` at kappa = 0 and never ends in the outlier
class.

Square side: h_i = round(sqrt(p_i * H * W)) clipped to [1, min(H, W) - 1],
where p_i = p_init is halved each time the iteration passes the fractions
0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8 of max_queries (the reference
schedule for 10,000 queries, scaled to the budget).

All samples run in one compiled tf.while_loop; only the samples still active
are evaluated, so the cost follows each sample's own query count. Random
draws are stateless (tf.random.stateless_uniform keyed by seed and iteration),
so the result is a function of (x, y, seed).
"""

import tensorflow as tf

from keras_edd.attacks import utils

# Sign redraws per proposal before a no-op proposal is accepted as it is.
_SIGN_DRAWS = 16
# Iteration checkpoints of the reference schedule, out of 10,000 queries.
_HALVING_POINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(p_init, iteration, max_queries):
    """p_i, the fraction of the image a square covers at iteration i (0-based).

    p_init halved once for each checkpoint of `_HALVING_POINTS` (out of 10,000)
    that floor(i * 10000 / max_queries) has passed. Works eagerly and in graphs.
    """
    scaled = (tf.cast(iteration, tf.int64) * 10000) // tf.cast(max_queries, tf.int64)
    halvings = tf.reduce_sum(tf.cast(scaled > tf.constant(_HALVING_POINTS, tf.int64),
                                     tf.float32))
    return tf.cast(p_init, tf.float32) * tf.pow(0.5, halvings)


def square_side(p, height, width):
    """Side h_i = round(sqrt(p * H * W)) of the square, in [1, min(H, W) - 1]."""
    side = tf.cast(tf.round(tf.sqrt(p * tf.cast(height * width, tf.float32))), tf.int32)
    return tf.clip_by_value(side, 1, tf.minimum(height, width) - 1)


@tf.function(reduce_retracing=True)  # evaluate(): batches of varying size
def _square_run(model_fn, x, labels, eps, p_init, max_queries, seed, clip_min, clip_max,
                outlier_class, sample_shape):
    """Runs the attack on x of shape [batch, H, W, C]; returns (x_best, queries).

    `sample_shape` is the per-sample shape model_fn expects (a Python tuple).
    """
    batch, height, width, channels = (tf.shape(x)[i] for i in range(4))

    def loss_of(x_points, point_labels):
        logits = model_fn(tf.reshape(x_points, (-1,) + sample_shape))
        return -utils.attack_margin(logits, point_labels, targeted=False,
                                    outlier_class=outlier_class)

    def draw(step, shape):
        return tf.random.stateless_uniform(shape, seed=tf.stack([seed, tf.cast(step, tf.int64)]))

    # Query 1: x itself.
    loss_best = loss_of(x, labels)
    done = loss_best < 0.0
    queries = tf.ones([batch], tf.int32)
    # Query 2 (max_queries >= 2 here): vertical stripes at +-eps, kept unconditionally.
    stripes = tf.where(draw(0, tf.stack([batch, 1, width, channels])) < 0.5, -1.0, 1.0)
    active = tf.where(tf.logical_not(done))
    x_start = tf.clip_by_value(tf.gather_nd(x, active) + eps * tf.gather_nd(stripes, active),
                               clip_min, clip_max)
    loss_start = loss_of(x_start, tf.gather_nd(labels, active))
    x_best = tf.tensor_scatter_nd_update(x, active, x_start)
    loss_best = tf.tensor_scatter_nd_update(loss_best, active, loss_start)
    queries = tf.tensor_scatter_nd_add(queries, active, tf.ones_like(loss_start, tf.int32))
    done = loss_best < 0.0

    def condition(step, x_best, loss_best, done, queries):
        return tf.logical_and(step < max_queries - 2, tf.logical_not(tf.reduce_all(done)))

    def body(step, x_best, loss_best, done, queries):
        side = square_side(p_schedule(p_init, step, max_queries), height, width)
        # Draws for the whole batch, then the active rows: a sample's draws do
        # not depend on which other samples are still running.
        draws = draw(step + 1, tf.stack([batch, 2 + _SIGN_DRAWS * channels]))
        active = tf.where(tf.logical_not(done))
        draws = tf.gather_nd(draws, active)
        x_clean = tf.gather_nd(x, active)
        x_current = tf.gather_nd(x_best, active)
        x_new, first = _proposal(draws, side, x_clean, x_current, (height, width, channels),
                                 eps, clip_min, clip_max)
        loss_current = tf.gather_nd(loss_best, active)
        loss_new = loss_of(x_new, tf.gather_nd(labels, active))
        improved = loss_new < loss_current
        x_current = tf.where(improved[:, None, None, None], x_new, x_current)
        loss_current = tf.where(improved, loss_new, loss_current)

        x_best = tf.tensor_scatter_nd_update(x_best, active, x_current)
        loss_best = tf.tensor_scatter_nd_update(loss_best, active, loss_current)
        done = tf.tensor_scatter_nd_update(done, active, loss_current < 0.0)
        queries = tf.tensor_scatter_nd_add(queries, active, tf.ones_like(first))
        return step + 1, x_best, loss_best, done, queries

    _, x_best, _, _, queries = tf.while_loop(
        condition, body, (tf.constant(0), x_best, loss_best, done, queries))
    return x_best, queries


def _proposal(draws, side, x_clean, x_current, image_shape, eps, clip_min, clip_max):
    """One candidate per active row: a side x side window, placed by draws[:, :2], set
    to x +- eps per channel (clipped to the box), the signs the first of the
    _SIGN_DRAWS draws that changes some pixel. Returns (x_new, index of that draw)."""
    height, width, channels = image_shape
    rows = tf.range(height)
    cols = tf.range(width)

    def corner(u, size):
        positions = size - side + 1
        return tf.minimum(tf.cast(u * tf.cast(positions, tf.float32), tf.int32), positions - 1)

    top, left = corner(draws[:, 0], height), corner(draws[:, 1], width)
    in_rows = tf.logical_and(rows[None] >= top[:, None], rows[None] < (top + side)[:, None])
    in_cols = tf.logical_and(cols[None] >= left[:, None], cols[None] < (left + side)[:, None])
    window = tf.logical_and(in_rows[:, :, None, None], in_cols[:, None, :, None])

    up = tf.clip_by_value(x_clean + eps, clip_min, clip_max)
    down = tf.clip_by_value(x_clean - eps, clip_min, clip_max)
    changes_up = tf.reduce_any(tf.logical_and(window, tf.not_equal(up, x_current)), [1, 2])
    changes_down = tf.reduce_any(tf.logical_and(window, tf.not_equal(down, x_current)),
                                 [1, 2])
    signs_up = tf.reshape(draws[:, 2:], [-1, _SIGN_DRAWS, channels]) < 0.5
    changes = tf.reduce_any(tf.where(signs_up, changes_up[:, None], changes_down[:, None]),
                            axis=2)
    first = tf.reduce_min(tf.where(changes, tf.range(_SIGN_DRAWS)[None], _SIGN_DRAWS - 1),
                          axis=1)
    chosen_up = tf.gather(signs_up, first, batch_dims=1)[:, None, None, :]
    return tf.where(window, tf.where(chosen_up, up, down), x_current), first


def checked_arguments(model_fn, x, eps, max_queries, p_init, seed, clip_min, clip_max, *,
                      min_side):
    """The Square attacks' (L_inf and L2) arguments checked, with one-line ValueErrors:
    returns (model_fn, x as a float32 tensor in the box, eps, max_queries, p_init, seed,
    clip_min, clip_max). x must be images [batch, H, W(, C)] with H, W >= min_side."""
    eps = utils.check_real("eps", eps, low=0.0)
    max_queries = utils.check_int("max_queries", max_queries, low=1)
    p_init = utils.check_real("p_init", p_init, low=0.0, high=1.0, low_inclusive=False)
    seed = utils.check_int("seed", seed, low=0, high=2**31 - 1)
    clip_min, clip_max = utils.check_box(clip_min, clip_max)
    model_fn = utils.as_model_fn(model_fn)
    x = utils.prepare_inputs(x, clip_min, clip_max)
    if x.shape.rank not in (3, 4) or x.shape[1] < min_side or x.shape[2] < min_side:
        raise ValueError(f"x has shape {x.shape}: expected images [batch, H, W] or "
                         f"[batch, H, W, C] with H, W >= {min_side}")
    return model_fn, x, eps, max_queries, p_init, seed, clip_min, clip_max


def square(model_fn, x, *, eps, y=None, max_queries=5000, p_init=0.8, outlier_class=None,
           seed=0, clip_min=0.0, clip_max=1.0, return_queries=False):
    """Untargeted L_inf Square Attack with margin loss and per-sample stop.

    Args:
      model_fn: callable x -> logits Z(x) (a Keras model is called with
        training=False). Only its outputs are used, never its gradients.
      x: batch of images [batch, H, W, C] (or [batch, H, W]) in
        [clip_min, clip_max], with H, W >= 2.
      eps: radius eps >= 0 of the L_inf ball; eps = 0 returns x.
      y: labels to move away from, integer [batch] or one-hot; None = the
        model's own prediction on x (no label leaking).
      max_queries: model evaluations per sample (>= 1), counting the query on
        x and the stripe start; the loop runs at most max_queries - 2 steps.
      p_init: initial fraction p of the image a square covers, in (0, 1].
      outlier_class: index of the "detected" logit; success then requires a
        real class other than y on top, see the module docstring.
      seed: integer seed of the stateless random draws (same seed, same result).
      clip_min, clip_max: the input box.
      return_queries: also return the number of queries each sample used.
    Returns:
      x_adv, a float32 tensor shaped like x: the first point with L < 0, else
      the lowest-loss point found. With return_queries=True, (x_adv, queries)
      with queries an int32 tensor [batch] (zeros when eps = 0).
    """
    model_fn, x, eps, max_queries, p_init, seed, clip_min, clip_max = checked_arguments(
        model_fn, x, eps, max_queries, p_init, seed, clip_min, clip_max, min_side=2)
    if eps == 0.0:
        return (x, tf.zeros([x.shape[0]], tf.int32)) if return_queries else x
    labels, outlier_class, _ = utils.resolve_labels(model_fn, x, y, False, outlier_class)
    if max_queries == 1:  # the query on x only
        return (x, tf.ones([x.shape[0]], tf.int32)) if return_queries else x
    images = x if x.shape.rank == 4 else x[..., None]
    x_adv, queries = _square_run(
        model_fn, images, labels, tf.constant(eps), tf.constant(p_init),
        tf.constant(max_queries), tf.constant(seed, tf.int64), tf.constant(clip_min),
        tf.constant(clip_max), outlier_class, tuple(x.shape[1:]))
    x_adv = tf.reshape(x_adv, x.shape)
    return (x_adv, queries) if return_queries else x_adv
