"""The flags of the four binaries in bin/, grouped, and their values.

Binary-side only: the library never imports this package or reads FLAGS. Each
binary defines, at module level, the flag groups it takes, and turns their
values into the frozen config dataclasses with keras_edd.cli.configs (keyword
arguments only):

    flag_groups.define_flags(flag_groups.DATA, flag_groups.MODELS, flag_groups.OUTPUT,
                             train=True)                                  # bin/train
    config = RunConfig(data=configs.data_config(), train=configs.train_config(), ...)

The attack flags are derived from keras_edd.attack_registry:
`--<attack>_<field>` for every field of an attack's settings (under its FLAG_NAMES
alias where one is set, e.g. --pgd_restarts) and `--num_examples_<attack>` for
attacks with a cap.

Choices (--dataset, --defense, --optimizer, --pgd_loss, ...) are string flags
whose allowed values come from the enums in keras_edd.config and
keras_edd.attack_settings; they are checked by the configs' validate(),
so a bad value is the same one-line error (exit status 2) as any other bad setting.

`--preset=NAME` (evaluation binaries) replaces the defaults of the flags in
PRESETS[NAME] (keras_edd.cli.presets; flags given on the command line still win):
`quick`, a few-minute demo on the bundled MNIST sample (`--quick` is the same), or
`paper`, the settings of Papernot & McDaniel (2017) for every model and attack.
"""

from absl import flags

from keras_edd import config as config_lib
from keras_edd.cli.presets import PRESETS  # light
from keras_edd import attack_registry
from keras_edd.runs.run_config import ReproduceConfig

DATA, MODELS, EVALUATION, SUBSTITUTE, OUTPUT, DISTRIBUTION = (
    "data", "models", "evaluation", "substitute", "output", "distribution")

_FLAGS = {}  # flag name -> absl FlagHolder, for the groups this binary defined

# The flags' defaults are the configs' defaults (bin/reproduce's paper settings; bin/train
# takes the same, with --defense and --teacher from DefenseConfig).
_DEFAULTS = ReproduceConfig()


def _define(define, name, default, text):
    _FLAGS[name] = define(name, default, text)


def _one_of(values):
    return ", ".join(values)


def _define_data():
    _define(flags.DEFINE_string, "dataset", _DEFAULTS.data.dataset,
            f"One of {_one_of(sorted(config_lib.DATASETS))}.")
    _define(flags.DEFINE_string, "data_dir", None,
            "Folder with the four IDX files (default: $KERAS_EDD_DATA_DIR, then TensorFlow "
            "Datasets, then for mnist the bundled sample).")
    _define(flags.DEFINE_integer, "train_limit", None, "Use only the first N training images.")
    _define(flags.DEFINE_integer, "test_limit", None, "Use only the first N test images.")


