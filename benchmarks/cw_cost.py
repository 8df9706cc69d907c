"""Cost of the paper's CW-L2: batch-level versus per-sample abort-early.

The paper's attack (AdaDelta, lr 10, kappa = 7, 5 binary-search steps x 1,000
iterations, c_0 = 0.01) on the first --num_digits correctly classified test
digits, for the undefended model and for f^d (plain, and adaptive with the
outlier class), each with early_exit="batch" (the earlier behaviour, run in
chunks of --old_batch_size as the evaluation does) and early_exit="sample"
(--batch_size slots, refilled). Prints one JSON document.

  python benchmarks/cw_cost.py \
      --undefended=saved_models/mnist-none-e6-s0/model.keras \
      --distilled=saved_models/mnist-extended-a0.9-T4-e10-s0/distilled.keras \
      --data_dir=../shared/data/mnist --num_digits=200 --output=cw_cost.json

Per (model, variant, mode): digits, seconds (wall clock, tracing included),
digits_per_s, success_rate (an example with margin >= kappa was found),
mean_l2 over successes, mean iterations per digit in each binary-search step,
gradients_per_s (input gradients computed per second). speed_up = digits/s of
"sample" over "batch". Ratios within one run are what count on a shared machine.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from keras_edd import files

_UNDEFENDED = flags.DEFINE_string("undefended", None, "Undefended model (.keras, logits).")
_DISTILLED = flags.DEFINE_string("distilled", None,
                                 "f^d with an outlier class (.keras, n + 1 logits).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with the four MNIST IDX files.")
_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset name for keras_edd.data.")
_NUM_DIGITS = flags.DEFINE_integer("num_digits", 200, "Correctly classified test digits.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Slots of early_exit='sample'.")
_OLD_BATCH_SIZE = flags.DEFINE_integer(
    "old_batch_size", 100, "Chunk size of early_exit='batch' (the evaluation's default).")
_MAX_ITERATIONS = flags.DEFINE_integer("max_iterations", 1000, "CW iterations per c.")
_BINARY_STEPS = flags.DEFINE_integer("binary_search_steps", 5, "CW search steps.")
_MODES = flags.DEFINE_list("modes", ["batch", "sample"], "early_exit values to run.")
_VARIANTS = flags.DEFINE_list("variants", ["plain", "adaptive"],
                              "Attacks on f^d: plain and/or adaptive (outlier class).")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON here.")

CONFIDENCE = 7.0


def _attack(model_fn, x, labels, outlier_class, mode, chunk, settings):
    """Runs CW in `mode` and returns (seconds, CWResult fields as numpy)."""
    import numpy as np

    from keras_edd import attacks
    start = time.perf_counter()
    parts = []
    step = chunk if mode == "batch" else len(x)
    for begin in range(0, len(x), step):
        parts.append(attacks.carlini_wagner_l2(
            model_fn, x[begin:begin + step], y=labels[begin:begin + step],
            outlier_class=outlier_class, early_exit=mode, batch_size=chunk,
            return_details=True, **settings))
    seconds = time.perf_counter() - start
    success = np.concatenate([p.success for p in parts])
    l2 = np.concatenate([p.l2 for p in parts])
    iterations = np.concatenate([p.iterations for p in parts])
    x_adv = np.concatenate([np.asarray(p.x_adv) for p in parts])
    return seconds, success, l2, iterations, x_adv


def _row(seconds, success, l2, iterations, checked_success):
    n = len(success)
    return {
        "digits": n, "seconds": round(seconds, 1), "digits_per_s": round(n / seconds, 4),
        "success_rate": round(float(success.mean()), 4),
        "success_rate_rechecked": round(float(checked_success.mean()), 4),
        "mean_l2": round(float(l2[success].mean()), 4) if success.any() else None,
        "mean_iterations_per_step": [round(float(v), 1) for v in iterations.mean(axis=0)],
        "iterations_per_digit": round(float(iterations.sum(axis=1).mean()), 1),
        "gradients_per_s": round(float(iterations.sum()) / seconds, 1),
    }


def run(undefended, distilled, data_dir, *, dataset="mnist", num_digits=200, batch_size=128,
        old_batch_size=100, max_iterations=1000, binary_search_steps=5,
        modes=("batch", "sample"), variants=("plain", "adaptive")):
    """Returns the result dictionary (see the module docstring)."""
    import keras
    import numpy as np

    from keras_edd import attacks, data

    loaded = data.load_dataset(dataset, data_dir=data_dir, allow_download=False)
    x_test = data.to_float(loaded.x_test)
    y_test = np.asarray(loaded.y_test).astype(np.int64)
    settings = {"confidence": CONFIDENCE, "optimizer": "adadelta", "learning_rate": 10.0,
                "binary_search_steps": binary_search_steps,
                "max_iterations": max_iterations, "initial_const": 0.01}
    runs = []
    if undefended:
        runs.append(("undefended", undefended, "plain", None))
    if distilled:
        for variant in variants:
            runs.append(("distilled", distilled, variant,
                         "outlier" if variant == "adaptive" else None))
    models = {}
    results = []
    for name, path, variant, outlier in runs:
        if path not in models:
            models[path] = keras.models.load_model(path, safe_mode=True, compile=False)
        model = models[path]
        model_fn = attacks.utils.as_model_fn(model)
        num_outputs = int(model.output_shape[-1])
        outlier_class = num_outputs - 1 if outlier else None
        logits = np.asarray(model.predict(x_test[:4 * num_digits + 1000], batch_size=512,
                                          verbose=0))
        correct = np.flatnonzero(logits.argmax(axis=1) == y_test[:len(logits)])[:num_digits]
        x, labels = x_test[correct], y_test[correct]
        entry = {"model": name, "path": path, "variant": variant,
                 "outlier_class": outlier_class, "test_indices_first": correct[:5].tolist()}
        for mode in modes:
            seconds, success, l2, iterations, x_adv = _attack(
                model_fn, x, labels, outlier_class, mode,
                old_batch_size if mode == "batch" else batch_size, settings)
            margin = attacks.utils.attack_margin(
                model.predict(x_adv, batch_size=512, verbose=0), labels, targeted=False,
                outlier_class=outlier_class).numpy()
            entry[mode] = _row(seconds, success, l2, iterations, margin >= CONFIDENCE - 1e-3)
            print(json.dumps({"model": name, "variant": variant, "mode": mode,
                              **entry[mode]}), file=sys.stderr, flush=True)
        if "batch" in entry and "sample" in entry:
            old, new = entry["batch"], entry["sample"]
            entry["speed_up"] = round(new["digits_per_s"] / old["digits_per_s"], 3)
            entry["work_ratio"] = round(old["iterations_per_digit"]
                                        / new["iterations_per_digit"], 3)
            entry["success_difference_points"] = round(
                100 * (new["success_rate"] - old["success_rate"]), 2)
            if old["mean_l2"] and new["mean_l2"]:
                entry["mean_l2_relative_change"] = round(new["mean_l2"] / old["mean_l2"] - 1, 4)
        results.append(entry)
    return {"attack": dict(settings, note="the paper's CW: AdaDelta, kappa = 7"),
            "num_digits": num_digits, "batch_size": batch_size,
            "old_batch_size": old_batch_size, "results": results}


def main(argv):
    del argv
    if not (_UNDEFENDED.value or _DISTILLED.value):
        raise app.UsageError("give --undefended and/or --distilled")
    result = run(_UNDEFENDED.value, _DISTILLED.value, _DATA_DIR.value, dataset=_DATASET.value,
                 num_digits=_NUM_DIGITS.value, batch_size=_BATCH_SIZE.value,
                 old_batch_size=_OLD_BATCH_SIZE.value, max_iterations=_MAX_ITERATIONS.value,
                 binary_search_steps=_BINARY_STEPS.value, modes=_MODES.value,
                 variants=_VARIANTS.value)
    print(json.dumps(result, indent=2))
    if _OUTPUT.value:
        files.write_json(_OUTPUT.value, result)  # atomic, as every file of a run


if __name__ == "__main__":
    app.run(main)
