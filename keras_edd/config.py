"""Frozen configuration dataclasses; `validate()` raises a clear ValueError.

Binaries turn their flags into these objects and pass them to one library
function; the library never reads absl FLAGS. Here: the settings of each stage
(data, training, defense, evaluation, surrogate J); the binaries' run settings,
which combine them, are keras_edd.runs.run_config.
"""

import dataclasses
import enum
import json

from keras_edd import attack_registry
from keras_edd.setting_fields import flag, nested, no_flag, per_key
from keras_edd.validation import (check_choice, check_int, check_real, check_reals, choices,
                                  require)


class Optimizer(enum.StrEnum):
    ADAM = "adam"
    ADADELTA = "adadelta"


class Defense(enum.StrEnum):
    NONE = "none"  # f trained at T = 1 on one-hot labels
    DISTILLATION = "distillation"  # Papernot et al. (2016)
    EXTENDED = "extended"  # Papernot & McDaniel (2017)
    ADVERSARIAL = "adversarial"  # adversarial training (Wong et al. 2020; Madry et al. 2018)


class Dataset(enum.StrEnum):
    """The datasets keras_edd.data loads (their shapes and class names: data.DATASETS)."""
    MNIST = "mnist"
    MNIST_SAMPLE = "mnist_sample"
    FASHION_MNIST = "fashion_mnist"
    CIFAR10 = "cifar10"


class Precision(enum.StrEnum):
    """The arithmetic a model is built in (keras_edd.models)."""
    FLOAT32 = "float32"
    MIXED_BFLOAT16 = "mixed_bfloat16"


class DistributionKind(enum.StrEnum):
    """Where a run computes (keras_edd.distribute)."""
    NONE = "none"
    MIRRORED = "mirrored"
    MULTI_WORKER = "multi_worker"


class LrSchedule(enum.StrEnum):
    """Learning-rate schedules of the training loop (keras_edd.defense.training.fit)."""
    CONSTANT = "constant"
    CYCLIC = "cyclic"


class AdvTrainAttack(enum.StrEnum):
    """Training-time adversaries (keras_edd.defense.adversarial_training)."""
    FGSM_RS = "fgsm_rs"  # FGSM with a uniform random start (Wong, Rice & Kolter 2020)
    PGD = "pgd"  # Madry et al. (2018)


OPTIMIZERS = choices(Optimizer)
DEFENSES = choices(Defense)
DATASETS = choices(Dataset)
PRECISIONS = choices(Precision)
DISTRIBUTION_KINDS = choices(DistributionKind)
LR_SCHEDULES = choices(LrSchedule)
ADV_TRAIN_ATTACKS = choices(AdvTrainAttack)
# Named presets of the evaluation binaries (the config objects: keras_edd.presets.PRESETS).
PRESETS = ("quick", "paper")

# ---------------------------------------------------------------------------- defaults
# The defaults that depend on another setting, or that more than one setting or function
# shares, each once (the fields below, the flags' help and the library functions read them).
TRAIN_LEARNING_RATES = {"adam": 1e-3, "adadelta": 0.1}  # by optimizer; adadelta as cleverhans v1
DEFAULT_TEMPERATURES = {"none": 1.0, "distillation": 100.0, "extended": 4.0,
                        "adversarial": 1.0}
DEFAULT_PENALTY_WEIGHT = 1e-3
# Adversarial training (MNIST): Madry et al. train against 40 steps of 0.01 at eps = 0.3;
# FGSM-RS (Wong et al.) steps alpha = 1.25 eps. Its per-epoch held-out check: PGD-40 of
# step 0.01, one random start, at the training eps, on the last 500 test inputs.
ADV_TRAIN_EPS = 0.3
FGSM_RS_STEP_FACTOR = 1.25
ADV_TRAIN_PGD_STEP = 0.01
ADV_TRAIN_PGD_STEPS = 40
ADV_TRAIN_LR_MAX = 5e-3  # Wong et al.'s MNIST peak (Adam)
PGD_CHECK_EXAMPLES = 500
PGD_CHECK_STEP = 0.01
PGD_CHECK_STEPS = 40
# The budgets each attack is swept over (EvalConfig.sweep_<budget>).
DEFAULT_SWEEP_EPS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
DEFAULT_SWEEP_GAMMA = (0.01, 0.03, 0.07, 0.14, 0.25)
DEFAULT_SWEEP_KAPPA = (0.0, 7.0, 14.0)


