"""The attack registry: one row per attack; dispatch, budgets, sweeps and flags read it.

A row (`Attack`) names
  function     the attack, as "module:function" (imported on first use, so flag
               parsing and config validation stay free of TensorFlow);
  budget       the function's keyword that is swept (eps, gamma, confidence);
  settings     the default settings: a frozen dataclass whose field names are the
               function's own keyword names, passed to it as they are;
  max_examples an optional default cap on the inputs it attacks (slow attacks);
  success      how the attack judges its own success (SuccessCriterion), read by
               `attack_succeeded` for the `attack_failed` rate of the reports.
Everything else is derived: `attack_params` (settings at a budget), the batched calls
(keras_edd.evaluation.crafting.run_attack, a per-batch seed for functions that take
`seed`), the attack's own success (keras_edd.evaluation.scoring.attack_succeeded), `shard_align`
(how a multi-worker craft splits the inputs), `budget_of`,
the flags `--<name>_<field>` and `--num_examples_<name>` (keras_edd.setting_fields walks
the settings), the settings saved in flags.json (of the attacks a run runs: `settings_keys`),
and AttackConfig (at the end), the settings of every attack in one config.

A new attack is its file under keras_edd/attacks/ and one row in _ROWS (plus, when it has
options of its own, their settings dataclass in keras_edd.attack_settings),
e.g. CW with Adam:
    Attack(name="cw_adam", function="keras_edd.attacks.carlini_wagner_l2:carlini_wagner_l2",
           budget="confidence", settings=CwSettings(optimizer="adam"), max_examples=100,
           sweep="kappa", resolve=_cw_resolved)
"""

import dataclasses
import functools
import importlib
import inspect
import math

from keras_edd import validation as v
from keras_edd.attack_settings import (CW_LEARNING_RATES, ApgdSettings, ApgdTargetedSettings,
                                       CwEarlyExit, CwOptimizer, CwSettings, FabSettings,
                                       FgsmSettings,
                                       JsmaSettings, PgdSettings, Settings, SquareSettings,
                                       SuccessCriterion)
from keras_edd.setting_fields import flag, per_key


def _pgd_at_budget(settings, eps):
    """PGD's step size scales with eps (eps_iter / eps fixed), so a larger ball can
    still be crossed in nb_iter steps."""
    eps_iter = settings.eps_iter if settings.eps == 0 else settings.eps_iter * eps / settings.eps
    return dataclasses.replace(settings, eps=eps, eps_iter=eps_iter)


def _cw_per_input(params):
    """CW is per input with early_exit="sample" (each input in its own slot, stopped by
    its own test: tests/test_attacks_cw.py), not with "batch" (the batch's loss stops it)."""
    return params["early_exit"] == CwEarlyExit.SAMPLE


def _cw_resolved(settings):
    """learning_rate=None: the attack's own default for the optimizer."""
    if settings.learning_rate is not None:
        return settings
    return dataclasses.replace(settings, learning_rate=CW_LEARNING_RATES[settings.optimizer])


