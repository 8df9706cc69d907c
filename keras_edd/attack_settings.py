"""The settings of each attack of the registry (keras_edd.attack_registry).

One frozen dataclass per attack whose field names are the attack function's own
keyword names, so a row's settings are passed to the function as they are; each
field carries its flag (`--<attack>_<field>`, or `--<attack>_<name>` where its metadata
names one) and the flag's help (keras_edd.setting_fields), and `validate(prefix)` checks
it with the flag's name in the message.
The enums are the choices of the string-valued settings. Light: no TensorFlow.
"""

import dataclasses
import enum

from keras_edd import validation as v
from keras_edd.setting_fields import flag, flag_of, no_flag
from keras_edd.validation import choices

class PgdLoss(enum.StrEnum):
    CE = "ce"  # cross-entropy
    CW = "cw"  # logit margin: still has gradients where a saturated softmax masks them


class JsmaTargetMode(enum.StrEnum):
    RANDOM = "random"  # one random target t != y per input
    ALL = "all"  # every target, the best one kept


class CwOptimizer(enum.StrEnum):
    ADADELTA = "adadelta"
    ADAM = "adam"


class CwEarlyExit(enum.StrEnum):
    SAMPLE = "sample"  # each input stops on its own abort-early test; slots are refilled
    BATCH = "batch"  # the whole batch runs until its slowest input stops (the old way)


class SuccessCriterion(enum.StrEnum):
    """How an attack judges its own success, on the model it was computed on (the source).

    MARGIN: the source's logits on x_adv have margin >= kappa (`utils.attack_success`)
      against y = the source's own clean prediction, avoiding the outlier class for an
      adaptive run; kappa = the settings' `confidence` (CW), else 0 (margin > 0: the
      decision left y).
    REPORTED: the attack returns per-sample `success` itself (JSMA: target reached).
    """
    MARGIN = "margin"
    REPORTED = "reported"


# CW's default learning rates by optimizer, measured on an MNIST CNN at kappa = 7, 5
# binary-search steps, c_0 = 0.01: Adam lr 0.01 (Carlini's) succeeds on 100% with the
# default 1000 iterations (1% with 100). AdaDelta (rho 0.95, epsilon 1e-6 as in Zeiler
# 2012) moves tanh-saturated pixels very slowly: lr 1.0 gave 57% after 1000 iterations,
# lr 10 gave 97%, hence 10.
CW_LEARNING_RATES = {CwOptimizer.ADAM.value: 1e-2, CwOptimizer.ADADELTA.value: 10.0}


def _help(text, default, *, name=None, choices=None):
    """A settings field that is the flag --<attack>_<name> (default: the field's name)."""
    return dataclasses.field(default=default, metadata=flag(name, text, choices=choices))


