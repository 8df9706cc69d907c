"""Adversarial-training baseline: train the cleverhans CNN with FGSM-RS or PGD, then attack it.

Clean accuracy, robust accuracy under AutoAttack's two gradient attacks (APGD-CE and
APGD-T with 9 targets, 100 iterations each, true labels; a digit counts as robust
only if it is correct when clean and under both, the number published MNIST models
report at eps 0.3), PGD-40 accuracy (step 0.01,
one uniform random start, true labels) at each --pgd_eps on the first
--num_examples test digits, the per-epoch held-out PGD accuracy (at the
training eps, on the last --eval_examples test digits, disjoint from those) and
the accuracy under one-step attacks (the training adversary and plain FGSM):
one-step accuracy far above PGD accuracy is the sign of catastrophic
overfitting. Prints one JSON document.

  python benchmarks/adversarial_training.py --data_dir=../shared/data/mnist \
      --attack=fgsm_rs --eps=0.3 --epochs=20 --output_dir=/tmp/advtrain
  python benchmarks/adversarial_training.py --data_dir=../shared/data/mnist \
      --model=saved_models/paper/adversarial.keras      # attack a trained model only

The recipe is keras_edd's default (--schedule cyclic with peak --lr_max, --keep_best:
the epoch of highest held-out PGD accuracy). Resumes from --output_dir/ckpt when
rerun with the same settings.
"""