@dataclasses.dataclass(frozen=True, kw_only=True)
class Attack:
    """One registry row; see the module docstring.

    sweep: the budget's name in reports and in --sweep_<sweep> (default: budget).
    real_targets: the attack picks its own targets among the real classes (JSMA),
      so its plain and adaptive variants are one run, told the outlier class.
    at_budget(settings, value): the settings at another budget (default: the
      budget field replaced). resolve(settings): defaults that depend on others.
    by_default: part of the default --attacks (False: run only when named).
    success: a SuccessCriterion, for the attack_failed rate.
    gradient_free: uses only the model's outputs (Square): where it succeeds and a
      gradient attack fails, the report flags gradient masking.
    masking_reference: a strong attack (APGD, and every gradient-free one): where it
      succeeds and another gradient attack fails on the same target and variant, the
      report flags gradient masking (evaluation.gradient_free_masking).
    masking_comparable: its failure next to a reference's success says gradient
      masking. False for a one-step attack (FGSM is expected to be weaker than an
      iterative one; zero gradients show in the checks) and for an attack under
      another kind of budget (JSMA's L0 Gamma, not the references' L_inf eps).
    chunk_size: inputs per call of the function, instead of the attack batch
      size (an attack that batches internally, e.g. CW keeping a batch of slots
      full, gets large chunks; progress still moves once per chunk).
    per_input: each input's result is independent of the call it is in (of the
      other inputs, their number and order, and the call's position): True, False,
      or a function of the attack's params (CW: only with early_exit="sample",
      whose slots run every input on its own). A multi-worker craft then splits
      the inputs one by one instead of by whole chunks (`shard_align`). Never for
      an attack that takes `seed` (its seed is the chunk's), nor for one that
      batches its stopping rule (CW with early_exit="batch").
    """
    name: str
    function: str
    budget: str
    settings: Settings
    max_examples: int | None = None
    sweep: str | None = None
    real_targets: bool = False
    at_budget: object = None
    resolve: object = None
    by_default: bool = True
    success: str = SuccessCriterion.MARGIN.value
    gradient_free: bool = False
    masking_reference: bool = False
    masking_comparable: bool = True
    chunk_size: int | None = None
    per_input: object = False

    @property
    def flags_masking(self):
        """Its success next to another attack's failure is a gradient-masking warning."""
        return self.masking_reference or self.gradient_free

    def is_per_input(self, params):
        """`per_input` at these params (the attack's keyword settings)."""
        return bool(self.per_input(params) if callable(self.per_input) else self.per_input)

    @property
    def sweep_name(self):
        return self.sweep or self.budget

    @functools.cached_property
    def fn(self):
        module, name = self.function.split(":")
        return getattr(importlib.import_module(module), name)

    @functools.cached_property
    def takes_seed(self):
        return "seed" in inspect.signature(self.fn).parameters

    @functools.cached_property
    def takes_details(self):
        return "return_details" in inspect.signature(self.fn).parameters

    @functools.cached_property
    def takes_progress(self):
        """The function reports finished inputs during one call (`progress=`)."""
        return "progress" in inspect.signature(self.fn).parameters


_ROWS = (
    Attack(name="fgsm", function="keras_edd.attacks.fgsm:fgsm", budget="eps",
           settings=FgsmSettings(), masking_comparable=False),
    Attack(name="pgd", function="keras_edd.attacks.pgd:pgd", budget="eps",
           settings=PgdSettings(), at_budget=_pgd_at_budget),
    Attack(name="jsma", function="keras_edd.attacks.jsma:jsma_untargeted", budget="gamma",
           settings=JsmaSettings(), max_examples=200, real_targets=True,
           masking_comparable=False,
           success=SuccessCriterion.REPORTED.value),
    Attack(name="cw", function="keras_edd.attacks.carlini_wagner_l2:carlini_wagner_l2",
           budget="confidence", settings=CwSettings(), max_examples=100, sweep="kappa",
           resolve=_cw_resolved, chunk_size=1024, per_input=_cw_per_input,
           success=SuccessCriterion.REPORTED.value),
    # Carlini's own optimiser (Adam, lr 0.01) next to the paper's AdaDelta, same kappa
    # and 5 x 1000 steps: a CW failure can then be told apart from an optimiser's.
    Attack(name="cw_adam", function="keras_edd.attacks.carlini_wagner_l2:carlini_wagner_l2",
           budget="confidence", settings=CwSettings(optimizer=CwOptimizer.ADAM.value),
           max_examples=100, sweep="kappa", resolve=_cw_resolved, chunk_size=1024,
           per_input=_cw_per_input, success=SuccessCriterion.REPORTED.value),
    # Gradient-free confirmation at the FGSM/PGD budget (see `gradient_free`).
    Attack(name="square", function="keras_edd.attacks.square:square", budget="eps",
           settings=SquareSettings(), max_examples=200, gradient_free=True),
    # AutoAttack's two gradient attacks: APGD on cross-entropy and targeted DLR (APGD-T);
    # DLR alone on request. Each is a reference for the masking flags.
    Attack(name="apgd_ce", function="keras_edd.attacks.apgd:apgd", budget="eps",
           settings=ApgdSettings(loss="ce"), masking_reference=True),
    Attack(name="apgd_t", function="keras_edd.attacks.apgd:apgd", budget="eps",
           settings=ApgdTargetedSettings(), masking_reference=True),
    Attack(name="apgd_dlr", function="keras_edd.attacks.apgd:apgd", budget="eps",
           settings=ApgdSettings(loss="dlr"), masking_reference=True, by_default=False),
    # AutoAttack's third attack, minimum-norm FAB-T; on request (keras_edd.evaluate runs
    # it in the standard list).
    Attack(name="fab_t", function="keras_edd.attacks.fab:fab", budget="eps",
           settings=FabSettings(), masking_reference=True, by_default=False),
)
ATTACKS = {row.name: row for row in _ROWS}
NAMES = tuple(ATTACKS)
DEFAULT_NAMES = tuple(row.name for row in _ROWS if row.by_default)