def check_precision(precision):
    """Return `precision` if it is one of PRECISIONS, else raise a one-line ValueError."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: allowed values are {', '.join(PRECISIONS)}")
    return precision


def adv_train_step(attack, eps, step=None):
    """The training adversary's step: `step`, or its default (1.25 eps for fgsm_rs, 0.01
    for pgd)."""
    if step is not None:
        return step
    if attack == AdvTrainAttack.FGSM_RS:
        return FGSM_RS_STEP_FACTOR * eps
    return ADV_TRAIN_PGD_STEP


# ------------------------------------------------------------------------- run identity

# Which settings identify a run, for a run directory reopened (keras_edd.runs.run_dirs) and
# for a pretrained model reused (keras_edd.pretrained): all of flags.json but these. Where a
# run lives, how it reports progress, which preset spelled its settings and whether it may
# reuse pretrained models do not change its results; nor does where it computes
# (keras_edd.distribute: the evaluation is the same to the bit, training to float
# rounding), so a run started on one device can be resumed or reused on several.
NOT_SETTINGS = ("output_dir", "run_name", "progress", "preset", "distribution", "pretrained")


def run_identity(flags, ignore=()):
    """The settings of `flags` (a flags.json dict) that identify its run: without
    NOT_SETTINGS, the nested `ignore` keys, given as (section, key) pairs, and the
    settings of the attacks the run does not run (`attacks_run`: an evaluation records
    only its own, but an older flags.json holds every attack's, and a new attack in the
    registry must not change the identity of a run that does not run it)."""
    out = {key: value for key, value in flags.items() if key not in NOT_SETTINGS}
    for section, key in ignore:
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k != key}
    if isinstance(out.get("evaluation"), dict):
        out["evaluation"] = _without_attacks_not_run(out["evaluation"])
    return out


def attacks_run(attacks, sweeps=True, sweep_attacks=None):
    """The attacks an evaluation runs: `attacks`, and with `sweeps` the swept ones
    (`sweep_attacks`, None: `attacks`)."""
    swept = (attacks if sweep_attacks is None else sweep_attacks) if sweeps else ()
    return tuple(dict.fromkeys((*attacks, *swept)))


def _without_attacks_not_run(evaluation):
    """An evaluation's saved settings (EvalConfig.to_dict()) without the caps and attack
    settings of the registry's attacks it does not run."""
    if not isinstance(evaluation.get("attacks"), (list, tuple)):
        return evaluation
    sweep_attacks = evaluation.get("sweep_attacks")
    run = attacks_run(evaluation["attacks"], evaluation.get("sweeps", True),
                      sweep_attacks if isinstance(sweep_attacks, (list, tuple)) else None)
    not_run = [name for name in attack_registry.NAMES if name not in run]
    out = {k: v for k, v in evaluation.items()
           if k not in {f"num_examples_{name}" for name in not_run}}
    if isinstance(out.get("attack"), dict):
        dropped = {key for name in not_run for key in attack_registry.settings_keys(name)}
        out["attack"] = {k: v for k, v in out["attack"].items() if k not in dropped}
    return out


def identity_diff(a, b, prefix=""):
    """The dotted names of the settings where identities a and b differ, sorted."""
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            yield from identity_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            yield f"{prefix}{key}"


