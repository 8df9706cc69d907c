"""The flags of the four binaries in bin/, and the plumbing they share.

Binary-side only: the library never imports this module or reads FLAGS. Each
binary defines, at module level, the flag groups it takes, and turns their
values into the frozen config dataclasses with the builders below (keyword
arguments only):

    cli.define_flags(cli.DATA, cli.MODELS, cli.OUTPUT, train=True)   # bin/train
    config = RunConfig(data=cli.data_config(), train=cli.train_config(), ...)

The attack flags are derived from keras_edd.evaluation.attack_registry: `--<attack>_<field>`
for every field of an attack's settings (under its FLAG_NAMES alias where one is
set, e.g. --pgd_restarts) and `--num_examples_<attack>` for attacks with a cap.

Choices (--dataset, --defense, --optimizer, --pgd_loss, ...) are string flags
whose allowed values come from the enums in keras_edd.config and
keras_edd.evaluation.attack_registry; they are checked by the configs' validate(), so a
bad value is the same one-line error (exit status 2) as any other bad setting.

`--preset=NAME` (evaluation binaries) replaces the defaults of the flags in
PRESETS[NAME] (keras_edd.cli.presets; flags given on the command line still win):
`quick`, a few-minute demo on the bundled MNIST sample (`--quick` is the same), or
`paper`, the settings of Papernot & McDaniel (2017) for every model and attack.
"""

import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from keras_edd import config as config_lib  # noqa: E402
from keras_edd.evaluation import attack_registry  # noqa: E402
from keras_edd.data import DATASETS  # noqa: E402  (light: no TensorFlow)
from keras_edd.defense.adversarial_training import ADV_TRAIN_ATTACKS  # noqa: E402  (light)
from keras_edd.models import PRECISIONS  # noqa: E402  (light: no TensorFlow)
from keras_edd.cli.presets import PRESETS  # noqa: E402  (light)
from keras_edd.runs.run_config import ReproduceConfig  # noqa: E402

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
            f"One of {_one_of(sorted(DATASETS))}.")
    _define(flags.DEFINE_string, "data_dir", None,
            "Folder with the four IDX files (default: $KERAS_EDD_DATA_DIR, then TensorFlow "
            "Datasets, then for mnist the bundled sample).")
    _define(flags.DEFINE_integer, "train_limit", None, "Use only the first N training images.")
    _define(flags.DEFINE_integer, "test_limit", None, "Use only the first N test images.")


def _define_models(train, reproduce):
    rates = ", ".join(f"{rate:g} for {name}"
                      for name, rate in config_lib.DEFAULT_LEARNING_RATES.items())
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
            f"One of {_one_of(PRECISIONS)}: the arithmetic of training and MC-dropout "
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
                f"{_one_of(ADV_TRAIN_ATTACKS)} (FGSM with a random start, Wong et al. 2020; "
                "PGD, Madry et al. 2018).")
        _define(flags.DEFINE_float, "adv_train_eps", adversarial.adv_train_eps,
                "--defense=adversarial: L_inf radius of the training adversary (MNIST: 0.3).")
        _define(flags.DEFINE_float, "adv_train_step", None,
                "--defense=adversarial: its step (default 1.25 eps for fgsm_rs, 0.01 for pgd).")
        _define(flags.DEFINE_integer, "adv_train_steps", adversarial.adv_train_steps,
                "--defense=adversarial with pgd: its number of steps.")
    if reproduce:
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
    from keras_edd.distribute import KINDS  # light: no TensorFlow
    _define(flags.DEFINE_string, "distribution", config_lib.DistributionConfig().kind,
            f"One of {_one_of(KINDS)}: one device; tf.distribute.MirroredStrategy over the "
            "local GPUs (or the --cpu_devices logical CPUs); MultiWorkerMirroredStrategy over "
            "the machines of the TF_CONFIG environment variable (see README).")
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


# ----------------------------------------------------------------------- configs


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