def _define_models(train, reproduce):
    rates = ", ".join(f"{rate:g} for {name}"
                      for name, rate in config_lib.TRAIN_LEARNING_RATES.items())
    temperatures = ", ".join(f"{t:g} {name}" for name, t in
                             config_lib.DEFAULT_TEMPERATURES.items() if name != "none")
    _define(flags.DEFINE_integer, "epochs", _DEFAULTS.train.epochs,
            "Epochs of every deployed model (the distilled one; paper: 50).")
    _define(flags.DEFINE_integer, "batch_size", _DEFAULTS.train.batch_size, "Training batch size.")
    _define(flags.DEFINE_string, "optimizer", _DEFAULTS.train.optimizer,
            f"One of {_one_of(config_lib.OPTIMIZERS)}.")
    _define(flags.DEFINE_float, "learning_rate", None,
            f"Default {rates} (as in cleverhans v1).")
    _define(flags.DEFINE_integer, "seed", _DEFAULTS.train.seed,
            "Seed: the run is deterministic given it (bin/reproduce: the surrogates use "
            "seed+1 and seed+2).")
    _define(flags.DEFINE_string, "precision", _DEFAULTS.train.precision,
            f"One of {_one_of(config_lib.PRECISIONS)}: the arithmetic of training and MC-dropout "
            "labelling (logits, losses and sigma stay float32; bfloat16 is faster only on "
            "CPUs with AVX512_BF16 or AMX). Saved models and attacks are float32.")
    _define(flags.DEFINE_float, "alpha", _DEFAULTS.extended.alpha,
            "alpha in [0, 1]: outlier label weight of extended distillation (paper: 0.9).")
    _define(flags.DEFINE_float, "temperature", None,
            f"Training temperature T > 0 (default {temperatures}; bin/reproduce: the T of "
            "extended distillation).")
    _define(flags.DEFINE_integer, "mc_passes", _DEFAULTS.extended.mc_passes,
            "N >= 2 MC-dropout passes for sigma(x) (paper: 20).")
    _define(flags.DEFINE_float, "penalty_weight", _DEFAULTS.extended.penalty_weight,
            "Weight >= 0 of the mean squared logit penalty (extended).")
    _define(flags.DEFINE_integer, "teacher_epochs", _DEFAULTS.extended.teacher_epochs,
            "Epochs of the teachers.")
    if train:
        _define(flags.DEFINE_string, "defense", config_lib.DefenseConfig().defense,
                f"One of {_one_of(config_lib.DEFENSES)}.")
        _define(flags.DEFINE_string, "teacher", None, "Reuse this trained teacher (.keras, or a pretrained "
                "one by name, e.g. paper:undefended).")
        _define(flags.DEFINE_boolean, "allow_probability_teacher", False,
                "Use a --teacher whose outputs look like probabilities, not logits (refused "
                "otherwise: its MC-dropout sigma is meaningless).")
    if train or reproduce:
        adversarial = config_lib.DefenseConfig(defense="adversarial")
        _define(flags.DEFINE_string, "adv_train_attack", adversarial.adv_train_attack,
                f"--defense=adversarial: the training adversary, one of "
                f"{_one_of(config_lib.ADV_TRAIN_ATTACKS)} (FGSM with a random start, "
                "Wong et al. 2020; "
                "PGD, Madry et al. 2018).")
        _define(flags.DEFINE_float, "adv_train_eps", adversarial.adv_train_eps,
                "--defense=adversarial: L_inf radius of the training adversary (MNIST: 0.3).")
        _define(flags.DEFINE_float, "adv_train_step", None,
                "--defense=adversarial: its step (default 1.25 eps for fgsm_rs, 0.01 for pgd).")
        _define(flags.DEFINE_integer, "adv_train_steps", adversarial.adv_train_steps,
                "--defense=adversarial with pgd: its number of steps.")
        _define(flags.DEFINE_string, "adv_train_schedule", adversarial.adv_train_schedule,
                f"--defense=adversarial: learning-rate schedule, one of "
                f"{_one_of(config_lib.LR_SCHEDULES)} (cyclic: 0 -> --adv_train_lr_max at 40 % "
                "of the steps -> 0, Wong et al. 2020; constant: --learning_rate).")
        _define(flags.DEFINE_float, "adv_train_lr_max", adversarial.adv_train_lr_max,
                "--defense=adversarial with the cyclic schedule: its peak learning rate.")
        _define(flags.DEFINE_boolean, "adv_train_keep_best", adversarial.adv_train_keep_best,
                "--defense=adversarial: keep the epoch of highest held-out PGD accuracy, not "
                "the last (early stopping, Rice et al. 2020).")
    if reproduce:
        _define(flags.DEFINE_integer, "adversarial_epochs", 0,
                "Epochs of the adversarial-training baseline (0: --teacher_epochs, as f).")
        _define(flags.DEFINE_float, "distillation_temperature",
                _DEFAULTS.distillation_temperature,
                "T of the defensive-distillation baseline (paper: 100).")
        _define(flags.DEFINE_string, "model_dir", None,
                "Where the trained runs live and are reused (default: --output_dir).")
        _define(flags.DEFINE_string, "pretrained", _DEFAULTS.pretrained,
                "Pretrained collection (saved_models/<name>/) whose models are reused "
                "instead of trained when their settings and data match; none: train "
                "every model here.")


