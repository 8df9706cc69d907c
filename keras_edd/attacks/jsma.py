"""Jacobian-based saliency map attack (Papernot et al., 2016), pairwise, batched.

The cleverhans-v1 algorithm: the search domain starts as the features that can
still move (x < clip_max for theta > 0, x > clip_min for theta < 0). At each
step, for every pair (p, q) of domain features,

    alpha = d F_t / d x_p + d F_t / d x_q          (target class t)
    beta  = sum_{j != t} (d F_j / d x_p + d F_j / d x_q)

and the pair with alpha > 0, beta < 0 (signs flipped for theta < 0) and the
largest -alpha * beta is moved by theta (clipped to the box) and leaves the
domain. A sample stops when it is classified as t, when no admissible pair
is left (cleverhans v1 then fell back to argmax = pair (0, 0) and kept
raising feature 0; we stop instead), or after floor(n_features * Gamma / 2)
pair steps; a stopped sample is frozen while the rest of the batch continues. F is the softmax output (what
cleverhans v1 differentiated; the default) or the logits Z (`use_logits=True`).

Speed. The Jacobian is never formed: alpha needs d F_t / dx and beta
d(sum_j F_j)/dx - d F_t / dx, i.e. two backward passes instead of one per
class. For probabilities sum_j F_j = 1, so beta = -alpha exactly and
-alpha * beta = alpha^2: the best pair is simply the two largest entries of
d F_t / dx in the domain (if their sum is positive). `pair_search="auto"`
uses this shortcut for probabilities and the explicit n x n pair matrix for
logits; `pair_search="matrix"` forces the matrix (same result up to float
round-off, used in the tests). Samples that stop are dropped from the
forward/backward passes, so the cost follows each sample's own step count.
"""

import collections

import numpy as np
import tensorflow as tf

from keras_edd.attacks import utils

UntargetedResult = collections.namedtuple("UntargetedResult", ["x_adv", "target", "success"])


def _saliency_gradients(model_fn, x_flat, targets, image_shape, use_logits, need_beta):
    """Returns (logits, d F_t/dx, d sum_{j != t} F_j/dx or None) for flat inputs."""
    with tf.GradientTape(persistent=need_beta) as tape:
        tape.watch(x_flat)
        logits = model_fn(tf.reshape(x_flat, tf.concat([[-1], image_shape], 0)))
        outputs = logits if use_logits else tf.nn.softmax(logits)
        target_sum = tf.reduce_sum(tf.gather(outputs, targets, batch_dims=1))
        all_sum = tf.reduce_sum(outputs)
    alpha = tape.gradient(target_sum, x_flat)
    beta = tape.gradient(all_sum, x_flat) - alpha if need_beta else None
    del tape
    return logits, alpha, beta


def _best_pair_top2(alpha, domain, increase):
    """Best pair when beta = -alpha: the two largest (signed) alpha in the domain."""
    signed = alpha if increase else -alpha
    masked = tf.where(domain, signed, tf.fill(tf.shape(signed), -np.inf))
    values, indices = tf.math.top_k(masked, k=2)
    pair_sum = values[:, 0] + values[:, 1]
    valid = tf.logical_and(tf.math.is_finite(pair_sum), pair_sum > 0.0)
    return indices[:, 0], indices[:, 1], valid


def _best_pair_matrix(alpha, beta, domain, increase):
    """Best pair from the explicit n x n saliency map (n = number of features).

    score(p, q) = relu(a_pq) * relu(-b_pq) equals -alpha * beta exactly where
    alpha > 0 and beta < 0 and is 0 elsewhere. alpha and beta are first scaled
    per sample by a positive factor (argmax and signs are unchanged) so tiny
    probability gradients do not underflow in the product.
    """
    if not increase:
        alpha, beta = -alpha, -beta
    scale = lambda v: v / tf.maximum(tf.reduce_max(tf.abs(v), axis=1, keepdims=True), 1e-30)
    alpha, beta = scale(alpha), scale(beta)
    batch, n = tf.shape(alpha)[0], tf.shape(alpha)[1]
    # Features outside the domain get alpha = -4, so every pair using one has
    # alpha_pq <= -2 < 0; the diagonal (p = q) is excluded the same way.
    alpha = tf.where(domain, alpha, -4.0 * tf.ones_like(alpha))
    diagonal = -4.0 * tf.eye(n, dtype=alpha.dtype)
    alpha_pair = tf.nn.relu(alpha[:, :, None] + alpha[:, None, :] + diagonal[None])
    beta_pair = tf.nn.relu(-(beta[:, :, None] + beta[:, None, :]))
    scores = tf.reshape(alpha_pair * beta_pair, [batch, -1])
    best = tf.argmax(scores, axis=1, output_type=tf.int32)
    valid = tf.reduce_max(scores, axis=1) > 0.0
    return best // n, best % n, valid