def get(name):
    """The registry row of `name`; ValueError naming the allowed values otherwise."""
    if name not in ATTACKS:
        raise ValueError(f"attack={name!r}: allowed values are {', '.join(NAMES)}")
    return ATTACKS[name]


def attack_params(name, attack_config, budget=None):
    """The keyword settings of one attack (an ordered dict), at `budget` if given."""
    row = get(name)
    settings = attack_config.settings_for(name)
    if budget is not None:
        if row.at_budget is not None:
            settings = row.at_budget(settings, float(budget))
        else:
            settings = dataclasses.replace(settings, **{row.budget: float(budget)})
    if row.resolve is not None:
        settings = row.resolve(settings)
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def budget_of(name, params):
    """(name, value) of the budget swept for attack `name`, e.g. ("eps", 0.2)."""
    row = get(name)
    return row.sweep_name, params[row.budget]


def chunk_size(name, batch_size):
    """Inputs per call of attack `name`: its row's chunk_size, else `batch_size`."""
    return get(name).chunk_size or batch_size


def shard_align(name, params, batch_size):
    """The block size a multi-worker craft of `name` at `params` splits its inputs by.

    1 for an attack that is per input at these params (see Attack.per_input): any
    split gives each input the result one process gives it (to float32 rounding:
    batched kernels round differently), so every worker gets a share even of fewer
    inputs than one chunk. Otherwise the chunk
    (`chunk_size(name, batch_size)`): whole calls, with a single process's seeds
    and batches.
    """
    return 1 if get(name).is_per_input(params) else chunk_size(name, batch_size)




@dataclasses.dataclass(frozen=True, kw_only=True)
class AttackConfig:
    """Settings of every attack of the registry (keras_edd.config.EvalConfig.attack).

    settings: attack name -> its settings dataclass (fields = the attack function's
      keyword names); attacks left out get the registry's defaults.
    batch_size: inputs per attack call; seed: of the attacks that take one (PGD
      starts, JSMA targets), offset by each batch's first index.
    Saved (to_dict) under the flag names, e.g. {"pgd_restarts": 1, "cw_confidence": 7.0}.
    """
    settings: dict = dataclasses.field(default_factory=dict, metadata=per_key(
        lambda: {name: row.settings for name, row in ATTACKS.items()}))
    batch_size: int = dataclasses.field(default=100, metadata=flag(
        "attack_batch_size", "Inputs per attack call."))
    seed: int = dataclasses.field(default=0, metadata=flag(
        "attack_seed", "Seed of the attacks that take one (PGD starts, JSMA targets)."))

    def __post_init__(self):
        unknown = sorted(set(self.settings) - set(ATTACKS))
        if unknown:
            raise ValueError(f"AttackConfig settings: unknown attack {unknown[0]!r}; allowed "
                             f"values are {', '.join(NAMES)}")
        merged = {name: row.settings for name, row in ATTACKS.items()}
        merged.update(self.settings)
        object.__setattr__(self, "settings", merged)

    def settings_for(self, name):
        return self.settings[name]

    def validate(self):
        for name, settings in self.settings.items():
            row = get(name)
            v.require(isinstance(settings, type(row.settings)),
                      f"settings of {name!r}: expected {type(row.settings).__name__}, "
                      f"got {type(settings).__name__}")
            settings.validate(f"{name}_")
        v.check_int("attack_batch_size", self.batch_size, low=1)
        v.check_int("attack_seed", self.seed, low=0)
        return self

    def check_input_shape(self, input_shape):
        """Once the data is known: every L2 radius within the diameter of the [0, 1] input
        box, sqrt(number of input values) (28 for MNIST). Raises a one-line ValueError."""
        size = math.prod(input_shape)
        for name, settings in self.settings.items():
            if getattr(settings, "norm", None) == "l2" and hasattr(settings, "eps"):
                v.check_eps(f"{name}_eps", settings.eps, "l2", size=size)

    def to_dict(self, names=None):
        """The settings under their flag names: of the attacks `names` (default: all)."""
        out = {}
        for name, settings in self.settings.items():
            if names is None or name in names:
                out.update(settings_keys(name, settings))
        out.update(batch_size=self.batch_size, seed=self.seed)
        return out


def settings_keys(name, settings=None):
    """{flag name: value} of attack `name`'s settings (default: the registry's), e.g.
    {"pgd_eps": 0.2, "pgd_restarts": 1, ...}: how they are saved in flags.json."""
    settings = get(name).settings if settings is None else settings
    return {f"{name}_{suffix}": getattr(settings, field.name)
            for field, suffix in settings.flag_fields()}
