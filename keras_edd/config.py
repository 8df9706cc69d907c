"""Frozen configuration dataclasses; `validate()` raises a clear ValueError.

Binaries turn their flags into these objects and pass them to one library
function; the library never reads absl FLAGS.
"""

import dataclasses
import math
import re

OPTIMIZERS = ("adam", "adadelta")
DEFAULT_LEARNING_RATES = {"adam": 1e-3, "adadelta": 0.1}  # adadelta 0.1 as in cleverhans v1
DEFENSES = ("none", "distillation", "extended")
DEFAULT_TEMPERATURES = {"none": 1.0, "distillation": 100.0, "extended": 4.0}
# \Z, not $: "$" also matches before a final newline, which would let "name\n" through.
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def _check(condition, message):
    if not condition:
        raise ValueError(message)


def _check_count(name, value, minimum=1):
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
           f"{name}={value!r}: must be an integer >= {minimum}")


def _check_real(name, value, low=-math.inf, high=math.inf, *, low_open=False, high_open=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    _check(ok, f"{name}={value!r}: allowed range is {interval}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset, from where (see keras_edd.data), and optional subset sizes."""
    dataset: str = "mnist"
    data_dir: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None

    def validate(self):
        from keras_edd.data import DATASETS  # light import, no TensorFlow
        _check(self.dataset in DATASETS,
               f"dataset={self.dataset!r}: allowed values are {', '.join(sorted(DATASETS))}")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None:
                _check_count(name, value)
        return self


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The optimisation of one model by the custom training loop."""
    epochs: int = 6
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float | None = None  # None: DEFAULT_LEARNING_RATES[optimizer]
    seed: int = 0

    def validate(self):
        _check_count("epochs", self.epochs)
        _check_count("batch_size", self.batch_size)
        _check(self.optimizer in OPTIMIZERS,
               f"optimizer={self.optimizer!r}: allowed values are {', '.join(OPTIMIZERS)}")
        if self.learning_rate is not None:
            _check_real("learning_rate", self.learning_rate, 0.0, low_open=True)
        _check_count("seed", self.seed, minimum=0)
        return self

    @property
    def resolved_learning_rate(self):
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return DEFAULT_LEARNING_RATES[self.optimizer]


DEFAULT_PENALTY_WEIGHT = 1e-3


@dataclasses.dataclass(frozen=True)
class DefenseConfig:
    """Which model to train: undefended, distillation baseline, or extended distillation.

    none:         f trained at T = 1 on one-hot labels.
    distillation: Papernot et al. (2016): teacher and student both trained at
                  temperature T (default 100) on softmax(z/T); no outlier class.
    extended:     Papernot & McDaniel (2017): teacher at T = 1, N MC-dropout passes
                  give sigma(x), labels over n + 1 classes with weight alpha, student
                  trained at T (default 4) plus penalty_weight * mean squared logit.
    Every model is deployed at T = 1.
    """
    defense: str = "extended"
    alpha: float = 0.9
    temperature: float | None = None  # None: DEFAULT_TEMPERATURES[defense]
    mc_passes: int = 20
    penalty_weight: float = DEFAULT_PENALTY_WEIGHT
    teacher_epochs: int = 6
    teacher_path: str | None = None  # reuse a trained teacher (.keras) instead of training one

    def __post_init__(self):
        # Store the default temperature itself, so that "no --temperature" and
        # "--temperature=4" are the same settings (and reuse the same run).
        if self.temperature is None and self.defense in DEFAULT_TEMPERATURES:
            object.__setattr__(self, "temperature", DEFAULT_TEMPERATURES[self.defense])

    def validate(self):
        _check(self.defense in DEFENSES,
               f"defense={self.defense!r}: allowed values are {', '.join(DEFENSES)}")
        _check_real("alpha", self.alpha, 0.0, 1.0)
        if self.temperature is not None:
            _check_real("temperature", self.temperature, 0.0, low_open=True)
        _check_count("mc_passes", self.mc_passes, minimum=2)
        _check_real("penalty_weight", self.penalty_weight, 0.0)
        _check_count("teacher_epochs", self.teacher_epochs)
        if self.teacher_path is not None:
            _check(self.defense != "none",
                   "teacher_path is set but defense='none' trains no student; "
                   "use --defense=extended or --defense=distillation")
            _check(str(self.teacher_path).endswith(".keras"),
                   f"teacher={self.teacher_path!r}: must be a .keras model file")
        return self

    @property
    def resolved_temperature(self):
        if self.temperature is not None:
            return float(self.temperature)
        return DEFAULT_TEMPERATURES[self.defense]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A training run: data, optimisation, defense, and where its directory lives."""
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    defense: DefenseConfig = DefenseConfig()
    output_dir: str = "saved_models"
    run_name: str | None = None  # None: derived from the settings, so a rerun resumes
    progress: bool = True

    def validate(self):
        self.data.validate()
        self.train.validate()
        self.defense.validate()
        _check_output(self.output_dir, self.run_name)
        return self

    def resolved_run_name(self, dataset_name):
        """The run directory name; the default names the dataset actually loaded
        (e.g. mnist_sample when MNIST fell back to the bundled sample)."""
        if self.run_name:
            return self.run_name
        d = self.defense
        if d.defense == "none":
            detail = ""
        elif d.defense == "distillation":
            detail = f"-T{d.resolved_temperature:g}"
        else:
            detail = f"-a{d.alpha:g}-T{d.resolved_temperature:g}"
        return f"{dataset_name}-{d.defense}{detail}-e{self.train.epochs}-s{self.train.seed}"

    def to_dict(self):
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- evaluation

ATTACKS = ("fgsm", "pgd", "jsma", "cw")
JSMA_TARGET_MODES = ("random", "all")
CW_OPTIMIZERS = ("adadelta", "adam")
PGD_LOSSES = ("ce", "cw")
DEFAULT_SWEEP_EPS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
DEFAULT_SWEEP_GAMMA = (0.01, 0.03, 0.07, 0.14, 0.25)
DEFAULT_SWEEP_KAPPA = (0.0, 7.0, 14.0)


def _check_values(name, values, low, high, *, low_open=False):
    _check(isinstance(values, tuple) and len(values) > 0,
           f"{name}={values!r}: must be a non-empty list of numbers")
    for value in values:
        _check_real(name, value, low, high, low_open=low_open)


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Settings of every attack; defaults are the paper's (Papernot & McDaniel, 2017).

    fgsm_eps:  eps of FGSM (paper: 0.2).
    pgd_*:     L_inf PGD (an extra attack): eps, step size, steps, restarts, and
               the loss ascended: "ce" (cross-entropy) or "cw" (logit margin, which
               still has gradients where a saturated softmax masks them).
    jsma_*:    JSMA theta (paper: 1), Gamma (paper: 0.07), how targets t != y are
               drawn ("random": one per input, "all": every class, best kept).
    cw_*:      CW-L2 with confidence kappa (paper: 7) and AdaDelta; learning rate
               None = the attack's default for that optimizer.
    batch_size: inputs per attack call; seed: PGD starts and JSMA targets.
    """
    fgsm_eps: float = 0.2
    pgd_eps: float = 0.2
    pgd_eps_iter: float = 0.01
    pgd_nb_iter: int = 40
    pgd_restarts: int = 1
    pgd_loss: str = "ce"
    jsma_theta: float = 1.0
    jsma_gamma: float = 0.07
    jsma_target_mode: str = "random"
    cw_confidence: float = 7.0
    cw_optimizer: str = "adadelta"
    cw_learning_rate: float | None = None
    cw_binary_search_steps: int = 5
    cw_max_iterations: int = 1000
    cw_initial_const: float = 1e-2
    batch_size: int = 100
    seed: int = 0

    def validate(self):
        _check_real("fgsm_eps", self.fgsm_eps, 0.0, 1.0)
        _check_real("pgd_eps", self.pgd_eps, 0.0, 1.0)
        _check_real("pgd_eps_iter", self.pgd_eps_iter, 0.0, 1.0, low_open=True)
        _check_count("pgd_nb_iter", self.pgd_nb_iter)
        _check_count("pgd_restarts", self.pgd_restarts)
        _check(self.pgd_loss in PGD_LOSSES,
               f"pgd_loss={self.pgd_loss!r}: allowed values are {', '.join(PGD_LOSSES)}")
        _check_real("jsma_theta", self.jsma_theta, -1.0, 1.0)
        _check(self.jsma_theta != 0, "jsma_theta=0: must be non-zero (> 0 increases pixels)")
        _check_real("jsma_gamma", self.jsma_gamma, 0.0, 1.0, low_open=True)
        _check(self.jsma_target_mode in JSMA_TARGET_MODES,
               f"jsma_target_mode={self.jsma_target_mode!r}: allowed values are "
               f"{', '.join(JSMA_TARGET_MODES)}")
        _check_real("cw_confidence", self.cw_confidence, 0.0)
        _check(self.cw_optimizer in CW_OPTIMIZERS,
               f"cw_optimizer={self.cw_optimizer!r}: allowed values are {', '.join(CW_OPTIMIZERS)}")
        if self.cw_learning_rate is not None:
            _check_real("cw_learning_rate", self.cw_learning_rate, 0.0, low_open=True)
        _check_count("cw_binary_search_steps", self.cw_binary_search_steps)
        _check_count("cw_max_iterations", self.cw_max_iterations)
        _check_real("cw_initial_const", self.cw_initial_const, 0.0, low_open=True)
        _check_count("attack_batch_size", self.batch_size)
        _check_count("attack_seed", self.seed, minimum=0)
        return self

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What is attacked and how much of it, shared by white-box, black-box and reproduce.

    The first `num_examples` test inputs are attacked (fewer for JSMA and CW when
    `num_examples_jsma` / `num_examples_cw` are set, as they are slow). Rates are
    reported over all of them ("unfiltered") and over those the target classifies
    correctly when clean ("filtered"). `adaptive` adds, for models with an outlier
    class, attacks that avoid it. Sweeps rerun each attack over a range of budgets
    (eps, Gamma, kappa) on `sweep_num_examples` inputs; a sweep whose best success
    (1 - recovered) stays below `masking_threshold` is flagged as possible
    gradient masking.
    """
    attacks: tuple = ATTACKS
    num_examples: int = 1000
    num_examples_jsma: int | None = 200
    num_examples_cw: int | None = 100
    adaptive: bool = True
    sweeps: bool = True
    sweep_attacks: tuple | None = None  # None: every attack in `attacks`
    sweep_eps: tuple = DEFAULT_SWEEP_EPS
    sweep_gamma: tuple = DEFAULT_SWEEP_GAMMA
    sweep_kappa: tuple = DEFAULT_SWEEP_KAPPA
    sweep_num_examples: int = 200
    masking_threshold: float = 0.95
    check_examples: int = 100
    image_examples: int = 8
    attack: AttackConfig = AttackConfig()

    def validate(self):
        for field in ("attacks", "sweep_attacks"):
            names = getattr(self, field)
            if names is None and field == "sweep_attacks":
                continue
            _check(isinstance(names, tuple) and len(names) > 0,
                   f"{field}={names!r}: name at least one of {', '.join(ATTACKS)}")
            for name in names:
                _check(name in ATTACKS,
                       f"{field}: unknown attack {name!r}; allowed values are {', '.join(ATTACKS)}")
            _check(len(set(names)) == len(names), f"{field}={','.join(names)}: repeated attack")
        _check_count("num_examples", self.num_examples)
        for name in ("num_examples_jsma", "num_examples_cw"):
            if getattr(self, name) is not None:
                _check_count(name, getattr(self, name))
        _check_values("sweep_eps", self.sweep_eps, 0.0, 1.0, low_open=True)
        _check_values("sweep_gamma", self.sweep_gamma, 0.0, 1.0, low_open=True)
        _check_values("sweep_kappa", self.sweep_kappa, 0.0, math.inf)
        _check_count("sweep_num_examples", self.sweep_num_examples)
        _check_real("masking_threshold", self.masking_threshold, 0.0, 1.0)
        _check_count("check_examples", self.check_examples)
        _check_count("image_examples", self.image_examples, minimum=0)
        self.attack.validate()
        return self

    def examples_for(self, attack):
        """How many of the attacked inputs `attack` gets (the per-attack cap applied)."""
        cap = {"jsma": self.num_examples_jsma, "cw": self.num_examples_cw}.get(attack)
        return self.num_examples if cap is None else min(cap, self.num_examples)

    @property
    def resolved_sweep_attacks(self):
        if not self.sweeps:
            return ()
        return self.attacks if self.sweep_attacks is None else self.sweep_attacks

    def to_dict(self):
        return dataclasses.asdict(self)


def _check_model_path(name, path):
    import os
    _check(bool(path), f"{name}: give a .keras model file")
    _check(str(path).endswith(".keras"), f"{name}={path!r}: must be a .keras model file")
    _check(os.path.isfile(path), f"{name}={path!r}: no such file")


@dataclasses.dataclass(frozen=True)
class WhiteboxConfig:
    """bin/eval_whitebox: attacks computed on the evaluated model itself."""
    model_path: str = ""
    data: DataConfig = DataConfig()
    evaluation: EvalConfig = EvalConfig()
    output_dir: str = "saved_models"
    run_name: str | None = None  # None: whitebox-<model run dir>-<model file>
    progress: bool = True

    def validate(self):
        _check_model_path("model", self.model_path)
        self.data.validate()
        self.evaluation.validate()
        _check_output(self.output_dir, self.run_name)
        return self

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BlackboxConfig:
    """bin/eval_blackbox: attacks computed on surrogates, evaluated on the target.

    `surrogates` is a tuple of (name, path) pairs.
    """
    target_path: str = ""
    surrogates: tuple = ()
    data: DataConfig = DataConfig()
    evaluation: EvalConfig = EvalConfig()
    output_dir: str = "saved_models"
    run_name: str | None = None  # None: blackbox-<target run dir>-<target file>
    progress: bool = True

    def validate(self):
        _check_model_path("target", self.target_path)
        _check(isinstance(self.surrogates, tuple) and len(self.surrogates) > 0,
               "surrogate: give at least one surrogate model (.keras)")
        names = [name for name, _ in self.surrogates]
        _check(len(set(names)) == len(names), f"surrogate: repeated name in {names}")
        for name, path in self.surrogates:
            _check(bool(_RUN_NAME.match(name)), f"surrogate name {name!r}: use letters, "
                   "digits, '.', '_' or '-'")
            _check_model_path(f"surrogate {name}", path)
        self.data.validate()
        self.evaluation.validate()
        _check_output(self.output_dir, self.run_name)
        return self

    def to_dict(self):
        return dataclasses.asdict(self)


def _check_output(output_dir, run_name):
    _check(bool(output_dir), "output_dir='': must name a directory")
    if run_name is not None:
        _check(bool(_RUN_NAME.match(run_name)),
               f"run_name={run_name!r}: use letters, digits, '.', '_' or '-' "
               "(not starting with '.' or '-')")


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
    """bin/reproduce: the whole paper pipeline and one report.

    Trains (or reuses, via pipeline.train_run) in `model_dir`: the undefended
    model, extended distillation (alpha, T, N of `extended`), the defensive
    distillation baseline at `distillation_temperature`, and two surrogates for
    black-box transfer: U (undefended, seed + 1) and D (extended distillation
    distilled from U, seed + 2). Then runs every attack white-box on the three
    targets and black-box from U and D, and writes one report.
    """
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig(epochs=50)
    extended: DefenseConfig = DefenseConfig()
    distillation_temperature: float = 100.0
    evaluation: EvalConfig = EvalConfig()
    model_dir: str | None = None  # None: output_dir, where bin/train puts its runs
    output_dir: str = "saved_models"
    run_name: str | None = None  # None: reproduce-<dataset>-e<epochs>-s<seed>
    progress: bool = True

    def validate(self):
        self.data.validate()
        self.train.validate()
        _check(self.extended.defense == "extended",
               f"extended.defense={self.extended.defense!r}: must be 'extended'")
        _check(self.extended.teacher_path is None,
               "extended.teacher_path: reproduce trains its own teachers")
        self.extended.validate()
        _check_real("distillation_temperature", self.distillation_temperature, 0.0,
                    low_open=True)
        self.evaluation.validate()
        _check_output(self.output_dir, self.run_name)
        if self.model_dir is not None:
            _check(bool(self.model_dir), "model_dir='': must name a directory")
        return self

    @property
    def resolved_model_dir(self):
        return self.model_dir or self.output_dir

    def resolved_run_name(self, dataset_name):
        if self.run_name:
            return self.run_name
        return f"reproduce-{dataset_name}-e{self.train.epochs}-s{self.train.seed}"

    def to_dict(self):
        return dataclasses.asdict(self)