def _settings_flag(field):
    """The absl DEFINE_* of a settings field, from its default (None: its annotation)."""
    default = field.default
    if isinstance(default, bool):
        return flags.DEFINE_boolean
    if isinstance(default, int):
        return flags.DEFINE_integer
    if isinstance(default, float) or (default is None and "float" in str(field.type)):
        return flags.DEFINE_float
    return flags.DEFINE_string


def _define_evaluation(reproduce):
    names = attack_registry.NAMES
    evaluation = _DEFAULTS.evaluation
    _define(flags.DEFINE_string, "preset", None,
            f"Settings preset, one of {_one_of(PRESETS)} (any flag given explicitly overrides "
            "it). quick: a few-minute demo on the bundled MNIST sample, tiny epochs and example "
            "counts. paper: the paper's settings (50 distilled epochs, T=100 baseline, N=20, "
            "alpha=0.9, T=4; 1,000 test digits for the paper's attacks on the paper's models, "
            "100 for the slow attacks on the others; CW AdaDelta kappa=7, "
            "5 x 1,000 steps; JSMA Gamma=7%; FGSM eps=0.2) with FGSM/PGD/JSMA sweeps on 200 "
            "digits and no CW kappa sweep (it would add 60 % to the CW work).")
    _define(flags.DEFINE_boolean, "quick", False, "Same as --preset=quick.")
    _define(flags.DEFINE_list, "attacks", ",".join(evaluation.attacks),
            f"Attacks to run, from {_one_of(names)}.")
    _define(flags.DEFINE_integer, "num_examples", evaluation.num_examples,
            "How many test inputs (the first ones) are attacked.")
    for name, row in attack_registry.ATTACKS.items():
        if row.max_examples is not None:
            _define(flags.DEFINE_integer, f"num_examples_{name}", evaluation.max_examples[name],
                    f"Cap on the inputs {name} attacks (0: num_examples).")
    if reproduce:
        _define(flags.DEFINE_integer, "num_examples_extra", evaluation.extra_examples or 0,
                "Cap on the inputs of the slow attacks (those with a "
                "--num_examples_<attack> flag) computed on the models beyond the paper's "
                "Figure 1, the adversarial-training target and the surrogates J (0: no cap).")
    _define(flags.DEFINE_boolean, "adaptive", evaluation.adaptive,
            "Also run adaptive attacks (avoiding the outlier class) on n+1-logit models.")
    for name, row in attack_registry.ATTACKS.items():
        for field, flag in row.settings.flag_fields():
            _define(_settings_flag(field), f"{name}_{flag}", getattr(row.settings, field.name),
                    field.metadata.get("help", f"{name} {field.name}."))
    _define(flags.DEFINE_integer, "attack_batch_size", evaluation.attack.batch_size,
            "Inputs per attack call.")
    _define(flags.DEFINE_integer, "attack_seed", evaluation.attack.seed,
            "Seed of the attacks that take one (PGD starts, JSMA targets).")
    _define(flags.DEFINE_boolean, "sweeps", evaluation.sweeps,
            "Run the budget sweeps (gradient-masking check).")
    _define(flags.DEFINE_list, "sweep_attacks", None, "Attacks to sweep (default: --attacks).")
    for budget, what in (("eps", "FGSM/PGD eps"), ("gamma", "JSMA Gamma"), ("kappa", "CW kappa")):
        _define(flags.DEFINE_list, f"sweep_{budget}",
                [f"{v:g}" for v in getattr(evaluation, f"sweep_{budget}")],
                f"{what} values of the sweep.")
    _define(flags.DEFINE_integer, "sweep_num_examples", evaluation.sweep_num_examples,
            "Inputs per sweep point (also capped by the per-attack caps).")
    _define(flags.DEFINE_float, "masking_threshold", evaluation.masking_threshold,
            "Flag a sweep whose best success stays below this fraction (even its 95 % upper "
            "bound).")
    _define(flags.DEFINE_integer, "masking_min_inputs", evaluation.masking_min_inputs,
            "A sweep or a gradient-free comparison needs this many correctly classified "
            "inputs before it can flag gradient masking.")
    _define(flags.DEFINE_integer, "check_examples", evaluation.check_examples,
            "Inputs for the gradient-masking checks.")