import dataclasses
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from keras_edd import config, files  # noqa: E402  (no TensorFlow yet)

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with the four MNIST IDX files.")
_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset name for keras_edd.data.")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", None, "Keep only the first training images.")
_ATTACK = flags.DEFINE_enum("attack", "fgsm_rs", list(config.ADV_TRAIN_ATTACKS), "Training adversary.")
_EPS = flags.DEFINE_float("eps", config.ADV_TRAIN_EPS, "Training eps (L_inf).")
_EPOCHS = flags.DEFINE_integer("epochs", 6, "Training epochs.")
_SEED = flags.DEFINE_integer("seed", 0, "Weights, data order, random starts.")
_PGD_EPS = flags.DEFINE_list("pgd_eps", ["0.2", "0.3"], "eps of the final PGD-40 attacks.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 1000, "First test digits attacked.")
_EVAL_EXAMPLES = flags.DEFINE_integer("eval_examples", config.PGD_CHECK_EXAMPLES,
                                      "Last test digits of the per-epoch PGD check.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "/tmp/advtrain", "model.keras, ckpt, logs.")
_MODEL = flags.DEFINE_string("model", None, "Attack this trained model (.keras) instead of "
                             "training one.")
_SCHEDULE = flags.DEFINE_enum("schedule", "cyclic", ["constant", "cyclic"],
                              "Learning-rate schedule (cyclic: Wong et al. 2020).")
_LR_MAX = flags.DEFINE_float("lr_max", 5e-3, "Peak learning rate of the cyclic schedule.")
_KEEP_BEST = flags.DEFINE_boolean("keep_best", True,
                                  "Keep the epoch of highest held-out PGD accuracy.")


def _apgd_robust(model, x, y, eps, seed):
    """Per digit: correct when clean and under APGD-CE and APGD-T (true labels)."""
    import numpy as np

    from keras_edd.attacks import apgd
    robust = np.argmax(model(x, training=False).numpy(), axis=1) == y
    for loss in ("ce", "dlr_targeted"):
        for start in range(0, len(x), 250):
            part = slice(start, start + 250)
            x_adv = apgd(model, x[part], y=y[part], eps=eps, loss=loss, nb_iter=100,
                         nb_targets=9, seed=seed + start)
            robust[part] &= np.argmax(model(x_adv, training=False).numpy(), axis=1) == y[part]
    return robust


def _accuracy(model, x, y):
    import numpy as np
    return float(np.mean(np.argmax(model(x, training=False).numpy(), axis=1) == y))


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_edd import data, models
    from keras_edd.attacks import fgsm
    from keras_edd.defense import adversarial_training as at
    from keras_edd.defense import training

    out = _OUTPUT_DIR.value
    ds = data.load_dataset(_DATASET.value, _DATA_DIR.value, train_limit=_TRAIN_LIMIT.value)
    eps = _EPS.value
    adversary = at.make_adversary(_ATTACK.value, eps)
    held = slice(len(ds.x_test) - _EVAL_EXAMPLES.value, None)
    evaluator = at.pgd_evaluator(ds.x_test[held], ds.y_test[held], eps=eps, seed=_SEED.value)
    eval_seconds = []

    def timed_eval(model):
        start = time.perf_counter()
        value = evaluator(model)
        eval_seconds.append(time.perf_counter() - start)
        return value

    if _MODEL.value:
        model = models.load_model(_MODEL.value)
        history = {key: None for key in ("epoch", "eval/pgd_accuracy", "train/accuracy",
                                         "epoch_seconds", "kept_epoch")}
    else:
        keras.utils.set_random_seed(_SEED.value)
        model = models.cleverhans_cnn(ds.num_classes, ds.input_shape)
        history = training.fit(
            model, ds.x_train, training.one_hot(ds.y_train, ds.num_classes),
            epochs=_EPOCHS.value, seed=_SEED.value, learning_rate=_LR_MAX.value
            if _SCHEDULE.value == "cyclic" else None, lr_schedule=_SCHEDULE.value,
            keep_best=_KEEP_BEST.value, checkpoint_dir=os.path.join(out, "ckpt"),
            log_dir=os.path.join(out, "logs"), progress=False, adversary=adversary,
            pgd_eval=timed_eval, description=_ATTACK.value)
        files.save_model(model, os.path.join(out, "model.keras"))

    n = min(_NUM_EXAMPLES.value, len(ds.x_test))
    x = ds.x_test[:n].astype(np.float32) / 255.0
    y = ds.y_test[:n]
    result = {"adversary": {"attack": _ATTACK.value, **dataclasses.asdict(adversary)},
              "dataset": ds.summary(), "epochs": _EPOCHS.value, "seed": _SEED.value,
              "epoch": history["epoch"],
              "heldout_pgd_accuracy": history["eval/pgd_accuracy"],
              "train_adversarial_accuracy": history["train/accuracy"],
              "epoch_seconds": history["epoch_seconds"], "kept_epoch": history.get("kept_epoch"),
              "model": _MODEL.value,
              "recipe": None if _MODEL.value else {"schedule": _SCHEDULE.value,
                                                   "lr_max": _LR_MAX.value,
                                                   "keep_best": _KEEP_BEST.value},
              "heldout_pgd_seconds_this_call": eval_seconds,
              "clean_accuracy": _accuracy(model, x, y), "num_examples": n,
              "machine": {"processor": platform.processor() or platform.machine(),
                          "cpus": os.cpu_count(), "tensorflow": tf.__version__,
                          "keras": keras.__version__}}
    target = tf.constant(training.one_hot(y, ds.num_classes))
    for value in (float(e) for e in _PGD_EPS.value):
        start = time.perf_counter()
        result[f"apgd_ce_t_robust_accuracy_eps{value:g}"] = float(np.mean(
            _apgd_robust(model, x, y, value, _SEED.value)))
        result[f"apgd_seconds_eps{value:g}"] = time.perf_counter() - start
        start = time.perf_counter()
        result[f"pgd40_accuracy_eps{value:g}"] = at.pgd_accuracy(
            model, x, y, eps=value, eps_iter=0.01, nb_iter=40, seed=_SEED.value, batch_size=250)
        result[f"pgd40_seconds_eps{value:g}"] = time.perf_counter() - start
        one_step = at.fgsm_rs(value)(model, tf.constant(x), target,
                                     tf.constant([_SEED.value, 0], tf.int64))
        result[f"fgsm_rs_accuracy_eps{value:g}"] = _accuracy(model, one_step, y)
        result[f"fgsm_accuracy_eps{value:g}"] = _accuracy(model, fgsm(model, x, eps=value, y=y), y)
    files.write_json(os.path.join(out, "results.json"), result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    app.run(main)
