"""Clean accuracy of the undefended CNN trained in each precision, same seed.

    python benchmarks/precision_accuracy.py --data_dir=../shared/data/mnist

Prints one JSON object. For every precision in `--precisions` the cleverhans-v1
CNN is trained from the same initial weights (seed), on the same batch order,
for `--epochs` epochs with Adam; its test accuracy is then read in float32 (the
way attacks and evaluation see a saved model) and, for reference, in the
precision it was trained in. The target for "mixed_bfloat16" is a float32 test
accuracy within 0.3 points of the float32-trained model's.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402

from keras_edd import config, data, files, models  # noqa: E402
from keras_edd.defense import training
from keras_edd.runs import run_dirs

_DATA_DIR = flags.DEFINE_string("data_dir", None, "IDX folder (default: bundled sample).")
_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset name.")
_EPOCHS = flags.DEFINE_integer("epochs", 6, "Training epochs per precision.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_SEED = flags.DEFINE_integer("seed", 0, "Initial weights, batch order and dropout seed.")
_PRECISIONS = flags.DEFINE_list("precisions", list(config.PRECISIONS), "Precisions to train.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON here.")


def main(_):
    precisions = [config.check_precision(p) for p in _PRECISIONS.value]
    dataset = data.load_dataset(_DATASET.value, _DATA_DIR.value)
    targets = training.one_hot(dataset.y_train, dataset.num_classes)
    results = {}
    for precision in precisions:
        keras.utils.set_random_seed(_SEED.value)
        model = models.cleverhans_cnn(dataset.num_classes, dataset.input_shape,
                                      precision=precision)
        history = training.fit(model, dataset.x_train, targets, epochs=_EPOCHS.value,
                               batch_size=_BATCH_SIZE.value, seed=_SEED.value, progress=False,
                               description=precision)
        deployed = models.with_precision(model, "float32")
        results[precision] = {
            "test_accuracy_float32": models.evaluate_clean(
                deployed, dataset.x_test, dataset.y_test)["accuracy"],
            "test_accuracy_as_trained": models.evaluate_clean(
                model, dataset.x_test, dataset.y_test)["accuracy"],
            "final_train_loss": history["train/loss"][-1],
            "training_seconds": history["training_seconds"],
        }
    result = {
        "benchmark": "precision_accuracy",
        "dataset": dataset.summary(),
        "epochs": _EPOCHS.value,
        "batch_size": _BATCH_SIZE.value,
        "seed": _SEED.value,
        "results": results,
        "load_average_1_5_15min": list(os.getloadavg()),
        "versions": run_dirs.versions(),
    }
    if {"float32", "mixed_bfloat16"} <= set(results):
        result["accuracy_points_bf16_minus_fp32"] = 100 * (
            results["mixed_bfloat16"]["test_accuracy_float32"]
            - results["float32"]["test_accuracy_float32"])
    print(json.dumps(result, indent=2))
    if _OUTPUT.value:
        files.write_json(_OUTPUT.value, result)  # atomic, as every file of a run


if __name__ == "__main__":
    app.run(main)