def _floats(name):
    values = []
    for text in value(name) or ():
        try:
            values.append(float(text))
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a number") from None
    return tuple(values)


def data_config():
    return config_lib.DataConfig(dataset=value("dataset"), data_dir=value("data_dir"),
                                 train_limit=value("train_limit"), test_limit=value("test_limit"))


def train_config():
    return config_lib.TrainConfig(epochs=value("epochs"), batch_size=value("batch_size"),
                                  optimizer=value("optimizer"),
                                  learning_rate=value("learning_rate"), seed=value("seed"),
                                  precision=value("precision"))


_ADV_TRAIN_FLAGS = ("adv_train_attack", "adv_train_eps", "adv_train_step", "adv_train_steps")


def defense_config(defense=None):
    """--defense (or `defense`), alpha, T, N, penalty, teacher epochs, --teacher if defined;
    the --adv_train_* settings for the adversarial defense."""
    defense = defense or value("defense")
    adversarial = {name: value(name) for name in _ADV_TRAIN_FLAGS} if (
        defense == "adversarial" and "adv_train_attack" in _FLAGS) else {}
    return config_lib.DefenseConfig(
        defense=defense, alpha=value("alpha"),
        # adversarial training is at T = 1; --temperature is the distillations' T
        temperature=None if defense == "adversarial" else value("temperature"),
        mc_passes=value("mc_passes"),
        penalty_weight=value("penalty_weight"), teacher_epochs=value("teacher_epochs"),
        teacher_path=model_file(value("teacher")) if "teacher" in _FLAGS else None,
        **adversarial)


def attack_config():
    settings = {}
    for name, row in attack_registry.ATTACKS.items():
        values = {field.name: value(f"{name}_{flag}")
                  for field, flag in row.settings.flag_fields()}
        settings[name] = dataclasses.replace(row.settings, **values)
    return config_lib.AttackConfig(settings=settings, batch_size=value("attack_batch_size"),
                                   seed=value("attack_seed"))


def eval_config():
    sweep_attacks = value("sweep_attacks")
    caps = {name: value(f"num_examples_{name}") or None
            for name in attack_registry.NAMES if f"num_examples_{name}" in _FLAGS}
    return config_lib.EvalConfig(
        attacks=tuple(value("attacks") or ()), num_examples=value("num_examples"),
        max_examples=caps,
        extra_examples=(value("num_examples_extra") or None) if "num_examples_extra" in _FLAGS
        else None,
        adaptive=value("adaptive"), sweeps=value("sweeps"),
        sweep_attacks=None if sweep_attacks is None else tuple(sweep_attacks),
        sweep_eps=_floats("sweep_eps"), sweep_gamma=_floats("sweep_gamma"),
        sweep_kappa=_floats("sweep_kappa"), sweep_num_examples=value("sweep_num_examples"),
        masking_threshold=value("masking_threshold"),
        masking_min_inputs=value("masking_min_inputs"), check_examples=value("check_examples"),
        attack=attack_config())


def substitute_config():
    return config_lib.SubstituteConfig(
        initial=value("substitute_initial"), rounds=value("substitute_rounds"),
        lam=value("substitute_lam"), tau=value("substitute_tau"),
        epochs_per_round=value("substitute_epochs_per_round"),
        batch_size=value("substitute_batch_size"))


def distribution_config():
    """--distribution, --cpu_devices and, for multi_worker, the TF_CONFIG environment
    variable (read here, on the binary side: the library takes it as an argument)."""
    kind = value("distribution")
    return config_lib.DistributionConfig(
        kind=kind, cpu_devices=value("cpu_devices"),
        tf_config=os.environ.get("TF_CONFIG") if kind == "multi_worker" else None)


def output_settings():
    """output_dir, run_name, progress (and the preset, where defined) as keyword arguments
    of a config."""
    out = {"output_dir": value("output_dir"), "run_name": value("run_name"),
           "progress": value("progress")}
    if "preset" in _FLAGS:
        out["preset"] = preset()
    return out


