"""Fast gradient sign method (Goodfellow et al., 2015), cleverhans-v1 semantics.

x_adv = clip(x + eps * sign(grad_x J(x, y)), clip_min, clip_max), with J the
cross-entropy on the logits. With `y=None` the label is the model's own
prediction, so the true label cannot leak into the attack. Targeted:
x_adv = clip(x - eps * sign(grad_x CE(x, t))).
"""

import tensorflow as tf

from keras_edd.attacks import utils


@tf.function
def _fgsm_step(model_fn, x, labels, eps, clip_min, clip_max, targeted, outlier_class, loss):
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model_fn(x)
        objective = tf.reduce_sum(utils.attack_objective(
            logits, labels, targeted=targeted, outlier_class=outlier_class, loss=loss))
    grad = tape.gradient(objective, x)
    return tf.clip_by_value(x + eps * tf.sign(grad), clip_min, clip_max)


def fgsm(model_fn, x, *, eps, y=None, targeted=False, clip_min=0.0, clip_max=1.0,
         outlier_class=None, loss="ce"):
    """One L_inf step of size eps along the sign of the loss gradient.

    Args:
      model_fn: callable x -> logits Z(x) (a Keras model is called with
        training=False).
      x: batch of inputs in [clip_min, clip_max].
      eps: L_inf step size eps >= 0; eps = 0 returns x.
      y: labels to move away from (untargeted) or targets t (targeted); integer
        [batch] or one-hot. None: the model's prediction (untargeted only).
      targeted: descend the cross-entropy of the target instead.
      clip_min, clip_max: the input box.
      outlier_class: index of the "detected" logit of an outlier-class model;
        the untargeted loss then becomes -log(p_y + p_out), which pushes away
        from y and from the outlier class at once (targets must be real).
      loss: "ce" (cross-entropy, default) or "cw" (the logit margin
        max_{i not in {y,out}} Z_i - max(Z_y, Z_out)).
    Returns:
      x_adv, a float32 tensor shaped like x.
    """
    eps = utils.check_real("eps", eps, low=0.0)
    clip_min, clip_max = utils.check_box(clip_min, clip_max)
    utils.check_choice("loss", loss, ("ce", "cw"))
    model_fn = utils.as_model_fn(model_fn)
    x = utils.prepare_inputs(x, clip_min, clip_max)
    if eps == 0.0:
        return x
    labels, outlier_class, _ = utils.resolve_labels(model_fn, x, y, targeted, outlier_class)
    return _fgsm_step(model_fn, x, labels, tf.constant(eps), tf.constant(clip_min),
                      tf.constant(clip_max), bool(targeted), outlier_class, loss)

