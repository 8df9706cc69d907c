"""Attack success rates and distortions of keras_edd's attacks on one model.

For the issue note: FGSM, JSMA (random target and all targets), CW-L2
(kappa = 7, AdaDelta) and PGD on the first --num_examples test digits; rates
are over the digits the model classifies correctly. Prints one JSON document.

  python benchmarks/attack_rates.py --model=saved_models/mnist-none-e6-s0/model.keras \
      --data_dir=../shared/data/mnist --num_examples=1000 --cw_examples=200

success_rate = misclassification rate of x_adv (label != true label); JSMA
rows also give the targeted success rate. Mean L0 / L2 / L_inf are over the
successful examples; adv_per_s = inputs / wall-clock seconds of one cold call.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from keras_edd import files

_MODEL = flags.DEFINE_string("model", None, "Trained model (.keras, logits output).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with the four MNIST IDX files.")
_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset name for keras_edd.data.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 1000, "First test digits used.")
_CW_EXAMPLES = flags.DEFINE_integer("cw_examples", 1000, "Of those, how many CW attacks.")
_JSMA_ALL_EXAMPLES = flags.DEFINE_integer(
    "jsma_all_examples", 1000, "Of those, how many get JSMA with all 9 targets.")
_CW_OPTIMIZER = flags.DEFINE_enum("cw_optimizer", "adadelta", ["adadelta", "adam"],
                                  "Optimiser of the CW attack.")
_CW_LEARNING_RATE = flags.DEFINE_float("cw_learning_rate", None,
                                       "CW learning rate (default: the attack's).")
_CW_ITERATIONS = flags.DEFINE_integer("cw_iterations", 1000, "CW iterations per c.")
_CW_BINARY_STEPS = flags.DEFINE_integer("cw_binary_search_steps", 5, "CW search steps.")
_CW_INITIAL_CONST = flags.DEFINE_float("cw_initial_const", 0.01, "CW c_0.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for JSMA targets and PGD starts.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON here.")


def _stats(name, x, x_adv, labels, seconds, logits, *, targets=None, settings=None,
           extra=None):
    import numpy as np
    from keras_edd.attacks import perturbation_norms
    predicted = logits.argmax(axis=1)
    success = predicted != labels
    norms = perturbation_norms(x, x_adv)
    row = {"attack": name, "n": len(x), "seconds": round(seconds, 2),
           "adv_per_s": round(len(x) / seconds, 2),
           "success_rate": round(float(success.mean()), 4)}
    if targets is not None:
        row["targeted_success_rate"] = round(float((predicted == targets).mean()), 4)
    for norm in ("l0", "l2", "linf"):
        row[f"mean_{norm}"] = (round(float(norms[norm][success].mean()), 4)
                               if success.any() else None)
    if settings:
        row["settings"] = settings
    if extra:
        row.update(extra)
    print(json.dumps(row), flush=True, file=sys.stderr)
    return row


def run(model_path, data_dir, *, dataset="mnist", num_examples=1000, cw_examples=1000,
        jsma_all_examples=1000, cw_optimizer="adadelta", cw_learning_rate=None,
        cw_iterations=1000, cw_binary_search_steps=5, cw_initial_const=0.01, seed=0):
    """Runs every attack and returns the result dictionary."""
    import keras
    import numpy as np

    from keras_edd import attacks, data

    model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    model_fn = attacks.utils.as_model_fn(model)
    loaded = data.load_dataset(dataset, data_dir=data_dir, allow_download=False)
    x_all = data.to_float(loaded.x_test[:num_examples])
    y_all = np.asarray(loaded.y_test[:num_examples]).astype(np.int64)
    predict = lambda x: np.asarray(model.predict(np.asarray(x), batch_size=512, verbose=0))
    correct = predict(x_all).argmax(axis=1) == y_all
    x, labels = x_all[correct], y_all[correct]
    num_classes = int(model.output_shape[-1])
    rows = []

    def timed(fn):
        start = time.perf_counter()
        out = np.asarray(fn())
        return out, time.perf_counter() - start

    settings = {"eps": 0.2}
    x_adv, sec = timed(lambda: attacks.fgsm(model_fn, x, **settings))
    rows.append(_stats("fgsm", x, x_adv, labels, sec, predict(x_adv), settings=settings))

    settings = {"eps": 0.2, "eps_iter": 0.01, "nb_iter": 40, "rand_init": True}
    x_adv, sec = timed(lambda: attacks.pgd(model_fn, x, seed=seed, **settings))
    rows.append(_stats("pgd", x, x_adv, labels, sec, predict(x_adv), settings=settings))

    settings = {"theta": 1.0, "gamma": 0.07}
    targets = attacks.random_targets(labels, num_classes, seed=seed)
    x_adv, sec = timed(lambda: attacks.jsma(model_fn, x, targets, **settings))
    rows.append(_stats("jsma_random_target", x, x_adv, labels, sec, predict(x_adv),
                       targets=targets, settings=settings))

    m = min(jsma_all_examples, len(x))
    sample_index, all_t = attacks.all_targets(labels[:m], num_classes)
    x_pairs = x[:m][sample_index]
    x_adv_pairs, sec = timed(lambda: attacks.jsma(model_fn, x_pairs, all_t, **settings))
    reached = predict(x_adv_pairs).argmax(axis=1) == all_t
    pair_rate = round(float(reached.mean()), 4)
    pair_norms = attacks.perturbation_norms(x_pairs, x_adv_pairs)
    any_target = np.zeros(m, bool)
    np.logical_or.at(any_target, sample_index, reached)
    row = {
        "attack": "jsma_all_targets", "n": m, "pairs": len(all_t), "seconds": round(sec, 2),
        "adv_per_s": round(len(all_t) / sec, 2),
        "targeted_success_rate_over_pairs": pair_rate,
        "success_rate_any_target": round(float(any_target.mean()), 4),
        "mean_l0": round(float(pair_norms["l0"][reached].mean()), 4) if reached.any() else None,
        "mean_l2": round(float(pair_norms["l2"][reached].mean()), 4) if reached.any() else None,
        "mean_linf": (round(float(pair_norms["linf"][reached].mean()), 4)
                      if reached.any() else None),
        "settings": dict(settings, note="every target t != y; cleverhans-v1 tutorial rate "
                         "= reached pairs / all pairs; distortions over reached pairs"),
    }
    print(json.dumps(row), flush=True, file=sys.stderr)
    rows.append(row)

    n_cw = min(cw_examples, len(x))
    settings = {"confidence": 7.0, "optimizer": cw_optimizer,
                "learning_rate": cw_learning_rate, "max_iterations": cw_iterations,
                "binary_search_steps": cw_binary_search_steps,
                "initial_const": cw_initial_const}
    x_adv, sec = timed(lambda: attacks.carlini_wagner_l2(model_fn, x[:n_cw], **settings))
    logits = predict(x_adv)
    own = logits[np.arange(n_cw), labels[:n_cw]]
    others = logits.copy()
    others[np.arange(n_cw), labels[:n_cw]] = -np.inf
    margin = others.max(axis=1) - own
    if settings["learning_rate"] is None:
        from keras_edd.attack_settings import CW_LEARNING_RATES
        settings["learning_rate"] = CW_LEARNING_RATES[cw_optimizer]
    rows.append(_stats("cw_l2", x[:n_cw], x_adv, labels[:n_cw], sec, logits,
                       settings=settings,
                       extra={"success_with_margin_ge_kappa":
                              round(float((margin >= 7.0 - 1e-3).mean()), 4)}))
    return {"model": model_path, "first_test_digits": num_examples,
            "clean_accuracy": round(float(correct.mean()), 4),
            "correctly_classified": int(correct.sum()), "results": rows}


def main(argv):
    del argv
    if not _MODEL.value:
        raise app.UsageError("--model is required")
    result = run(_MODEL.value, _DATA_DIR.value, dataset=_DATASET.value,
                 num_examples=_NUM_EXAMPLES.value, cw_examples=_CW_EXAMPLES.value,
                 jsma_all_examples=_JSMA_ALL_EXAMPLES.value,
                 cw_optimizer=_CW_OPTIMIZER.value, cw_learning_rate=_CW_LEARNING_RATE.value,
                 cw_iterations=_CW_ITERATIONS.value,
                 cw_binary_search_steps=_CW_BINARY_STEPS.value,
                 cw_initial_const=_CW_INITIAL_CONST.value, seed=_SEED.value)
    print(json.dumps(result, indent=2))
    if _OUTPUT.value:
        files.write_json(_OUTPUT.value, result)  # atomic, as every file of a run


if __name__ == "__main__":
    app.run(main)
