"""absl flags shared by bin/eval_whitebox, bin/eval_blackbox and bin/reproduce.

Binary-side plumbing, like keras_edd/cli.py: importing this module defines the
flags; `data_config()` and `eval_config()` turn their values into the frozen
config dataclasses. The library itself never imports this module or reads FLAGS.

`--quick` replaces the defaults of the flags in QUICK_PRESET (flags given on the
command line still win): a few-minute demo on the bundled MNIST sample.
"""

from absl import flags

from keras_edd.config import (ATTACKS, CW_OPTIMIZERS, DEFAULT_SWEEP_EPS, DEFAULT_SWEEP_GAMMA,
                              DEFAULT_SWEEP_KAPPA, JSMA_TARGET_MODES, PGD_LOSSES, AttackConfig,
                              DataConfig, EvalConfig)

# flag name -> value under --quick (unless the flag is given explicitly).
QUICK_PRESET = {
    "dataset": "mnist_sample", "train_limit": 1000, "test_limit": 200,
    "epochs": 4, "teacher_epochs": 3, "mc_passes": 5, "batch_size": 64,
    "num_examples": 100, "num_examples_jsma": 20, "num_examples_cw": 10,
    "pgd_nb_iter": 10, "pgd_eps_iter": 0.05,
    "cw_max_iterations": 100, "cw_binary_search_steps": 3, "cw_initial_const": 10.0,
    # CW needs ~1000 iterations per binary-search step to reach ~100 % on MNIST (pixels
    # at 0 or 1 sit where tanh is flat); too slow for a demo, so it is not swept here.
    "sweep_attacks": ["fgsm", "pgd", "jsma"],
    "sweep_eps": ["0.1", "0.3", "0.5"], "sweep_gamma": ["0.03", "0.14"],
    "sweep_kappa": ["0", "7"], "sweep_num_examples": 20, "check_examples": 50,
}

_QUICK = flags.DEFINE_boolean(
    "quick", False, "Few-minute demo preset: bundled MNIST sample, tiny epochs and example "
    "counts (any flag given explicitly overrides the preset).")
_DATASET = flags.DEFINE_string("dataset", "mnist", "mnist, fashion_mnist, mnist_sample or cifar10.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Folder with the four IDX files (default: $KERAS_EDD_DATA_DIR, then "
    "TensorFlow Datasets, then for mnist the bundled sample).")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", None, "Use only the first N training images.")
_TEST_LIMIT = flags.DEFINE_integer("test_limit", None, "Use only the first N test images.")

_ATTACKS = flags.DEFINE_list("attacks", ",".join(ATTACKS),
                             f"Attacks to run, from {', '.join(ATTACKS)}.")
_NUM_EXAMPLES = flags.DEFINE_integer(
    "num_examples", 1000, "How many test inputs (the first ones) are attacked.")
_NUM_EXAMPLES_JSMA = flags.DEFINE_integer(
    "num_examples_jsma", 200, "Cap on the inputs JSMA attacks (0: num_examples).")
_NUM_EXAMPLES_CW = flags.DEFINE_integer(
    "num_examples_cw", 100, "Cap on the inputs CW attacks (0: num_examples).")
_ADAPTIVE = flags.DEFINE_boolean(
    "adaptive", True, "Also run adaptive attacks (avoiding the outlier class) on n+1-logit models.")
_FGSM_EPS = flags.DEFINE_float("fgsm_eps", 0.2, "FGSM eps (paper: 0.2).")
_PGD_EPS = flags.DEFINE_float("pgd_eps", 0.2, "PGD eps.")
_PGD_EPS_ITER = flags.DEFINE_float("pgd_eps_iter", 0.01, "PGD step size.")
_PGD_NB_ITER = flags.DEFINE_integer("pgd_nb_iter", 40, "PGD steps.")
_PGD_RESTARTS = flags.DEFINE_integer("pgd_restarts", 1, "PGD random restarts.")
_PGD_LOSS = flags.DEFINE_string(
    "pgd_loss", "ce", f"PGD loss, one of {', '.join(PGD_LOSSES)}: cross-entropy, or the logit "
    "margin (sees through a saturated softmax).")
_JSMA_THETA = flags.DEFINE_float("jsma_theta", 1.0, "JSMA theta (paper: 1).")
_JSMA_GAMMA = flags.DEFINE_float("jsma_gamma", 0.07,
                                 "JSMA Gamma, max fraction of pixels changed (paper: 0.07).")
_JSMA_TARGET_MODE = flags.DEFINE_string(
    "jsma_target_mode", "random", f"JSMA targets t != y: {', '.join(JSMA_TARGET_MODES)}.")
_CW_CONFIDENCE = flags.DEFINE_float("cw_confidence", 7.0, "CW kappa (paper: 7).")
_CW_OPTIMIZER = flags.DEFINE_string(
    "cw_optimizer", "adadelta", f"CW optimizer: {', '.join(CW_OPTIMIZERS)} (paper: adadelta).")
_CW_LEARNING_RATE = flags.DEFINE_float(
    "cw_learning_rate", None, "CW learning rate (default: the attack's default for the optimizer).")
_CW_BINARY_SEARCH_STEPS = flags.DEFINE_integer("cw_binary_search_steps", 5,
                                               "CW binary-search steps over c.")
_CW_MAX_ITERATIONS = flags.DEFINE_integer("cw_max_iterations", 1000,
                                          "CW optimizer steps per binary-search step.")