# ------------------------------------------------------------------------ plumbing


def model_file(value):
    """A model flag's `.keras` path: a pretrained name (`paper:extended`) becomes its
    sha256-checked file in saved_models/ (keras_edd.pretrained); a path stays as given."""
    from keras_edd import pretrained  # light: no TensorFlow
    return pretrained.resolve_model(value)


def reproduce_config():
    """bin/reproduce's ReproduceConfig from its flags (also tools/make_pretrained.py's)."""
    return ReproduceConfig(
        data=data_config(), train=train_config(),
        extended=defense_config("extended"), adversarial=defense_config("adversarial"),
        distillation_temperature=value("distillation_temperature"),
        evaluation=eval_config(), jacobian_substitute=value("jacobian_substitute"),
        substitute=substitute_config(), model_dir=value("model_dir"),
        pretrained=value("pretrained"), distribution=distribution_config(),
        **output_settings())


def check_no_arguments(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]!r}; every setting is a --flag")


def parse_flags(argv):
    """absl's flag parsing, with its errors as ValueError (one line, exit status 2).

    absl's own parser prints a usage hint and exits with status 1 on an unknown
    flag (--alhpa=0.9) or a value of the wrong type (--alpha=abc); every other bad
    value is a one-line error with status 2, and so are these.
    """
    try:
        return flags.FLAGS(argv)
    except flags.Error as exc:
        message = " ".join(str(exc).split())
        raise ValueError(f"{message} (see --helpfull)") from None


def run_main(program, main):
    """app.run(main) with `parse_flags`; a ValueError becomes one line on stderr, exit 2.

    `main(argv)` gets the arguments left after the flags, as with app.run.
    """
    from absl import app
    try:
        app.run(lambda argv: _main_quietly(main, argv), flags_parser=parse_flags)
    except ValueError as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{program}: interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


def _main_quietly(main, argv):
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    return main(argv)


class _DropRetracingNotices:
    """logging filter: each (model, attack) pair is traced once on purpose, so TensorFlow's
    "N out of the last N calls ... triggered tf.function retracing" notice is noise here."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


# What TensorFlow's C++ code prints while it loads, before its logging is set up (so
# TF_CPP_MIN_LOG_LEVEL cannot stop it): the oneDNN notice, twice, each after absl's
# pre-initialisation warning, and the CPU-instructions notice.
_STARTUP_NOISE = ("All log messages before absl::InitializeLog() is called",
                  "oneDNN custom operations are on",
                  "This TensorFlow binary is optimized to use available CPU instructions",
                  "To enable the following instructions")


def import_tensorflow():
    """Import TensorFlow without its start-up notices; any other line it writes to
    stderr while loading is passed on. A binary calls this once its flags are valid."""
    if "tensorflow" in sys.modules:
        return
    import tempfile
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(noise in line for noise in _STARTUP_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


def quiet_retracing_notices():
    import logging
    logging.getLogger("tensorflow").addFilter(_DropRetracingNotices())


def print_summary(results):
    """A few lines on stdout: where the report is and the headline numbers (a worker
    other than the chief of a multi-worker run says only that it is done)."""
    worker = results.get("distribution", {}).get("worker", 0)
    if worker:
        print(f"worker {worker}: done (the chief, worker 0, writes the report)")
        return
    for e in results["evaluations"]:
        f = e["filtered"]
        if f["count"]:
            where = e["target"] if e["setting"] == "whitebox" else f"{e['source']} -> {e['target']}"
            print(f"{e['setting']} {where} {e['attack']} ({e['variant']}): recovered "
                  f"{f['recovered']:.3f}, detected {f['detected']:.3f}, misclassified "
                  f"{f['misclassified']:.3f} (n={f['count']})")
    for warning in results.get("warnings", []):
        print(f"warning: {warning}")
    print(f"report: {results['run_dir']}/report.md")