# Task types of TF_CONFIG that run the training and the evaluation (no parameter servers).
WORKER_TYPES = ("chief", "worker")
def parse_tf_config(text):
    """(cluster, task_type, task_id) of a TF_CONFIG JSON string; ValueError (one line) if bad.

    cluster maps "chief" (at most one task) and "worker" to lists of "host:port"
    addresses; task is {"type": ..., "index": ...} naming one of them.
    """
    if text is None or not str(text).strip():
        raise ValueError("distribution=multi_worker needs the TF_CONFIG environment variable: "
                         'a JSON {"cluster": {"worker": ["host:port", ...]}, '
                         '"task": {"type": "worker", "index": i}}')
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG is not valid JSON ({exc.msg} at character {exc.pos}): "
                         f"{_short(text)}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict) or \
            not isinstance(spec.get("task"), dict):
        raise ValueError(f"TF_CONFIG={_short(text)}: must be an object with 'cluster' and "
                         "'task' objects")
    cluster = spec["cluster"]
    unknown = sorted(set(cluster) - set(WORKER_TYPES))
    if unknown:
        raise ValueError(f"TF_CONFIG cluster: task types {unknown} are not supported; allowed "
                         f"are {', '.join(WORKER_TYPES)}")
    if not cluster.get("worker") and not cluster.get("chief"):
        raise ValueError("TF_CONFIG cluster: name at least one worker address")
    addresses = []
    for kind, hosts in cluster.items():
        if not isinstance(hosts, list) or not hosts:
            raise ValueError(f"TF_CONFIG cluster {kind!r}: must be a non-empty list of "
                             "'host:port' addresses")
        for host in hosts:
            name, _, port = str(host).rpartition(":")
            if not isinstance(host, str) or not name or not port.isdigit() or \
                    not 0 < int(port) < 65536:
                raise ValueError(f"TF_CONFIG cluster {kind!r}: address {host!r} is not "
                                 "'host:port' with a port in 1..65535")
            addresses.append(host)
    if len(cluster.get("chief", [])) > 1:
        raise ValueError(f"TF_CONFIG cluster 'chief': {len(cluster['chief'])} addresses; "
                         "at most one chief")
    if len(set(addresses)) != len(addresses):
        raise ValueError("TF_CONFIG cluster: an address appears twice")
    task = spec["task"]
    task_type, task_id = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise ValueError(f"TF_CONFIG task type {task_type!r}: allowed values are "
                         f"{', '.join(sorted(cluster))} (the cluster's task types)")
    if not isinstance(task_id, int) or isinstance(task_id, bool) or \
            not 0 <= task_id < len(cluster[task_type]):
        raise ValueError(f"TF_CONFIG task index {task_id!r}: allowed range is "
                         f"0..{len(cluster[task_type]) - 1} for {task_type!r}")
    return {k: list(v) for k, v in cluster.items()}, task_type, task_id

