"""Jacobian-augmented substitute ("surrogate J") against one target: cost, agreement, transfer.

Trains J from the last --initial test inputs, labelled only by the target's argmax
(keras_edd.evaluation.substitute), then crafts FGSM on J for the first --num_examples test
inputs and scores them on the target: recovered / detected / misclassified over
the target's correctly classified inputs ("filtered", as in keras_edd.evaluation.engine).
Prints one JSON document.

  python benchmarks/substitute_transfer.py --data_dir=../shared/data/mnist \
      --target=saved_models/mnist-none-e6-s0/model.keras

Measured (2-core AVX-512 Zen 4, shared, load 6-19; MNIST-22.7k targets; S_0 = last
150 test digits, rho = 6, lambda = 0.1, 10 epochs/round, batch 128; 9,600 oracle
queries, no repeated points; FGSM eps = 0.2 on J, rates over the target's correct
inputs among the first 1,000):
  undefended, constant lambda: agreement 62.4 % (first 1,000), 70.2 % (test minus
    S_0); misclassified 16.2 %, recovered 83.8 %; 163 s CPU, 898 s wall.
  f^d (outlier class 10), constant lambda: agreement 61.3 % / 68.0 %; plain FGSM
    misclassified 20.0 %, detected 15.7 %, recovered 64.2 %; 109 of 9,600 answers
    were the outlier class; 168 s CPU, 974 s wall.
  undefended, --tau=3 (lambda_rho = 0.1 * (-1)**floor(rho / 3)): agreement 83.5 % /
    87.5 %; misclassified 38.2 %, recovered 61.8 %; 162 s CPU, 659 s wall.
  f^d, --tau=3: agreement 79.3 % / 84.0 %; 1,045 outlier answers; plain FGSM
    misclassified 31.6 %, detected 26.0 %, recovered 42.4 %; adaptive FGSM 40.3 % /
    23.8 % / 35.9 %; 159 s CPU, 176 s wall (load 3).
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from keras_edd import files

_TARGET = flags.DEFINE_string("target", None, "Target model (.keras, n or n + 1 logits).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with the four MNIST IDX files.")
_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset name for keras_edd.data.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 1000, "First test inputs attacked.")
_INITIAL = flags.DEFINE_integer("initial", 150, "Size of S_0, taken from the end of the test set.")
_ROUNDS = flags.DEFINE_integer("rounds", 6, "Augmentation rounds rho.")
_LAM = flags.DEFINE_float("lam", 0.1, "Augmentation step lambda.")
_TAU = flags.DEFINE_integer("tau", None, "Period of the step's sign flip (None: constant).")
_EPOCHS = flags.DEFINE_integer("epochs_per_round", 10, "Training epochs per round.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Training batch size.")
_EPS = flags.DEFINE_multi_float("eps", [0.2], "FGSM eps values crafted on J.")
_SEED = flags.DEFINE_integer("seed", 0, "Substitute seed.")
_SAVE = flags.DEFINE_string("save", None, "Also save J here (.keras).")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON here.")


def main(argv):
    del argv
    import numpy as np

    from keras_edd import attacks, data, models
    from keras_edd.evaluation import metrics, substitute

    dataset = data.load_dataset(_DATASET.value, _DATA_DIR.value)
    n = dataset.num_classes
    target = models.load_model(_TARGET.value, input_shape=dataset.input_shape)
    outlier_class = n if target.output_shape[-1] == n + 1 else None
    x_test = data.to_float(dataset.x_test)
    y_test = np.asarray(dataset.y_test)
    m, k = _NUM_EXAMPLES.value, _INITIAL.value
    if m + k > len(y_test):
        raise ValueError(f"num_examples={m} + initial={k} exceed the {len(y_test)} test inputs")
    x_attacked, y_attacked = x_test[:m], y_test[:m]
    target_attacked = models.predict_logits(target, x_attacked).argmax(axis=1)
    oracle = substitute.label_oracle(target)

    t = time.perf_counter()
    model_j, report = substitute.train_jacobian_substitute(
        oracle, x_test[-k:], num_classes=n, outlier_class=outlier_class, rounds=_ROUNDS.value,
        lam=_LAM.value, tau=_TAU.value, epochs_per_round=_EPOCHS.value,
        batch_size=_BATCH_SIZE.value, seed=_SEED.value,
        agreement_data=(x_attacked, target_attacked), progress=False)
    train_seconds = time.perf_counter() - t
    if _SAVE.value:
        files.save_model(model_j, _SAVE.value)

    unseen = slice(0, len(y_test) - k)
    j_unseen = models.predict_logits(model_j, x_test[unseen]).argmax(axis=1)
    target_unseen = models.predict_logits(target, x_test[unseen]).argmax(axis=1)
    j_attacked = j_unseen[:m]
    result = {
        "target": os.path.abspath(_TARGET.value), "outlier_class": outlier_class,
        "machine": {"cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0]},
        "substitute_train_wall_seconds": round(train_seconds, 1),
        "oracle_queries": report["oracle_queries"], "set_sizes": report["set_sizes"],
        "agreement_first_n": substitute.agreement(j_attacked, target_attacked),
        "agreement_test_minus_initial": substitute.agreement(j_unseen, target_unseen),
        "substitute_accuracy_first_n": float(np.mean(j_attacked == y_attacked)),
        "target_accuracy_first_n": float(np.mean(target_attacked == y_attacked)),
        "per_round": [{key: (round(v, 4) if isinstance(v, float) else v)
                       for key, v in e.items()} for e in report["per_round"]],
        "transfer": []}
    variants = [("plain", None)] + ([("adaptive", n)] if outlier_class is not None else [])
    for eps in _EPS.value:
        for variant, attack_outlier in variants:
            t = time.perf_counter()
            x_adv = np.concatenate([
                np.asarray(attacks.fgsm(model_j, x_attacked[i:i + 100], eps=eps,
                                        outlier_class=attack_outlier))
                for i in range(0, m, 100)])
            seconds = time.perf_counter() - t
            adv_target = models.predict_logits(target, x_adv).argmax(axis=1)
            adv_j = models.predict_logits(model_j, x_adv).argmax(axis=1)
            rates = metrics.attack_rates(adv_target, target_attacked, y_attacked,
                                            outlier_class=outlier_class)
            source = metrics.attack_rates(adv_j, j_attacked, y_attacked,
                                             outlier_class=outlier_class)
            result["transfer"].append({"attack": "fgsm", "eps": eps, "variant": variant,
                                       "on_target": rates, "on_substitute": source,
                                       "attack_seconds": round(seconds, 2)})
    print(json.dumps(result, indent=1))
    if _OUTPUT.value:
        files.write_json(_OUTPUT.value, result)  # atomic, as every file of a run


if __name__ == "__main__":
    flags.mark_flags_as_required(["target"])
    app.run(main)
