"""Adversarial attacks as plain functions, batched and compiled with tf.function.

Convention. Every attack takes `model_fn` first: a callable mapping a float32
batch x (NHWC images in [clip_min, clip_max]) to LOGITS Z(x). A Keras model may
be passed directly; it is then called as `model(x, training=False)` (dropout
off). Other callables are used as given, e.g. `lambda x: model(x, training=False)`.
Pass the same object across calls to reuse compiled traces. Models with an
outlier class have n + 1 logits; give its index as `outlier_class` and the
attacker avoids it (margin max(Z_y, Z_out) - max_{i not in {y,out}} Z_i).

Shared option names: `eps`, `y` (None = the model's own prediction, no label
leaking), `targeted`, `clip_min`, `clip_max`, `outlier_class`. Attacks return a
float32 tensor shaped like x, except `jsma_untargeted`, which returns
UntargetedResult(x_adv, target, success). Bad arguments raise ValueError naming the value.

  fgsm               one L_inf sign-gradient step (cleverhans v1)
  pgd                L_inf PGD with random restarts (Madry et al.)
  apgd               Auto-PGD, L_inf/L2, CE/DLR/targeted DLR, adaptive step (Croce & Hein)
  fab                FAB / FAB-T, minimal L_inf/L2 perturbations, fast adaptive boundary
  jsma               targeted pairwise JSMA, theta and Gamma (Papernot et al. 2016)
  jsma_untargeted    JSMA with random or all targets t != y
  carlini_wagner_l2  CW-L2 with kappa, binary search over c, Adam or AdaDelta
  square             L_inf Square Attack, score-based, no gradients (Andriushchenko et al.)
  square_l2          the L2 Square Attack, same interface
  checks             logits / gradient-masking / stochasticity sanity checks
"""

from keras_edd.attacks import checks, utils
from keras_edd.attacks.apgd import apgd
from keras_edd.attacks.carlini_wagner_l2 import carlini_wagner_l2
from keras_edd.attacks.checks import (
    check_deterministic,
    check_gradient_masking,
    check_logits,
    run_all_checks,
    zero_gradient_fraction,
)
from keras_edd.attacks.fab import fab
from keras_edd.attacks.fgsm import fgsm
from keras_edd.attacks.jsma import UntargetedResult, all_targets, jsma, jsma_untargeted
from keras_edd.attacks.pgd import pgd
from keras_edd.attacks.square import square
from keras_edd.attacks.square_l2 import square_l2
from keras_edd.attacks.utils import perturbation_norms, random_targets

__all__ = [
    "UntargetedResult",
    "all_targets",
    "apgd",
    "carlini_wagner_l2",
    "check_deterministic",
    "check_gradient_masking",
    "check_logits",
    "checks",
    "fab",
    "fgsm",
    "jsma",
    "jsma_untargeted",
    "perturbation_norms",
    "pgd",
    "random_targets",
    "run_all_checks",
    "square",
    "square_l2",
    "utils",
    "zero_gradient_fraction",
]