def _short(text, limit=80):
    text = " ".join(str(text).split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


class _Config:
    """Base of the configs: to_dict() is what flags.json and results.json store."""

    def to_dict(self):
        return _as_dict(self)


def _as_dict(config):
    """dataclasses.asdict, except that nested configs use their own to_dict."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.metadata.get("omit_default") and value == field.default:
            continue
        out[field.name] = value.to_dict() if hasattr(value, "to_dict") else value
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig(_Config):
    """Which dataset, from where (see keras_edd.data), and optional subset sizes."""
    dataset: str = dataclasses.field(default="mnist", metadata=flag(
        "dataset", f"One of {', '.join(sorted(DATASETS))}.", choices=sorted(DATASETS)))
    data_dir: str | None = dataclasses.field(default=None, metadata=flag(
        "data_dir", "Folder with the four IDX files (default: $KERAS_EDD_DATA_DIR, then "
        "TensorFlow Datasets, then for mnist the bundled sample)."))
    train_limit: int | None = dataclasses.field(default=None, metadata=flag(
        "train_limit", "Use only the first N training images."))
    test_limit: int | None = dataclasses.field(default=None, metadata=flag(
        "test_limit", "Use only the first N test images."))

    def validate(self):
        require(self.dataset in DATASETS,
                f"dataset={self.dataset!r}: allowed values are {', '.join(sorted(DATASETS))}")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None:
                check_int(name, value, low=1)
        return self


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(_Config):
    """The optimisation of one model by the custom training loop."""
    epochs: int = dataclasses.field(default=6, metadata=flag(
        "epochs", "Epochs of every deployed model (the distilled one; paper: 50)."))
    batch_size: int = dataclasses.field(default=128, metadata=flag(
        "batch_size", "Training batch size."))
    optimizer: str = dataclasses.field(default="adam", metadata=flag(
        "optimizer", f"One of {', '.join(OPTIMIZERS)}.", choices=Optimizer))
    # None: TRAIN_LEARNING_RATES[optimizer]
    learning_rate: float | None = dataclasses.field(default=None, metadata=flag(
        "learning_rate", "Default " + ", ".join(f"{rate:g} for {name}" for name, rate in
                                                TRAIN_LEARNING_RATES.items())
        + " (as in cleverhans v1)."))
    seed: int = dataclasses.field(default=0, metadata=flag(
        "seed", "Seed: the run is deterministic given it (bin/reproduce: the surrogates use "
        "seed+1 and seed+2)."))
    # Saved only when not float32: runs made before the field existed stay reusable.
    precision: str = dataclasses.field(default="float32", metadata=flag(
        "precision", f"One of {', '.join(PRECISIONS)}: the arithmetic of training and "
        "MC-dropout labelling (logits, losses and sigma stay float32; bfloat16 is faster only "
        "on CPUs with AVX512_BF16 or AMX). Saved models and attacks are float32.",
        choices=Precision, omit_default=True))

    def validate(self):
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.learning_rate is not None:
            check_real("learning_rate", self.learning_rate, low=0.0, low_inclusive=False)
        check_int("seed", self.seed, low=0)
        check_precision(self.precision)
        return self

    @property
    def resolved_learning_rate(self):
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return TRAIN_LEARNING_RATES[self.optimizer]



@dataclasses.dataclass(frozen=True, kw_only=True)
class DistributionConfig(_Config):
    """Where a run computes (keras_edd.distribute): `kind` none (one device), mirrored
    (MirroredStrategy over the local GPUs, or the logical CPU devices) or multi_worker
    (MultiWorkerMirroredStrategy over the machines of `tf_config`, the TF_CONFIG JSON);
    `cpu_devices` splits the CPU into that many logical devices (None: no split).

    Saved in flags.json as kind and cpu_devices, and only when not the default, so runs
    made before it existed still match; it is not compared when a run directory is
    reopened (keras_edd.runs.run_dirs), and TF_CONFIG (addresses) is not saved at all.
    """
    kind: str = dataclasses.field(default="none", metadata=flag(
        "distribution", f"One of {', '.join(DISTRIBUTION_KINDS)}: one device; "
        "tf.distribute.MirroredStrategy over the local GPUs (or the --cpu_devices logical "
        "CPUs); MultiWorkerMirroredStrategy over the machines of the TF_CONFIG environment "
        "variable (see docs/distribution.md).", choices=DistributionKind))
    cpu_devices: int | None = dataclasses.field(default=None, metadata=flag(
        "cpu_devices", "Split the CPU into N >= 1 logical devices (tests mirrored runs without "
        "GPUs)."))
    tf_config: str | None = dataclasses.field(default=None, metadata=no_flag(
        "the TF_CONFIG environment variable, read by the binary for multi_worker"))

    def validate(self):
        check_choice("distribution", self.kind, DISTRIBUTION_KINDS)
        if self.cpu_devices is not None:
            check_int("cpu_devices", self.cpu_devices, low=1)
        if self.kind == "multi_worker":
            parse_tf_config(self.tf_config)
        return self

    def to_dict(self):
        return {"kind": self.kind, "cpu_devices": self.cpu_devices}


def _adversarial(values):
    return values.get("defense") == "adversarial"


def _adv_train_flag(name, help, **options):
    """The flag of an adversarial-training setting: read and compared for that defense
    only."""
    return flag(name, help, when=_adversarial, identifies=("adversarial",), **options)


def defense_identifies(defense):
    """The DefenseConfig settings that identify a model trained with `defense` (their
    `identifies` metadata), on which keras_edd.pretrained compares a pretrained model; the
    others are recorded but unused (e.g. alpha of an adversarially trained model; the
    teacher of extended distillation is compared as a model of its own)."""
    return tuple(f.name for f in dataclasses.fields(DefenseConfig)
                 if defense in f.metadata.get("identifies", ()))


@dataclasses.dataclass(frozen=True, kw_only=True)
class DefenseConfig(_Config):
    """Which model to train: undefended, distillation baseline, or extended distillation.

    none:         f trained at T = 1 on one-hot labels.
    distillation: Papernot et al. (2016): teacher and student both trained at
                  temperature T (default 100) on softmax(z/T); no outlier class.
    extended:     Papernot & McDaniel (2017): teacher at T = 1, N MC-dropout passes
                  give sigma(x), labels over n + 1 classes with weight alpha, student
                  trained at T (default 4) plus penalty_weight * mean squared logit.
    adversarial:  f trained at T = 1 on adversarial examples of each batch, made by
                  adv_train_attack ("fgsm_rs": uniform start and one step of
                  adv_train_step, default 1.25 eps; "pgd": adv_train_steps steps of
                  adv_train_step, default 0.01) within adv_train_eps. Its recipe
                  (Wong, Rice & Kolter 2020; Rice, Wong & Kolter 2020): with
                  adv_train_schedule "cyclic" the learning rate rises linearly from 0
                  to adv_train_lr_max over the first 40 % of the steps and falls back
                  to 0 ("constant": the training learning rate throughout); with
                  adv_train_keep_best the model ends with the weights of the epoch of
                  highest PGD accuracy on held-out test inputs (early stopping).
    Every model is deployed at T = 1. A field's `identifies` metadata names the defenses
    whose trained model it identifies (`defense_identifies`). The adv_train_* settings
    are saved only when they differ from their defaults, so runs made before they existed match;
    the recipe's only for the adversarial defense and when it differs from the
    recipe before it existed (constant, last epoch), so those runs do not match a
    run of the current recipe.
    """
    defense: str = dataclasses.field(default="extended", metadata=flag(
        "defense", f"One of {', '.join(DEFENSES)}.", choices=Defense))
    alpha: float = dataclasses.field(default=0.9, metadata=flag(
        "alpha", "alpha in [0, 1]: outlier label weight of extended distillation (paper: 0.9).",
        identifies=("extended",)))
    # None: DEFAULT_TEMPERATURES[defense]; adversarial training is at T = 1, so --temperature
    # is the distillations' T.
    temperature: float | None = dataclasses.field(default=None, metadata=flag(
        "temperature", "Training temperature T > 0 (default " + ", ".join(
            f"{t:g} {name}" for name, t in DEFAULT_TEMPERATURES.items() if name != "none")
        + "; bin/reproduce: the T of extended distillation).", default=None,
        when=lambda values: values.get("defense") != "adversarial",
        identifies=("distillation", "extended")))
    mc_passes: int = dataclasses.field(default=20, metadata=flag(
        "mc_passes", "N >= 2 MC-dropout passes for sigma(x) (paper: 20).",
        identifies=("extended",)))
    penalty_weight: float = dataclasses.field(default=DEFAULT_PENALTY_WEIGHT, metadata=flag(
        "penalty_weight", "Weight >= 0 of the mean squared logit penalty (extended).",
        identifies=("extended",)))
    teacher_epochs: int = dataclasses.field(default=6, metadata=flag(
        "teacher_epochs", "Epochs of the teachers.", identifies=("distillation",)))
    # reuse a trained teacher (.keras) instead of training one
    teacher_path: str | None = dataclasses.field(default=None, metadata=flag(
        "teacher", "Reuse this trained teacher (.keras, or a pretrained one by name, e.g. "
        "paper:undefended).", model=True))
    adv_train_attack: str = dataclasses.field(default="fgsm_rs", metadata=_adv_train_flag(
        "adv_train_attack", "--defense=adversarial: the training adversary, one of "
        f"{', '.join(ADV_TRAIN_ATTACKS)} (FGSM with a random start, Wong et al. 2020; PGD, "
        "Madry et al. 2018).", choices=AdvTrainAttack, omit_default=True))
    adv_train_eps: float = dataclasses.field(default=ADV_TRAIN_EPS, metadata=_adv_train_flag(
        "adv_train_eps", "--defense=adversarial: L_inf radius of the training adversary "
        "(MNIST: 0.3).", omit_default=True))
    adv_train_step: float | None = dataclasses.field(default=None, metadata=_adv_train_flag(
        "adv_train_step", "--defense=adversarial: its step (default 1.25 eps for fgsm_rs, "
        "0.01 for pgd).", omit_default=True))
    adv_train_steps: int = dataclasses.field(default=ADV_TRAIN_PGD_STEPS, metadata=_adv_train_flag(
        "adv_train_steps", "--defense=adversarial with pgd: its number of steps.",
        omit_default=True))
    adv_train_schedule: str = dataclasses.field(default="cyclic", metadata=_adv_train_flag(
        "adv_train_schedule", "--defense=adversarial: learning-rate schedule, one of "
        f"{', '.join(LR_SCHEDULES)} (cyclic: 0 -> --adv_train_lr_max at 40 % of the steps -> "
        "0, Wong et al. 2020; constant: --learning_rate).", choices=LrSchedule, legacy="constant"))
    adv_train_lr_max: float = dataclasses.field(default=ADV_TRAIN_LR_MAX, metadata=_adv_train_flag(
        "adv_train_lr_max", "--defense=adversarial with the cyclic schedule: its peak "
        "learning rate."))
    adv_train_keep_best: bool = dataclasses.field(default=True, metadata=_adv_train_flag(
        "adv_train_keep_best", "--defense=adversarial: keep the epoch of highest held-out PGD "
        "accuracy, not the last (early stopping, Rice et al. 2020).", legacy=False))

    def to_dict(self):
        """The settings; the adversarial recipe only where it applies (see the class)."""
        out = _as_dict(self)
        recipe = self.defense == "adversarial" and self.adv_train_schedule != "constant"
        if not recipe:
            out.pop("adv_train_lr_max")
        for field in dataclasses.fields(self):
            if "legacy" in field.metadata and (self.defense != "adversarial" or
                                               out[field.name] == field.metadata["legacy"]):
                out.pop(field.name)
        return out

    def __post_init__(self):
        # Store the default temperature itself, so that "no --temperature" and
        # "--temperature=4" are the same settings (and reuse the same run).
        if self.temperature is None and self.defense in DEFAULT_TEMPERATURES:
            object.__setattr__(self, "temperature", DEFAULT_TEMPERATURES[self.defense])

    @property
    def resolved_adv_train_step(self):
        """adv_train_step, or its default: 1.25 eps for fgsm_rs, 0.01 for pgd."""
        return float(adv_train_step(self.adv_train_attack, self.adv_train_eps,
                                    self.adv_train_step))

    def validate(self):
        check_choice("defense", self.defense, DEFENSES)
        check_real("alpha", self.alpha, low=0.0, high=1.0)
        if self.temperature is not None:
            check_real("temperature", self.temperature, low=0.0, low_inclusive=False)
        check_int("mc_passes", self.mc_passes, low=2)
        check_real("penalty_weight", self.penalty_weight, low=0.0)
        check_int("teacher_epochs", self.teacher_epochs, low=1)
        check_choice("adv_train_attack", self.adv_train_attack, ADV_TRAIN_ATTACKS)
        check_real("adv_train_eps", self.adv_train_eps, low=0.0, high=1.0, low_inclusive=False)
        if self.adv_train_step is not None:
            check_real("adv_train_step", self.adv_train_step, low=0.0, high=1.0,
                       low_inclusive=False)
        check_int("adv_train_steps", self.adv_train_steps, low=1)
        check_choice("adv_train_schedule", self.adv_train_schedule, LR_SCHEDULES)
        check_real("adv_train_lr_max", self.adv_train_lr_max, low=0.0, low_inclusive=False)
        if self.teacher_path is not None:
            require(self.defense not in ("none", "adversarial"),
                    f"teacher_path is set but defense={self.defense!r} trains no student; "
                    "use --defense=extended or --defense=distillation")
            require(str(self.teacher_path).endswith(".keras"),
                    f"teacher={self.teacher_path!r}: must be a .keras model file")
        return self

    @property
    def resolved_temperature(self):
        if self.temperature is not None:
            return float(self.temperature)
        return DEFAULT_TEMPERATURES[self.defense]


# ----------------------------------------------------------------------------- evaluation

ATTACKS = attack_registry.NAMES
@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalConfig(_Config):
    """What is attacked and how much of it, shared by white-box, black-box and reproduce.

    The first `num_examples` test inputs are attacked (fewer for slow attacks:
    `max_examples` maps an attack to its cap, None for no cap; attacks left out
    get the registry's default cap, e.g. JSMA 200, CW 100). Rates are
    reported over all of them ("unfiltered") and over those the target classifies
    correctly when clean ("filtered"). `adaptive` adds, for models with an outlier
    class, attacks that avoid it. Sweeps rerun each attack over a range of budgets
    (eps, Gamma, kappa: `sweep_<budget>`) on `sweep_num_examples` inputs; a sweep
    whose best success (1 - recovered) stays below `masking_threshold` is flagged
    as possible gradient masking, when it has at least `masking_min_inputs`
    correctly classified inputs and even the 95 % upper bound of that success
    (metrics.success_upper_bound) is below the threshold; fewer inputs: not checked.
    `extra_examples` (None: no such cap) caps the slow attacks (those with a registry
    cap: JSMA, CW, CW-Adam, Square) computed on models marked `extra` (ModelSpec.extra:
    in bin/reproduce, the models beyond the paper's Figure 1, i.e. the
    adversarial-training target and the surrogates J), so that a paper-scale run
    spends its time on the paper's cells.
    """
    attacks: tuple = dataclasses.field(default=attack_registry.DEFAULT_NAMES, metadata=flag(
        "attacks", f"Attacks to run, from {', '.join(ATTACKS)}. bin/eval_whitebox also takes "
        "standard (alone): keras_edd.evaluate's AutoAttack list at --apgd_ce_eps, --apgd_ce_norm."))
    num_examples: int = dataclasses.field(default=1000, metadata=flag(
        "num_examples", "How many test inputs (the first ones) are attacked."))
    max_examples: dict = dataclasses.field(default_factory=dict, metadata=per_key(
        lambda: [name for name, row in attack_registry.ATTACKS.items()
                 if row.max_examples is not None],
        name="num_examples_{key}", help="Cap on the inputs {key} attacks (0: num_examples).",
        zero_is_none=True))
    extra_examples: int | None = dataclasses.field(default=None, metadata=flag(
        "num_examples_extra", "Cap on the inputs of the slow attacks (those with a "
        "--num_examples_<attack> flag) computed on the models beyond the paper's Figure 1, the "
        "adversarial-training target and the surrogates J (0: no cap).", zero_is_none=True,
        optional=True, omit_default=True))
    adaptive: bool = dataclasses.field(default=True, metadata=flag(
        "adaptive", "Also run adaptive attacks (avoiding the outlier class) on n+1-logit "
        "models."))
    sweeps: bool = dataclasses.field(default=True, metadata=flag(
        "sweeps", "Run the budget sweeps (gradient-masking check)."))
    # None: every attack in `attacks`
    sweep_attacks: tuple | None = dataclasses.field(default=None, metadata=flag(
        "sweep_attacks", "Attacks to sweep (default: --attacks)."))
    sweep_eps: tuple = dataclasses.field(default=DEFAULT_SWEEP_EPS, metadata=flag(
        "sweep_eps", "FGSM/PGD eps values of the sweep.", items=float))
    sweep_gamma: tuple = dataclasses.field(default=DEFAULT_SWEEP_GAMMA, metadata=flag(
        "sweep_gamma", "JSMA Gamma values of the sweep.", items=float))
    sweep_kappa: tuple = dataclasses.field(default=DEFAULT_SWEEP_KAPPA, metadata=flag(
        "sweep_kappa", "CW kappa values of the sweep.", items=float))
    sweep_num_examples: int = dataclasses.field(default=200, metadata=flag(
        "sweep_num_examples", "Inputs per sweep point (also capped by the per-attack caps)."))
    masking_threshold: float = dataclasses.field(default=0.95, metadata=flag(
        "masking_threshold", "Flag a sweep whose best success stays below this fraction (even "
        "its 95 % upper bound)."))
    masking_min_inputs: int = dataclasses.field(default=10, metadata=flag(
        "masking_min_inputs", "A sweep or a gradient-free comparison needs this many correctly "
        "classified inputs before it can flag gradient masking.", omit_default=True))
    check_examples: int = dataclasses.field(default=100, metadata=flag(
        "check_examples", "Inputs for the gradient-masking checks."))
    image_examples: int = dataclasses.field(default=8, metadata=no_flag(
        "how many crafted examples the report shows: a constant of the report"))
    attack: attack_registry.AttackConfig = dataclasses.field(
        default=attack_registry.AttackConfig(), metadata=nested())

    def __post_init__(self):
        merged = {name: row.max_examples for name, row in attack_registry.ATTACKS.items()}
        merged.update(self.max_examples)
        object.__setattr__(self, "max_examples", merged)

    def validate(self):
        for field in ("attacks", "sweep_attacks"):
            names = getattr(self, field)
            if names is None and field == "sweep_attacks":
                continue
            require(isinstance(names, tuple) and len(names) > 0,
                    f"{field}={names!r}: name at least one of {', '.join(ATTACKS)}")
            for name in names:
                require(name in ATTACKS, f"{field}: unknown attack {name!r}; allowed values are "
                        f"{', '.join(ATTACKS)}")
            require(len(set(names)) == len(names), f"{field}={','.join(names)}: repeated attack")
        check_int("num_examples", self.num_examples, low=1)
        for name, cap in self.max_examples.items():
            attack_registry.get(name)
            if cap is not None:
                check_int(f"num_examples_{name}", cap, low=1)
        if self.extra_examples is not None:
            check_int("num_examples_extra", self.extra_examples, low=1)
        check_reals("sweep_eps", self.sweep_eps, low=0.0, high=1.0, low_inclusive=False)
        check_reals("sweep_gamma", self.sweep_gamma, low=0.0, high=1.0, low_inclusive=False)
        check_reals("sweep_kappa", self.sweep_kappa, low=0.0)
        check_int("sweep_num_examples", self.sweep_num_examples, low=1)
        check_real("masking_threshold", self.masking_threshold, low=0.0, high=1.0)
        check_int("masking_min_inputs", self.masking_min_inputs, low=1)
        check_int("check_examples", self.check_examples, low=1)
        check_int("image_examples", self.image_examples, low=0)
        self.attack.validate()
        return self

    def examples_for(self, attack, extra=False):
        """How many of the attacked inputs `attack` gets (the per-attack cap applied;
        with `extra`, computed on an extra model, also `extra_examples` for a slow attack)."""
        cap = self.max_examples.get(attack)
        n = self.num_examples if cap is None else min(cap, self.num_examples)
        if extra and self.extra_examples is not None and \
                attack_registry.get(attack).max_examples is not None:
            n = min(n, self.extra_examples)
        return n

    def sweep_values(self, attack):
        """The budgets `attack` is swept over (sweep_eps, sweep_gamma or sweep_kappa)."""
        return getattr(self, f"sweep_{attack_registry.get(attack).sweep_name}")

    @property
    def resolved_sweep_attacks(self):
        if not self.sweeps:
            return ()
        return self.attacks if self.sweep_attacks is None else self.sweep_attacks

    @property
    def attacks_run(self):
        """The attacks this evaluation runs: `attacks` and the swept ones."""
        return attacks_run(self.attacks, self.sweeps, self.sweep_attacks)

    def to_dict(self):
        """Settings as saved in flags.json: caps as num_examples_<attack>, attack
        settings under their flag names, both only of the attacks run."""
        run = self.attacks_run
        out = {}
        for key, value in _as_dict(self).items():
            if key == "extra_examples":
                out["num_examples_extra"] = value
            elif key == "max_examples":
                out.update({f"num_examples_{name}": cap for name, cap in value.items()
                            if name in run and (cap is not None or
                                                attack_registry.get(name).max_examples)})
            elif key == "attack":
                out[key] = self.attack.to_dict(run)
            else:
                out[key] = value
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class SubstituteConfig(_Config):
    """Surrogate J: the Jacobian-augmented substitute (keras_edd.evaluation.substitute).

    S_0 is the last `initial` test inputs (never attacked); the substitute, of
    the targets' family, is trained on the target's labels only, with `rounds`
    augmentations of step lambda = `lam` whose sign flips every `tau` rounds,
    lambda_rho = lam * (-1)**floor(rho / tau) (Papernot et al. 2017's periodic
    step; tau = 0: constant step), `epochs_per_round` epochs of Adam per round.
    """
    initial: int = dataclasses.field(default=150, metadata=flag(
        "substitute_initial", "Surrogate J: size of S_0, the last test inputs (never "
        "attacked)."))
    rounds: int = dataclasses.field(default=6, metadata=flag(
        "substitute_rounds", "Surrogate J: Jacobian augmentation rounds rho (S grows to "
        "initial * 2**rounds)."))
    lam: float = dataclasses.field(default=0.1, metadata=flag(
        "substitute_lam", "Surrogate J: augmentation step lambda in (0, 1]."))
    tau: int = dataclasses.field(default=3, metadata=flag(
        "substitute_tau", "Surrogate J: the step's sign flips every tau rounds, "
        "lambda * (-1)**floor(rho/tau) (0: constant step)."))
    epochs_per_round: int = dataclasses.field(default=10, metadata=flag(
        "substitute_epochs_per_round", "Surrogate J: training epochs per round."))
    batch_size: int = dataclasses.field(default=128, metadata=flag(
        "substitute_batch_size", "Surrogate J: training batch size (capped at the set size)."))

    def validate(self):
        check_int("substitute_initial", self.initial, low=1)
        check_int("substitute_rounds", self.rounds, low=0)
        check_real("substitute_lam", self.lam, low=0.0, high=1.0, low_inclusive=False)
        check_int("substitute_tau", self.tau, low=0)
        check_int("substitute_epochs_per_round", self.epochs_per_round, low=1)
        check_int("substitute_batch_size", self.batch_size, low=1)
        return self

    @property
    def resolved_tau(self):
        """tau for keras_edd.evaluation.substitute: None (constant step) for tau = 0."""
        return self.tau or None
