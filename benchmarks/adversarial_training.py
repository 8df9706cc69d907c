"""Adversarial-training baseline: train the cleverhans CNN with FGSM-RS or PGD, then attack it.

For the issue note (issue 10): clean accuracy and PGD-40 accuracy (step 0.01,
one uniform random start, true labels) at each --pgd_eps on the first
--num_examples test digits, the per-epoch held-out PGD accuracy (at the
training eps, on the last --eval_examples test digits, disjoint from those) and
the accuracy under one-step attacks (the training adversary and plain FGSM):
one-step accuracy far above PGD accuracy is the sign of catastrophic
overfitting. Prints one JSON document.

  python benchmarks/adversarial_training.py --data_dir=../shared/data/mnist \
      --attack=fgsm_rs --eps=0.3 --epochs=6 --output_dir=/tmp/advtrain

Resumes from --output_dir/ckpt when rerun with the same settings.
"""

import dataclasses
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from keras_edd.defense import adversarial_training as at  # noqa: E402  (no TensorFlow yet)

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with the four MNIST IDX files.")
_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset name for keras_edd.data.")
_TRAIN_LIMIT = flags.DEFINE_integer("train_limit", None, "Keep only the first training images.")
_ATTACK = flags.DEFINE_enum("attack", "fgsm_rs", list(at.ADV_TRAIN_ATTACKS), "Training adversary.")
_EPS = flags.DEFINE_float("eps", at.DEFAULT_EPS, "Training eps (L_inf).")
_EPOCHS = flags.DEFINE_integer("epochs", 6, "Training epochs.")
_SEED = flags.DEFINE_integer("seed", 0, "Weights, data order, random starts.")
_PGD_EPS = flags.DEFINE_list("pgd_eps", ["0.2", "0.3"], "eps of the final PGD-40 attacks.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 1000, "First test digits attacked.")
_EVAL_EXAMPLES = flags.DEFINE_integer("eval_examples", at.DEFAULT_EVAL_EXAMPLES,
                                      "Last test digits of the per-epoch PGD check.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "/tmp/advtrain", "model.keras, ckpt, logs.")


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
    from keras_edd.defense import training
    from keras_edd.runs import run_dirs

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

    keras.utils.set_random_seed(_SEED.value)
    model = models.cleverhans_cnn(ds.num_classes, ds.input_shape)
    history = training.fit(
        model, ds.x_train, training.one_hot(ds.y_train, ds.num_classes), epochs=_EPOCHS.value,
        seed=_SEED.value, checkpoint_dir=os.path.join(out, "ckpt"),
        log_dir=os.path.join(out, "logs"), progress=False, adversary=adversary,
        pgd_eval=timed_eval, description=_ATTACK.value)
    run_dirs.save_model(model, os.path.join(out, "model.keras"))

    n = min(_NUM_EXAMPLES.value, len(ds.x_test))
    x = ds.x_test[:n].astype(np.float32) / 255.0
    y = ds.y_test[:n]
    result = {"adversary": {"attack": _ATTACK.value, **dataclasses.asdict(adversary)},
              "dataset": ds.summary(), "epochs": _EPOCHS.value, "seed": _SEED.value,
              "epoch": history["epoch"],
              "heldout_pgd_accuracy": history["eval/pgd_accuracy"],
              "train_adversarial_accuracy": history["train/accuracy"],
              "epoch_seconds": history["epoch_seconds"],
              "heldout_pgd_seconds_this_call": eval_seconds,
              "clean_accuracy": _accuracy(model, x, y), "num_examples": n,
              "machine": {"processor": platform.processor() or platform.machine(),
                          "cpus": os.cpu_count(), "tensorflow": tf.__version__,
                          "keras": keras.__version__}}
    target = tf.constant(training.one_hot(y, ds.num_classes))
    for value in (float(e) for e in _PGD_EPS.value):
        start = time.perf_counter()
        result[f"pgd40_accuracy_eps{value:g}"] = at.pgd_accuracy(
            model, x, y, eps=value, eps_iter=0.01, nb_iter=40, seed=_SEED.value, batch_size=250)
        result[f"pgd40_seconds_eps{value:g}"] = time.perf_counter() - start
        one_step = at.fgsm_rs(value)(model, tf.constant(x), target,
                                     tf.constant([_SEED.value, 0], tf.int64))
        result[f"fgsm_rs_accuracy_eps{value:g}"] = _accuracy(model, one_step, y)
        result[f"fgsm_accuracy_eps{value:g}"] = _accuracy(model, fgsm(model, x, eps=value, y=y), y)
    run_dirs.write_json(os.path.join(out, "results.json"), result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    app.run(main)
