"""The binaries' run configurations: what bin/train, bin/eval_whitebox,
bin/eval_blackbox and bin/reproduce each turn their flags into.

Each combines the stage configs of keras_edd.config (data, training, defense,
evaluation, surrogate J) with where its run directory lives; `validate()` checks
the parts and the output settings and raises a clear ValueError.
"""

import dataclasses
import os
import re

from keras_edd.config import (PRESETS, DataConfig, DefenseConfig, DistributionConfig, EvalConfig,
                              SubstituteConfig, TrainConfig, _Config)
from keras_edd.setting_fields import flag, nested, no_flag
from keras_edd.validation import check_choice, check_int, check_real, require

# \Z, not $: "$" also matches before a final newline, which would let "name\n" through.
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_COLLECTION = re.compile(r"^[A-Za-z0-9_-]+\Z")


def _field(default, metadata):
    return dataclasses.field(default=default, metadata=metadata)


# The fields every binary shares: where the run directory lives, progress, distribution,
# and (the evaluation binaries) the preset its settings came from.
def _output_dir():
    return _field("saved_models", flag("output_dir", "Parent of the run directory."))


def _run_name():
    return _field(None, flag("run_name", "Run directory name (default: derived)."))


def _progress():
    return _field(True, flag("progress", "Print progress."))


def _distribution():
    # Saved only when not the default (one process, one device): older runs still match.
    return _field(DistributionConfig(), nested(omit_default=True))


def _preset():
    # The preset the settings came from (recorded only; keras_edd.presets).
    return _field(None, flag(
        "preset", f"Settings preset, one of {', '.join(PRESETS)} (any flag given explicitly "
        "overrides it). quick: a few-minute demo on the bundled MNIST sample, tiny epochs and "
        "example counts. paper: the paper's settings (50 distilled epochs, T=100 baseline, "
        "N=20, alpha=0.9, T=4; 1,000 test digits for the paper's attacks on the paper's "
        "models, 100 for the slow attacks on the others; CW AdaDelta kappa=7, 5 x 1,000 steps; "
        "JSMA Gamma=7%; FGSM eps=0.2) with FGSM/PGD/JSMA sweeps on 200 digits and no CW kappa "
        "sweep (it would add 60 % to the CW work).", choices=PRESETS))