_CW_INITIAL_CONST = flags.DEFINE_float("cw_initial_const", 1e-2, "CW initial c.")
_ATTACK_BATCH_SIZE = flags.DEFINE_integer("attack_batch_size", 100, "Inputs per attack call.")
_ATTACK_SEED = flags.DEFINE_integer("attack_seed", 0, "Seed of PGD starts and JSMA targets.")
_SWEEPS = flags.DEFINE_boolean("sweeps", True, "Run the budget sweeps (gradient-masking check).")
_SWEEP_ATTACKS = flags.DEFINE_list("sweep_attacks", None, "Attacks to sweep (default: --attacks).")
_SWEEP_EPS = flags.DEFINE_list("sweep_eps", [f"{v:g}" for v in DEFAULT_SWEEP_EPS],
                               "FGSM/PGD eps values of the sweep.")
_SWEEP_GAMMA = flags.DEFINE_list("sweep_gamma", [f"{v:g}" for v in DEFAULT_SWEEP_GAMMA],
                                 "JSMA Gamma values of the sweep.")
_SWEEP_KAPPA = flags.DEFINE_list("sweep_kappa", [f"{v:g}" for v in DEFAULT_SWEEP_KAPPA],
                                 "CW kappa values of the sweep.")
_SWEEP_NUM_EXAMPLES = flags.DEFINE_integer(
    "sweep_num_examples", 200, "Inputs per sweep point (also capped by the per-attack caps).")
_MASKING_THRESHOLD = flags.DEFINE_float(
    "masking_threshold", 0.95, "Flag a sweep whose best success stays below this fraction.")
_CHECK_EXAMPLES = flags.DEFINE_integer("check_examples", 100,
                                       "Inputs for the gradient-masking checks.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "saved_models", "Parent of the run directory.")
_RUN_NAME = flags.DEFINE_string("run_name", None, "Run directory name (default: derived).")
_PROGRESS = flags.DEFINE_boolean("progress", True, "Print progress.")


def value(holder):
    """The flag's value, or its --quick preset when --quick is on and it was not given."""
    if _QUICK.value and not holder.present and holder.name in QUICK_PRESET:
        return QUICK_PRESET[holder.name]
    return holder.value


def _floats(holder):
    values = []
    for text in value(holder) or ():
        try:
            values.append(float(text))
        except ValueError:
            raise ValueError(f"{holder.name}: {text!r} is not a number") from None
    return tuple(values)


def _cap(holder):
    cap = value(holder)
    return None if cap == 0 else cap


def data_config():
    return DataConfig(value(_DATASET), value(_DATA_DIR), value(_TRAIN_LIMIT), value(_TEST_LIMIT))


def eval_config():
    attack = AttackConfig(
        fgsm_eps=value(_FGSM_EPS), pgd_eps=value(_PGD_EPS), pgd_eps_iter=value(_PGD_EPS_ITER),
        pgd_nb_iter=value(_PGD_NB_ITER), pgd_restarts=value(_PGD_RESTARTS),
        pgd_loss=value(_PGD_LOSS),
        jsma_theta=value(_JSMA_THETA), jsma_gamma=value(_JSMA_GAMMA),
        jsma_target_mode=value(_JSMA_TARGET_MODE), cw_confidence=value(_CW_CONFIDENCE),
        cw_optimizer=value(_CW_OPTIMIZER), cw_learning_rate=value(_CW_LEARNING_RATE),
        cw_binary_search_steps=value(_CW_BINARY_SEARCH_STEPS),
        cw_max_iterations=value(_CW_MAX_ITERATIONS), cw_initial_const=value(_CW_INITIAL_CONST),
        batch_size=value(_ATTACK_BATCH_SIZE), seed=value(_ATTACK_SEED))
    sweep_attacks = value(_SWEEP_ATTACKS)
    return EvalConfig(
        attacks=tuple(value(_ATTACKS) or ()), num_examples=value(_NUM_EXAMPLES),
        num_examples_jsma=_cap(_NUM_EXAMPLES_JSMA), num_examples_cw=_cap(_NUM_EXAMPLES_CW),
        adaptive=value(_ADAPTIVE), sweeps=value(_SWEEPS),
        sweep_attacks=None if sweep_attacks is None else tuple(sweep_attacks),
        sweep_eps=_floats(_SWEEP_EPS), sweep_gamma=_floats(_SWEEP_GAMMA),
        sweep_kappa=_floats(_SWEEP_KAPPA), sweep_num_examples=value(_SWEEP_NUM_EXAMPLES),
        masking_threshold=value(_MASKING_THRESHOLD), check_examples=value(_CHECK_EXAMPLES),
        attack=attack)


def output_dir():
    return value(_OUTPUT_DIR)


def run_name():
    return value(_RUN_NAME)


def progress():
    return value(_PROGRESS)


def quick():
    return _QUICK.value


def check_no_arguments(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]!r}; every setting is a --flag")


class _DropRetracingNotices:
    """logging filter: each (model, attack) pair is traced once on purpose, so TensorFlow's
    "N out of the last N calls ... triggered tf.function retracing" notice is noise here."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_retracing_notices():
    import logging
    logging.getLogger("tensorflow").addFilter(_DropRetracingNotices())


def print_summary(results):
    """A few lines on stdout: where the report is and the headline numbers."""
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
