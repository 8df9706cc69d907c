"""L_inf projected gradient descent (Madry et al., 2018) with random restarts.

Each of `nb_iter` steps ascends the attack objective by eps_iter * sign(grad),
projects back onto the L_inf ball of radius eps around x and clips to the box.
Restarts start from independent uniform points in the eps-ball; per example the
result kept is a successful restart if there is one, else the highest loss.
"""

import tensorflow as tf

from keras_edd.attacks import utils


def pgd_step(x, x_adv, grad, eps, eps_iter, clip_min=0.0, clip_max=1.0):
    """One L_inf PGD step: x_adv + eps_iter * sign(grad), projected back onto the ball of
    radius eps around x and into the box [clip_min, clip_max]. Shared with the
    training-time adversaries (keras_edd.defense.adversarial_training)."""
    x_adv = x_adv + eps_iter * tf.sign(grad)
    return tf.clip_by_value(x + tf.clip_by_value(x_adv - x, -eps, eps), clip_min, clip_max)


@tf.function
def _pgd_run(model_fn, x, labels, noise, eps, eps_iter, nb_iter, clip_min, clip_max,
             targeted, outlier_class, loss, score):
    """One restart: returns (x_adv, final objective, success); the last two only
    when `score` (needed to pick among restarts), else (x_adv, None, None)."""
    def objective(x_adv):
        logits = model_fn(x_adv)
        values = utils.attack_objective(logits, labels, targeted=targeted,
                                        outlier_class=outlier_class, loss=loss)
        return values, logits

    x_adv = tf.clip_by_value(x + tf.clip_by_value(noise, -eps, eps), clip_min, clip_max)
    for _ in tf.range(nb_iter):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            values, _ = objective(x_adv)
            total = tf.reduce_sum(values)
        grad = tape.gradient(total, x_adv)
        x_adv = pgd_step(x, x_adv, grad, eps, eps_iter, clip_min, clip_max)
    if not score:
        return x_adv, None, None
    values, logits = objective(x_adv)
    success = utils.attack_success(logits, labels, targeted=targeted, outlier_class=outlier_class)
    return x_adv, values, success


def pgd(model_fn, x, *, eps, eps_iter, nb_iter, rand_init=True, nb_restarts=1, y=None,
        targeted=False, clip_min=0.0, clip_max=1.0, outlier_class=None, loss="ce", seed=None):
    """L_inf PGD with random restarts.

    Args:
      model_fn: callable x -> logits (a Keras model is called with training=False).
      x: batch of inputs in [clip_min, clip_max].
      eps: radius eps >= 0 of the L_inf ball; eps = 0 returns x.
      eps_iter: step size per iteration (>= 0).
      nb_iter: number of iterations (>= 0).
      rand_init: start from x + U(-eps, eps) (Madry) instead of x.
      nb_restarts: number of starts (>= 1); only useful with rand_init.
      y: labels to avoid (untargeted) or targets (targeted); None = the model's
        own prediction on x.
      targeted: descend towards y instead of away from it.
      clip_min, clip_max: the input box.
      outlier_class: index of the "detected" logit; the attacker then avoids y
        and the outlier class, see `utils.attack_objective`.
      loss: "ce" (cross-entropy, default) or "cw" (logit margin).
      seed: integer seed for the random starts (None: drawn at random).
    Returns:
      x_adv, a float32 tensor shaped like x.
    """
    eps = utils.check_real("eps", eps, low=0.0)
    eps_iter = utils.check_real("eps_iter", eps_iter, low=0.0)
    nb_iter = utils.check_int("nb_iter", nb_iter, low=0)
    nb_restarts = utils.check_int("nb_restarts", nb_restarts, low=1)
    clip_min, clip_max = utils.check_box(clip_min, clip_max)
    utils.check_choice("loss", loss, ("ce", "cw"))
    if seed is not None:
        seed = utils.check_int("seed", seed, low=0)
    model_fn = utils.as_model_fn(model_fn)
    x = utils.prepare_inputs(x, clip_min, clip_max)
    if eps == 0.0:
        return x
    labels, outlier_class, _ = utils.resolve_labels(model_fn, x, y, targeted, outlier_class)
    if seed is None:
        seed = int(tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64))
    constants = [tf.constant(v, tf.float32) for v in (eps, eps_iter)]
    best_x = best_value = best_success = None
    for restart in range(nb_restarts):
        if rand_init:
            noise = tf.random.stateless_uniform(x.shape, seed=[seed, restart],
                                                minval=-eps, maxval=eps)
        else:
            noise = tf.zeros_like(x)
        x_adv, value, success = _pgd_run(
            model_fn, x, labels, noise, *constants, tf.constant(nb_iter),
            tf.constant(clip_min), tf.constant(clip_max), bool(targeted), outlier_class, loss,
            nb_restarts > 1)
        if best_x is None:
            best_x, best_value, best_success = x_adv, value, success
            continue
        better = tf.logical_or(
            tf.logical_and(success, tf.logical_not(best_success)),
            tf.logical_and(tf.equal(success, best_success), value > best_value))
        shape = [-1] + [1] * (x.shape.rank - 1)
        best_x = tf.where(tf.reshape(better, shape), x_adv, best_x)
        best_value = tf.where(better, value, best_value)
        best_success = tf.logical_or(best_success, success)
    return best_x