def _fixed(default):
    """A setting passed to the attack that is neither a flag nor a saved setting."""
    return dataclasses.field(default=default, metadata=no_flag(
        "fixed per registry row, passed to the attack but neither a flag nor saved"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Base of the per-attack settings.

    A field's flag suffix is its name unless its metadata names another (older command
    lines keep working, e.g. --pgd_restarts for nb_restarts).
    """

    @classmethod
    def flag_fields(cls):
        """(field, flag suffix) of the fields exposed as flags and saved in settings."""
        return [(f, flag_of(f).name) for f in dataclasses.fields(cls) if flag_of(f)]

    def named(self, prefix):
        """field -> the name used in flags and messages, e.g. 'pgd_restarts'."""
        suffixes = {f.name: suffix for f, suffix in self.flag_fields()}
        return lambda field: prefix + suffixes.get(field, field)

    def validate(self, prefix):
        return self


@dataclasses.dataclass(frozen=True, kw_only=True)
class FgsmSettings(Settings):
    """FGSM (cleverhans v1): one sign-gradient step of size eps."""
    eps: float = _help("FGSM eps (paper: 0.2).", 0.2)

    def validate(self, prefix):
        v.check_real(self.named(prefix)("eps"), self.eps, low=0.0, high=1.0)
        return self


@dataclasses.dataclass(frozen=True, kw_only=True)
class PgdSettings(Settings):
    """L_inf PGD (Madry et al.), an attack beyond the paper's three."""
    eps: float = _help("PGD eps.", 0.2)
    eps_iter: float = _help("PGD step size.", 0.01)
    nb_iter: int = _help("PGD steps.", 40)
    nb_restarts: int = _help("PGD random restarts.", 1, name="restarts")
    rand_init: bool = _fixed(True)
    loss: str = _help(f"PGD loss, one of {', '.join(choices(PgdLoss))}: cross-entropy, or the "
                      "logit margin (sees through a saturated softmax).", PgdLoss.CE.value,
                      choices=PgdLoss)

    def validate(self, prefix):
        name = self.named(prefix)
        v.check_real(name("eps"), self.eps, low=0.0, high=1.0)
        v.check_real(name("eps_iter"), self.eps_iter, low=0.0, high=1.0, low_inclusive=False)
        v.check_int(name("nb_iter"), self.nb_iter, low=1)
        v.check_int(name("nb_restarts"), self.nb_restarts, low=1)
        v.check_choice(name("loss"), self.loss, choices(PgdLoss))
        return self


@dataclasses.dataclass(frozen=True, kw_only=True)
class JsmaSettings(Settings):
    """JSMA (Papernot et al. 2016) made untargeted by drawing targets t != y."""
    theta: float = _help("JSMA theta (paper: 1).", 1.0)
    gamma: float = _help("JSMA Gamma, max fraction of pixels changed (paper: 0.07).", 0.07)
    target_mode: str = _help(f"JSMA targets t != y: {', '.join(choices(JsmaTargetMode))}.",
                             JsmaTargetMode.RANDOM.value, choices=JsmaTargetMode)

    def validate(self, prefix):
        name = self.named(prefix)
        v.check_real(name("theta"), self.theta, low=-1.0, high=1.0)
        v.require(self.theta != 0, f"{name('theta')}=0: must be non-zero (> 0 increases pixels)")
        v.check_real(name("gamma"), self.gamma, low=0.0, high=1.0, low_inclusive=False)
        v.check_choice(name("target_mode"), self.target_mode, choices(JsmaTargetMode))
        return self


@dataclasses.dataclass(frozen=True, kw_only=True)
class CwSettings(Settings):
    """CW-L2 with confidence kappa (paper: 7 with AdaDelta)."""
    confidence: float = _help("CW kappa (paper: 7).", 7.0)
    optimizer: str = _help(f"CW optimizer: {', '.join(choices(CwOptimizer))} (paper: adadelta).",
                           CwOptimizer.ADADELTA.value, choices=CwOptimizer)
    learning_rate: float | None = _help(
        "CW learning rate (default: the attack's default for the optimizer).", None)
    binary_search_steps: int = _help("CW binary-search steps over c.", 5)
    max_iterations: int = _help("CW optimizer steps per binary-search step.", 1000)
    initial_const: float = _help("CW initial c.", 1e-2)
    early_exit: str = _help(
        f"CW abort-early per {' or '.join(choices(CwEarlyExit))}: 'sample' stops each input "
        "on its own test and refills its slot (same results, less work).",
        CwEarlyExit.SAMPLE.value, choices=CwEarlyExit)

    def validate(self, prefix):
        name = self.named(prefix)
        v.check_real(name("confidence"), self.confidence, low=0.0)
        v.check_choice(name("optimizer"), self.optimizer, choices(CwOptimizer))
        if self.learning_rate is not None:
            v.check_real(name("learning_rate"), self.learning_rate, low=0.0, low_inclusive=False)
        v.check_int(name("binary_search_steps"), self.binary_search_steps, low=1)
        v.check_int(name("max_iterations"), self.max_iterations, low=1)
        v.check_real(name("initial_const"), self.initial_const, low=0.0, low_inclusive=False)
        v.check_choice(name("early_exit"), self.early_exit, choices(CwEarlyExit))
        return self


@dataclasses.dataclass(frozen=True, kw_only=True)
class SquareSettings(Settings):
    """L_inf Square Attack (Andriushchenko et al. 2020): score-based, no gradients."""
    eps: float = _help("Square eps (0.2, the FGSM/PGD budget).", 0.2)
    max_queries: int = _help("Square queries per input.", 5000)
    p_init: float = _help("Square initial fraction of the image a square covers.", 0.8)

    def validate(self, prefix):
        name = self.named(prefix)
        v.check_real(name("eps"), self.eps, low=0.0, high=1.0)
        v.check_int(name("max_queries"), self.max_queries, low=1)
        v.check_real(name("p_init"), self.p_init, low=0.0, high=1.0, low_inclusive=False)
        return self


class ApgdNorm(enum.StrEnum):
    LINF = "linf"
    L2 = "l2"


class _RadiusSettings:
    """validate() of the settings with a radius per norm, iterations, starts and targets
    (APGD and FAB-T): one range per norm (keras_edd.validation.check_eps)."""

    def validate(self, prefix):
        name = self.named(prefix)
        v.check_choice(name("norm"), self.norm, choices(ApgdNorm))
        v.check_eps(name("eps"), self.eps, ApgdNorm(self.norm).value)
        v.check_int(name("nb_iter"), self.nb_iter, low=1)
        v.check_int(name("nb_restarts"), self.nb_restarts, low=1)
        v.check_int(name("nb_targets"), self.nb_targets, low=1)
        return self


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApgdSettings(_RadiusSettings, Settings):
    """APGD (Croce & Hein 2020), AutoAttack's gradient attack: no step size to tune.

    The loss is fixed per registry row (apgd_ce: cross-entropy; apgd_t: targeted DLR
    over the `nb_targets` best real classes; apgd_dlr: DLR); with the outlier class
    (adaptive) every loss merges y with it, so only a real class other than y wins.
    """
    eps: float = _help("APGD radius (L_inf: the FGSM/PGD budget 0.2; L2: e.g. 2.0).", 0.2)
    norm: str = _help(f"APGD norm, one of {', '.join(choices(ApgdNorm))}.", ApgdNorm.LINF.value,
                      choices=ApgdNorm)
    nb_iter: int = _help("APGD iterations per run (AutoAttack: 100).", 100)
    nb_restarts: int = _help("APGD random starts per run (per target for apgd_t).", 1,
                             name="restarts")
    nb_targets: int = _fixed(9)  # used by the targeted loss only
    loss: str = _fixed("ce")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FabSettings(_RadiusSettings, Settings):
    """FAB-T (Croce & Hein 2020), AutoAttack's minimum-norm attack: FAB towards each of the
    `nb_targets` best real classes != y on the clean input, still aiming at any class != y
    (with the outlier class, a real one); an input counts when the smallest point found is
    within eps (keras_edd.attacks.fab)."""
    eps: float = _help("FAB-T radius (L_inf: the FGSM/PGD budget 0.2; L2: e.g. 2.0).", 0.2)
    norm: str = _help(f"FAB-T norm, one of {', '.join(choices(ApgdNorm))}.", ApgdNorm.LINF.value,
                      choices=ApgdNorm)
    nb_iter: int = _help("FAB-T iterations per target and start (AutoAttack: 100).", 100)
    nb_restarts: int = _help("FAB-T starts per target (AutoAttack: 1).", 1, name="restarts")
    nb_targets: int = _help("FAB-T target classes per input (AutoAttack: 9).", 9)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApgdTargetedSettings(ApgdSettings):
    """APGD-T: APGD on the targeted DLR loss, one run per target class."""
    nb_targets: int = _help("APGD-T target classes per input, the best real classes != y on "
                            "the clean input (AutoAttack: 9).", 9)
    loss: str = _fixed("dlr_targeted")