def _define_substitute(reproduce):
    defaults = config_lib.SubstituteConfig()
    if reproduce:
        _define(flags.DEFINE_boolean, "jacobian_substitute", _DEFAULTS.jacobian_substitute,
                "Also train surrogate J against each target (J_<target>, seed + 3) and "
                "score its black-box attacks on that target.")
    _define(flags.DEFINE_integer, "substitute_initial", defaults.initial,
            "Surrogate J: size of S_0, the last test inputs (never attacked).")
    _define(flags.DEFINE_integer, "substitute_rounds", defaults.rounds,
            "Surrogate J: Jacobian augmentation rounds rho (S grows to initial * 2**rounds).")
    _define(flags.DEFINE_float, "substitute_lam", defaults.lam,
            "Surrogate J: augmentation step lambda in (0, 1].")
    _define(flags.DEFINE_integer, "substitute_tau", defaults.tau,
            "Surrogate J: the step's sign flips every tau rounds, lambda * (-1)**floor(rho/tau) "
            "(0: constant step).")
    _define(flags.DEFINE_integer, "substitute_epochs_per_round", defaults.epochs_per_round,
            "Surrogate J: training epochs per round.")
    _define(flags.DEFINE_integer, "substitute_batch_size", defaults.batch_size,
            "Surrogate J: training batch size (capped at the set size).")


def _define_output():
    _define(flags.DEFINE_string, "output_dir", _DEFAULTS.output_dir, "Parent of the run directory.")
    _define(flags.DEFINE_string, "run_name", None, "Run directory name (default: derived).")
    _define(flags.DEFINE_boolean, "progress", _DEFAULTS.progress, "Print progress.")


def _define_distribution():
    _define(flags.DEFINE_string, "distribution", config_lib.DistributionConfig().kind,
            f"One of {_one_of(config_lib.DISTRIBUTION_KINDS)}: one device; "
            "tf.distribute.MirroredStrategy over the "
            "local GPUs (or the --cpu_devices logical CPUs); MultiWorkerMirroredStrategy over "
            "the machines of the TF_CONFIG environment variable (see docs/distribution.md).")
    _define(flags.DEFINE_integer, "cpu_devices", None,
            "Split the CPU into N >= 1 logical devices (tests mirrored runs without GPUs).")


def define_flags(*groups, train=False, reproduce=False):
    """Define the flags of `groups` (DATA, MODELS, EVALUATION, SUBSTITUTE, OUTPUT,
    DISTRIBUTION).

    MODELS takes --defense and --teacher with train=True, and
    --distillation_temperature and --model_dir, EVALUATION --num_examples_extra, with
    reproduce=True; SUBSTITUTE
    (surrogate J's --substitute_* settings) takes --jacobian_substitute with
    reproduce=True.
    """
    for group in groups:
        if group == DATA:
            _define_data()
        elif group == MODELS:
            _define_models(train, reproduce)
        elif group == EVALUATION:
            _define_evaluation(reproduce)
        elif group == SUBSTITUTE:
            _define_substitute(reproduce)
        elif group == OUTPUT:
            _define_output()
        elif group == DISTRIBUTION:
            _define_distribution()
        else:
            raise ValueError(f"unknown flag group {group!r}")


# ------------------------------------------------------------------------ values


def defined(name):
    """True when this binary defined flag `name` (its groups and options include it)."""
    return name in _FLAGS


def preset():
    """The preset chosen by --preset (or --quick), None without one."""
    holder, quick = _FLAGS.get("preset"), _FLAGS.get("quick")
    name = holder.value if holder is not None else None
    if quick is not None and quick.value:
        if name not in (None, "quick"):
            raise ValueError(f"--quick and --preset={name}: choose one preset")
        name = "quick"
    if name is not None and name not in PRESETS:
        raise ValueError(f"preset={name!r}: allowed values are {_one_of(PRESETS)}")
    return name


def value(name):
    """The flag's value, or its preset's value when a preset is on and it was not given."""
    holder = _FLAGS[name]
    chosen = preset()
    if chosen is not None and not holder.present and name in PRESETS[chosen]:
        return PRESETS[chosen][name]
    return holder.value
