"""Training-time adversaries for the adversarial-training baseline.

Adversarial training replaces each training batch x by x_adv, the worst case
the adversary finds in the L_inf ball of radius eps around x, and then takes the
ordinary weight step on (x_adv, y):

  fgsm_rs  "fast adversarial training" (Wong, Rice & Kolter, 2020): a uniform
           random start delta ~ U(-eps, eps), one sign-gradient step of size
           alpha = 1.25 eps, projection back onto the eps-ball and the [0, 1] box.
  pgd      Madry et al. (2018): a uniform random start, then `steps` sign-gradient
           steps of size `step`, each projected; their MNIST training adversary is
           40 steps of 0.01 at eps = 0.3.

An adversary is a callable `(model, x, target, seed) -> x_adv` run inside the
compiled train step of `training.fit`. It calls the model with training=False
(dropout off while crafting), ascends the cross-entropy of the target rows at
T = 1, and draws its random start with `tf.random.stateless_uniform` keyed on
`seed`, a [2] int64 tensor that the loop makes from (run seed, global step): a
resumed run therefore draws the same starts as an uninterrupted one, with no
RNG state to checkpoint. `training.fit` stops the gradient through x_adv before
the weight update.

`pgd_evaluator` builds the per-epoch robust-accuracy check that `fit` logs as
`eval/pgd_accuracy`, so catastrophic overfitting (FGSM-RS robust accuracy
collapsing to ~0 within an epoch while FGSM accuracy rises) shows in the history.

Each step of both is the attacks' PGD step (keras_edd.attacks.pgd.pgd_step); the
defaults (eps, steps, step sizes, the check's size) are settings, in keras_edd.config.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_edd import config, data
from keras_edd.attacks import utils
from keras_edd.attacks.pgd import pgd as pgd_attack
from keras_edd.attacks.pgd import pgd_step


def _check_eps(eps):
    return utils.check_real("eps", eps, low=0.0, high=1.0, low_inclusive=False)


def random_start(x, eps, seed):
    """x + delta, delta ~ U(-eps, eps) per pixel (stateless, keyed on `seed`), clipped to [0, 1]."""
    noise = tf.random.stateless_uniform(tf.shape(x), seed=seed, minval=-eps, maxval=eps,
                                        dtype=x.dtype)
    return tf.clip_by_value(x + noise, 0.0, 1.0)


def _loss_gradient(model, x_adv, target):
    """d/dx of the summed T = 1 cross-entropy of `target` rows, model in inference mode."""
    with tf.GradientTape() as tape:
        tape.watch(x_adv)
        logits = model(x_adv, training=False)
        loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(
            tf.cast(target, logits.dtype), logits))
    return tape.gradient(loss, x_adv)


@dataclasses.dataclass(frozen=True)
class FgsmRs:
    """FGSM with a uniform random start (Wong, Rice & Kolter, 2020); see `fgsm_rs`."""
    eps: float
    step: float
    name = "fgsm_rs"

    def __call__(self, model, x, target, seed):
        x_adv = random_start(x, self.eps, seed)
        return pgd_step(x, x_adv, _loss_gradient(model, x_adv, target), self.eps, self.step)


@dataclasses.dataclass(frozen=True)
class Pgd:
    """L_inf PGD from a uniform random start (Madry et al., 2018); see `pgd`."""
    eps: float
    step: float
    steps: int
    name = "pgd"

    def __call__(self, model, x, target, seed):
        def body(i, x_adv):
            return i + 1, pgd_step(x, x_adv, _loss_gradient(model, x_adv, target), self.eps,
                                   self.step)

        _, x_adv = tf.while_loop(lambda i, _: i < self.steps, body,
                                 (tf.constant(0), random_start(x, self.eps, seed)))
        return x_adv


def fgsm_rs(eps=config.ADV_TRAIN_EPS, step=None):
    """The FGSM-RS training adversary.

    Args:
      eps: L_inf radius, in (0, 1] (MNIST: 0.3).
      step: the sign-gradient step alpha > 0; None = 1.25 eps (Wong et al.).
    """
    eps = _check_eps(eps)
    step = config.adv_train_step("fgsm_rs", eps, step)
    step = utils.check_real("step", step, low=0.0, low_inclusive=False)
    return FgsmRs(eps=eps, step=step)


def pgd(eps=config.ADV_TRAIN_EPS, step=config.ADV_TRAIN_PGD_STEP,
        steps=config.ADV_TRAIN_PGD_STEPS):
    """The PGD training adversary: `steps` steps of size `step` in the eps-ball.

    Args:
      eps: L_inf radius, in (0, 1] (MNIST: 0.3).
      step: step size > 0 (Madry et al. MNIST: 0.01).
      steps: number of steps >= 1 (Madry et al. MNIST: 40).
    """
    eps = _check_eps(eps)
    step = utils.check_real("step", step, low=0.0, low_inclusive=False)
    steps = utils.check_int("steps", steps, low=1)
    return Pgd(eps=eps, step=step, steps=steps)


def make_adversary(attack, eps=config.ADV_TRAIN_EPS, **options):
    """The training adversary named `attack` (one of config.ADV_TRAIN_ATTACKS).

    `options` are the constructor's own keywords: `step` for fgsm_rs, `step`
    and `steps` for pgd.
    """
    utils.check_choice("adv_train_attack", attack, config.ADV_TRAIN_ATTACKS)
    return {"fgsm_rs": fgsm_rs, "pgd": pgd}[attack](eps, **options)


def pgd_accuracy(model, images, labels, *, eps, eps_iter=config.PGD_CHECK_STEP,
                 nb_iter=config.PGD_CHECK_STEPS, seed=0, batch_size=500):
    """Accuracy of `model` (inference mode) on PGD examples crafted against the true labels.

    One uniform random start per example (stateless, from `seed`), so the same
    model gives the same number. `images`: uint8 or float in [0, 1] (data.to_float).
    """
    eps = _check_eps(eps)
    images = data.to_float(images)
    labels = np.asarray(labels)
    correct = 0
    for first in range(0, len(images), batch_size):
        x = images[first:first + batch_size]
        y = labels[first:first + batch_size]
        x_adv = pgd_attack(model, x, eps=eps, eps_iter=eps_iter, nb_iter=nb_iter,
                           rand_init=True, y=y, seed=seed + first)
        predictions = np.argmax(model(x_adv, training=False).numpy(), axis=1)
        correct += int(np.sum(predictions == y))
    return correct / len(images)


def pgd_evaluator(images, labels, *, eps, eps_iter=config.PGD_CHECK_STEP,
                  nb_iter=config.PGD_CHECK_STEPS, seed=0, batch_size=500):
    """A `model -> PGD accuracy` callable on a fixed held-out slice, for `fit(pgd_eval=...)`."""
    eps = _check_eps(eps)
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"pgd eval slice: {len(images)} images and {len(labels)} labels; "
                         "need the same, non-zero number")

    def evaluate(model):
        return pgd_accuracy(model, images, labels, eps=eps, eps_iter=eps_iter, nb_iter=nb_iter,
                            seed=seed, batch_size=batch_size)
    return evaluate