@tf.function
def _jsma_chunk(model_fn, x, targets, frozen, theta, clip_min, clip_max, max_steps,
                increase, use_logits, use_matrix):
    """Runs the pairwise JSMA on one chunk; `frozen` marks padding samples.

    `increase` (theta > 0), `use_logits` and `use_matrix` are Python booleans.
    """
    batch = tf.shape(x)[0]
    image_shape = tf.shape(x)[1:]
    x_flat = tf.reshape(x, [batch, -1])
    n = tf.shape(x_flat)[1]
    domain = x_flat < clip_max if increase else x_flat > clip_min
    done = frozen
    step = tf.constant(0)

    def condition(step, x_flat, domain, done):
        return tf.logical_and(step < max_steps, tf.logical_not(tf.reduce_all(done)))

    def body(step, x_flat, domain, done):
        active = tf.where(tf.logical_not(done))
        x_active = tf.gather_nd(x_flat, active)
        domain_active = tf.gather_nd(domain, active)
        targets_active = tf.gather_nd(targets, active)
        logits, alpha, beta = _saliency_gradients(
            model_fn, x_active, targets_active, image_shape, use_logits, use_matrix)
        if use_matrix:
            first, second, valid = _best_pair_matrix(alpha, beta, domain_active, increase)
        else:
            first, second, valid = _best_pair_top2(alpha, domain_active, increase)
        reached = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), targets_active)
        enough = tf.reduce_sum(tf.cast(domain_active, tf.int32), axis=1) >= 2
        stop = tf.logical_or(reached, tf.logical_not(tf.logical_and(valid, enough)))
        move = tf.logical_not(stop)
        chosen = tf.logical_and(
            tf.logical_or(tf.one_hot(first, n, on_value=True, off_value=False),
                          tf.one_hot(second, n, on_value=True, off_value=False)),
            move[:, None])
        moved = tf.clip_by_value(x_active + theta, clip_min, clip_max)
        x_active = tf.where(chosen, moved, x_active)
        domain_active = tf.logical_and(domain_active, tf.logical_not(chosen))
        x_flat = tf.tensor_scatter_nd_update(x_flat, active, x_active)
        domain = tf.tensor_scatter_nd_update(domain, active, domain_active)
        done = tf.tensor_scatter_nd_update(done, active, stop)
        return step + 1, x_flat, domain, done

    _, x_flat, _, _ = tf.while_loop(condition, body, (step, x_flat, domain, done))
    return tf.reshape(x_flat, tf.shape(x))


def _validate(theta, gamma, clip_min, clip_max, batch_chunk, pair_search):
    theta = utils.check_real("theta", theta)
    if theta == 0.0:
        raise ValueError("theta=0.0: allowed values are theta > 0 (increase features) "
                         "or theta < 0 (decrease)")
    gamma = utils.check_real("gamma", gamma, low=0.0, high=1.0, low_inclusive=False)
    clip_min, clip_max = utils.check_box(clip_min, clip_max)
    if batch_chunk is not None:
        batch_chunk = utils.check_int("batch_chunk", batch_chunk, low=1)
    utils.check_choice("pair_search", pair_search, ("auto", "matrix", "top2"))
    return theta, gamma, clip_min, clip_max, batch_chunk


def jsma(model_fn, x, y_target, *, theta=1.0, gamma=0.07, clip_min=0.0, clip_max=1.0,
         use_logits=False, batch_chunk=None, pair_search="auto", outlier_class=None):
    """Targeted pairwise JSMA; returns x_adv shaped like x.

    Args:
      model_fn: callable x -> logits (a Keras model is called with training=False).
      x: batch of inputs in [clip_min, clip_max].
      y_target: target classes t, integer [batch] or one-hot.
      theta: change theta applied to each chosen feature (> 0 increases,
        < 0 decreases), clipped to the box.
      gamma: Gamma in (0, 1], the largest fraction of features modified; at
        most floor(n_features * Gamma / 2) pair steps.
      clip_min, clip_max: the input box.
      use_logits: differentiate the logits Z instead of the softmax
        probabilities F. Default False = cleverhans v1.
      batch_chunk: samples per compiled run; bounds memory. The pair matrix
        (logits or pair_search="matrix") needs about 4 * batch_chunk *
        n_features^2 * 4 bytes, ~1.3 GB for 128 MNIST digits. None: 128 with
        the top-2 search, 32 with the matrix.
      pair_search: "auto", "matrix" or "top2" (top2 is exact only for
        probabilities; see the module docstring).
      outlier_class: index of the "detected" logit; targets must be real classes.
    """
    theta, gamma, clip_min, clip_max, batch_chunk = _validate(
        theta, gamma, clip_min, clip_max, batch_chunk, pair_search)
    if pair_search == "top2" and use_logits:
        raise ValueError("pair_search='top2' with use_logits=True: the top-2 shortcut "
                         "is exact only for probabilities; use 'auto' or 'matrix'")
    model_fn = utils.as_model_fn(model_fn)
    x = utils.prepare_inputs(x, clip_min, clip_max)
    targets, _, _ = utils.resolve_labels(model_fn, x, y_target, True, outlier_class)
    n_features = int(np.prod(x.shape[1:]))
    max_steps = int(np.floor(n_features * gamma / 2))
    use_matrix = pair_search == "matrix" or (pair_search == "auto" and use_logits)
    if batch_chunk is None:
        batch_chunk = 32 if use_matrix else 128
    batch = int(x.shape[0])
    chunk = min(batch_chunk, batch)
    outputs = []
    for start in range(0, batch, chunk):
        x_chunk = x[start:start + chunk]
        t_chunk = targets[start:start + chunk]
        real = int(x_chunk.shape[0])
        frozen = tf.zeros([chunk], tf.bool)
        if real < chunk:  # pad to the chunk size so the function is traced once
            pad = chunk - real
            x_chunk = tf.concat([x_chunk, tf.repeat(x_chunk[:1], pad, axis=0)], 0)
            t_chunk = tf.concat([t_chunk, tf.repeat(t_chunk[:1], pad, axis=0)], 0)
            frozen = tf.concat([tf.zeros([real], tf.bool), tf.ones([pad], tf.bool)], 0)
        x_adv = _jsma_chunk(model_fn, x_chunk, t_chunk, frozen, tf.constant(theta),
                            tf.constant(clip_min), tf.constant(clip_max),
                            tf.constant(max_steps), theta > 0, bool(use_logits), use_matrix)
        outputs.append(x_adv[:real])
    return tf.concat(outputs, 0)


