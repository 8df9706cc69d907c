"""Training throughput: keras_edd's custom loop vs `model.fit`, same model/data/batch.

    python benchmarks/train_throughput.py --data_dir=../shared/data/mnist

Prints one JSON object. Both loops train the cleverhans-v1 CNN with Adam on the
same data from the same initial weights: `model.fit` reads the idiomatic
tf.data pipeline (from_tensor_slices, full shuffle, batch with drop_remainder,
prefetch), the custom loop gathers each batch by index from the in-memory set
and runs several steps per tf.function call. Epoch times exclude each call's
first (tracing) epoch; calls alternate between the two loops.
"""

import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402

from keras_edd import data, models, runs, training  # noqa: E402

_DATA_DIR = flags.DEFINE_string("data_dir", None, "IDX folder (default: bundled sample).")
_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset name.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Timed epochs per call.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating calls per loop.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON here.")


def main(_):
    dataset = data.load_dataset(_DATASET.value, _DATA_DIR.value)
    x, y = dataset.x_train, training.one_hot(dataset.y_train, dataset.num_classes)
    batch = _BATCH_SIZE.value
    images_per_epoch = (len(x) // batch) * batch

    keras.utils.set_random_seed(0)
    custom_model = models.cleverhans_cnn(dataset.num_classes, dataset.input_shape)
    fit_model = models.cleverhans_cnn(dataset.num_classes, dataset.input_shape)
    fit_model.set_weights(custom_model.get_weights())
    fit_model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                      metrics=["categorical_accuracy"])

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    def custom_run(epochs):
        history = training.fit(custom_model, x, y, epochs=epochs, batch_size=batch, seed=0,
                               progress=False, log_epochs=False)
        return history["epoch_seconds"]

    def fit_run(epochs):
        ds = data.make_pipeline(x, y, batch, shuffle_seed=0, drop_remainder=True)
        timer = EpochTimer()
        timer.seconds = []
        fit_model.fit(ds, epochs=epochs, verbose=0, callbacks=[timer])
        return timer.seconds

    # Each call trains epochs + 1 epochs and drops the first (it traces the step
    # functions). Calls alternate so that machine drift hits both loops alike.
    timings = {"custom_loop": [], "model_fit": []}
    for _ in range(_ROUNDS.value):
        for name, fn in (("custom_loop", custom_run), ("model_fit", fit_run)):
            seconds = fn(_EPOCHS.value + 1)[1:]
            timings[name].extend(images_per_epoch / t for t in seconds)
    result = {
        "benchmark": "train_throughput",
        "dataset": dataset.summary(),
        "batch_size": batch,
        "timed_epochs": _EPOCHS.value * _ROUNDS.value,
        "images_per_second": {k: statistics.median(v) for k, v in timings.items()},
        "images_per_second_all": timings,
        "custom_over_fit": statistics.median(timings["custom_loop"])
        / statistics.median(timings["model_fit"]),
        "load_average_1_5_15min": list(os.getloadavg()),
        "versions": runs.versions(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    app.run(main)