def _model(what):
    return _field("", no_flag(f"set by the binary from its {what} flag"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig(_Config):
    """A training run: data, optimisation, defense, and where its directory lives."""
    data: DataConfig = _field(DataConfig(), nested())
    train: TrainConfig = _field(TrainConfig(), nested())
    defense: DefenseConfig = _field(DefenseConfig(), nested())
    output_dir: str = _output_dir()
    run_name: str | None = _run_name()  # None: derived from the settings, so a rerun resumes
    distribution: DistributionConfig = _distribution()
    progress: bool = _progress()

    def validate(self):
        self.data.validate()
        self.train.validate()
        self.defense.validate()
        self.distribution.validate()
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
        elif d.defense == "adversarial":
            detail = f"-{d.adv_train_attack}-eps{d.adv_train_eps:g}"
        elif d.defense == "distillation":
            detail = f"-T{d.resolved_temperature:g}"
        else:
            detail = f"-a{d.alpha:g}-T{d.resolved_temperature:g}"
        precision = "" if self.train.precision == "float32" else "-bf16"
        return (f"{dataset_name}-{d.defense}{detail}-e{self.train.epochs}-s{self.train.seed}"
                f"{precision}")


# The name that asks bin/eval_blackbox for surrogate J (trained here, not loaded).
JACOBIAN_SURROGATE = "J"


def _check_model_path(name, path):
    require(bool(path), f"{name}: give a .keras model file")
    require(str(path).endswith(".keras"), f"{name}={path!r}: must be a .keras model file")
    require(os.path.isfile(path), f"{name}={path!r}: no such file")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WhiteboxConfig(_Config):
    """bin/eval_whitebox: attacks computed on the evaluated model itself.

    `standard` (--attacks=standard): keras_edd.evaluate's standard list (AutoAttack:
    apgd_ce, apgd_t, fab_t, square) on the first evaluation.num_examples test digits
    at apgd_ce's eps and norm, adaptive for a model with an outlier class, instead of
    the registry attacks (evaluation.attacks is then ("apgd_ce",), whose settings give
    the radius, and no sweeps); one device.
    """
    model_path: str = _model("--model")
    data: DataConfig = _field(DataConfig(), nested())
    evaluation: EvalConfig = _field(EvalConfig(), nested())
    standard: bool = _field(False, no_flag("set by the binary from --attacks=standard",
                                           omit_default=True))
    output_dir: str = _output_dir()
    run_name: str | None = _run_name()  # None: whitebox-<model run dir>-<model file>
    distribution: DistributionConfig = _distribution()
    progress: bool = _progress()
    preset: str | None = _preset()

    def validate(self):
        _check_model_path("model", self.model_path)
        self.data.validate()
        self.evaluation.validate()
        self.distribution.validate()
        require(not self.standard or self.distribution.kind == "none",
                f"attacks=standard runs on one device: drop "
                f"--distribution={self.distribution.kind}")
        _check_output(self.output_dir, self.run_name, self.preset)
        return self


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlackboxConfig(_Config):
    """bin/eval_blackbox: attacks computed on surrogates, evaluated on the target.

    `surrogates` is a tuple of (name, path) pairs; `jacobian_substitute` adds
    surrogate J (named "J"), trained against the target with `substitute`'s
    settings and the attack seed.
    """
    target_path: str = _model("--target")
    surrogates: tuple = _field((), no_flag("set by the binary from its --surrogate flags"))
    jacobian_substitute: bool = _field(False, no_flag(
        "set by the binary: the --surrogate entry J", omit_default=True))
    substitute: SubstituteConfig = _field(SubstituteConfig(), nested(omit_default=True))
    data: DataConfig = _field(DataConfig(), nested())
    evaluation: EvalConfig = _field(EvalConfig(), nested())
    output_dir: str = _output_dir()
    run_name: str | None = _run_name()  # None: blackbox-<target run dir>-<target file>
    distribution: DistributionConfig = _distribution()
    progress: bool = _progress()
    preset: str | None = _preset()

    def validate(self):
        _check_model_path("target", self.target_path)
        require(isinstance(self.surrogates, tuple) and (
            len(self.surrogates) > 0 or self.jacobian_substitute),
                f"surrogate: give at least one surrogate model (.keras) or "
                f"{JACOBIAN_SURROGATE}")
        names = [name for name, _ in self.surrogates]
        require(len(set(names)) == len(names), f"surrogate: repeated name in {names}")
        for name, path in self.surrogates:
            require(name != JACOBIAN_SURROGATE, f"surrogate name {JACOBIAN_SURROGATE!r} is "
                    "reserved for the Jacobian-augmented substitute: give it without a path")
            require(bool(_RUN_NAME.match(name)), f"surrogate name {name!r}: use letters, "
                    "digits, '.', '_' or '-'")
            _check_model_path(f"surrogate {name}", path)
        self.substitute.validate()
        self.data.validate()
        self.evaluation.validate()
        self.distribution.validate()
        _check_output(self.output_dir, self.run_name, self.preset)
        return self


def _check_output(output_dir, run_name, preset=None):
    if preset is not None:
        check_choice("preset", preset, PRESETS)
    require(bool(output_dir), "output_dir='': must name a directory")
    if run_name is not None:
        require(bool(_RUN_NAME.match(run_name)),
                f"run_name={run_name!r}: use letters, digits, '.', '_' or '-' "
                "(not starting with '.' or '-')")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReproduceConfig(_Config):
    """bin/reproduce: the whole paper pipeline and one report.

    Trains (or reuses, via train_run.train_run) in `model_dir`: the undefended
    model, extended distillation (alpha, T, N of `extended`), the defensive
    distillation baseline at `distillation_temperature`, and two surrogates for
    black-box transfer: U (undefended, seed + 1) and D (extended distillation
    distilled from U, seed + 2), and the adversarial-training baseline
    (`adversarial`, trained for `adversarial_epochs`, None: teacher_epochs like the
    undefended model). With
    `jacobian_substitute`, also one surrogate J per target (J_<target>, trained
    against it with `substitute`'s settings and seed + 3, scored on it alone).
    Then runs every attack white-box on the four targets and black-box from U, D
    (and each J), with `standard` AutoAttack's standard evaluation of each target at
    L_inf `standard_eps` on the first `standard_num_examples` test digits and its
    robustness curve on the first `curve_num_examples`, and writes one report.
    """
    data: DataConfig = _field(DataConfig(), nested())
    train: TrainConfig = _field(TrainConfig(epochs=50), nested())
    extended: DefenseConfig = _field(DefenseConfig(), nested(
        fixed={"defense": "extended", "teacher_path": None}))
    distillation_temperature: float = _field(100.0, flag(
        "distillation_temperature", "T of the defensive-distillation baseline (paper: 100)."))
    adversarial: DefenseConfig = _field(DefenseConfig(defense="adversarial"), nested(
        fixed={"defense": "adversarial", "teacher_path": None}))
    # Saved only when set: reproduce runs made before it existed stay reusable.
    adversarial_epochs: int | None = _field(None, flag(
        "adversarial_epochs", "Epochs of the adversarial-training baseline (0: "
        "--teacher_epochs, as f).", zero_is_none=True, omit_default=True))
    evaluation: EvalConfig = _field(EvalConfig(), nested(include=("extra_examples",)))
    # Saved only when not the default: reproduce runs made before J existed stay reusable.
    jacobian_substitute: bool = _field(True, flag(
        "jacobian_substitute", "Also train surrogate J against each target (J_<target>, "
        "seed + 3) and score its black-box attacks on that target.", omit_default=True))
    substitute: SubstituteConfig = _field(SubstituteConfig(), nested(omit_default=True))
    # AutoAttack's standard evaluation and the robustness curves (keras_edd.runs.standard_run).
    # Saved only when not the default (the paper's): paper runs made before they existed
    # stay reusable, and a rerun of one adds just these stages.
    standard: bool = _field(True, flag(
        "standard", "Also run AutoAttack's standard evaluation (keras_edd.evaluate, "
        "attacks=standard: APGD-CE, APGD-T, FAB-T, Square; adaptive with the outlier class) "
        "and the robustness curve (FAB + FAB-T) of each target.", omit_default=True))
    standard_eps: float = _field(0.3, flag(
        "standard_eps", "L_inf radius of the standard evaluation (MNIST: 0.3, AutoAttack's "
        "convention); the robustness curves' grid runs from 0 to twice it.",
        omit_default=True))
    standard_num_examples: int = _field(1000, flag(
        "standard_num_examples", "Test digits (the first ones) of the standard evaluation "
        "of each target (at most the test set, like --num_examples).", omit_default=True))
    curve_num_examples: int = _field(200, flag(
        "curve_num_examples", "Test digits (the first ones) of each target's robustness "
        "curve (at most the test set).", omit_default=True))
    # None: output_dir, where bin/train puts its runs
    model_dir: str | None = _field(None, flag(
        "model_dir", "Where the trained runs live and are reused (default: --output_dir)."))
    # The pretrained collection reused when its models match ("none": train them all).
    # Not a setting: the reused models are the ones these settings would train.
    pretrained: str = _field("paper", flag(
        "pretrained", "Pretrained collection (saved_models/<name>/) whose models are reused "
        "instead of trained when their settings and data match; none: train every model "
        "here.", omit_default=True))
    output_dir: str = _output_dir()
    run_name: str | None = _run_name()  # None: reproduce-<dataset>-e<epochs>-s<seed>
    distribution: DistributionConfig = _distribution()
    progress: bool = _progress()
    preset: str | None = _preset()

    def validate(self):
        self.data.validate()
        self.train.validate()
        require(self.extended.defense == "extended",
                f"extended.defense={self.extended.defense!r}: must be 'extended'")
        require(self.extended.teacher_path is None,
                "extended.teacher_path: reproduce trains its own teachers")
        self.extended.validate()
        require(self.adversarial.defense == "adversarial",
                f"adversarial.defense={self.adversarial.defense!r}: must be 'adversarial'")
        self.adversarial.validate()
        self.substitute.validate()
        if self.adversarial_epochs is not None:
            check_int("adversarial_epochs", self.adversarial_epochs, low=1)
        check_real("distillation_temperature", self.distillation_temperature, low=0.0,
                   low_inclusive=False)
        self.evaluation.validate()
        check_real("standard_eps", self.standard_eps, low=0.0, high=1.0, low_inclusive=False)
        check_int("standard_num_examples", self.standard_num_examples, low=1)
        check_int("curve_num_examples", self.curve_num_examples, low=1)
        self.distribution.validate()
        _check_output(self.output_dir, self.run_name, self.preset)
        if self.model_dir is not None:
            require(bool(self.model_dir), "model_dir='': must name a directory")
        require(isinstance(self.pretrained, str) and bool(_COLLECTION.match(self.pretrained)),
                f"pretrained={self.pretrained!r}: name a collection in saved_models/ "
                "(letters, digits, '_' or '-'), or none")
        return self

    @property
    def resolved_model_dir(self):
        return self.model_dir or self.output_dir

    def resolved_run_name(self, dataset_name):
        if self.run_name:
            return self.run_name
        precision = "" if self.train.precision == "float32" else "-bf16"
        return f"reproduce-{dataset_name}-e{self.train.epochs}-s{self.train.seed}{precision}"