def jsma_untargeted(model_fn, x, y=None, *, target_mode="random", seed=None,
                    outlier_class=None, **jsma_kwargs):
    """Untargeted use of JSMA by choosing targets t != y (and != the outlier class).

    target_mode="random": one uniform random target per sample (seeded).
    target_mode="all": every other real class, as the cleverhans-v1 tutorial
    did; per sample the successful result with the fewest changed features is
    returned (when no target succeeds, the failure with the fewest changed
    features).

    Args:
      y: true labels (None: the model's prediction).
      jsma_kwargs: theta, gamma, clip_min, clip_max, use_logits, batch_chunk,
        pair_search, passed to `jsma`.
    Returns:
      UntargetedResult(x_adv, target, success): the adversarial examples, the
      target each one used (int32 numpy) and whether it reached it (bool numpy).
      For the per-(sample, target) success rate of the cleverhans-v1 tutorial,
      call `jsma` on the pairs from `all_targets`.
    """
    utils.check_choice("target_mode", target_mode, ("random", "all"))
    model_fn = utils.as_model_fn(model_fn)
    clip_min, clip_max = utils.check_box(jsma_kwargs.get("clip_min", 0.0),
                                         jsma_kwargs.get("clip_max", 1.0))
    x = utils.prepare_inputs(x, clip_min, clip_max)
    labels, outlier_class, num_classes = utils.resolve_labels(
        model_fn, x, y, False, outlier_class)
    labels = labels.numpy()
    if target_mode == "random":
        targets = utils.random_targets(labels, num_classes, outlier_class=outlier_class,
                                       seed=seed)
        x_adv = jsma(model_fn, x, targets, outlier_class=outlier_class, **jsma_kwargs)
        success = _reached(model_fn, x_adv, targets)
        return UntargetedResult(x_adv, targets, success)
    sample_index, targets = all_targets(labels, num_classes, outlier_class=outlier_class)
    x_tiled = tf.gather(x, sample_index)
    x_adv_all = jsma(model_fn, x_tiled, targets, outlier_class=outlier_class, **jsma_kwargs)
    success_all = _reached(model_fn, x_adv_all, targets)
    changed = utils.perturbation_norms(x_tiled.numpy(), x_adv_all.numpy())["l0"]
    # Lexicographic choice per sample: success first, then fewest changed features.
    cost = np.where(success_all, changed, np.iinfo(np.int64).max // 2 + changed)
    batch = int(x.shape[0])
    best = np.empty(batch, np.int64)
    for i in range(batch):
        rows = np.flatnonzero(sample_index == i)
        best[i] = rows[np.argmin(cost[rows])]
    return UntargetedResult(tf.gather(x_adv_all, best), targets[best], success_all[best])


def all_targets(labels, num_classes, *, outlier_class=None):
    """Every (sample, target) pair with target != label and != outlier class.

    Returns (sample_index, targets), both int numpy arrays of equal length.
    """
    labels = np.asarray(labels)
    pairs = [(i, t) for i, label in enumerate(labels) for t in range(num_classes)
             if t != label and t != outlier_class]
    sample_index = np.array([p[0] for p in pairs], np.int64)
    targets = np.array([p[1] for p in pairs], np.int32)
    return sample_index, targets


def _reached(model_fn, x_adv, targets):
    logits = model_fn(x_adv)
    return np.asarray(tf.argmax(logits, axis=1, output_type=tf.int32)) == np.asarray(targets)
