"""Training throughput: keras_edd's custom loop vs `model.fit`, and float32 vs bfloat16.

    python benchmarks/train_throughput.py --data_dir=../shared/data/mnist

Prints one JSON object. The custom loop trains the cleverhans-v1 CNN with Adam
in every precision of `--precisions` (keras_edd.config.PRECISIONS), from the
same initial weights; `model.fit` trains a float32 copy from the same weights on
the idiomatic tf.data pipeline (from_tensor_slices, full shuffle, batch with
drop_remainder, prefetch), while the custom loop gathers each batch by index
from the in-memory set and runs several steps per tf.function call. Epoch times
exclude each call's first (tracing) epoch. "dropout_forward" times
`model(x, training=True)` in tf.function over `--forward_images` training images
in batches of `--forward_batch_size` (the MC-dropout labelling workload), after
one untimed pass. Rounds alternate every job, so machine drift hits all alike;
the bfloat16/float32 ratios are also given round by round.

bfloat16 pays off only on CPUs with AVX512_BF16 (or AMX); "cpu" lists the
relevant instruction-set flags of the machine that ran it.
"""

import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_edd import config, data, files, models  # noqa: E402
from keras_edd.defense import training
from keras_edd.runs import run_dirs

_DATA_DIR = flags.DEFINE_string("data_dir", None, "IDX folder (default: bundled sample).")
_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset name.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Timed epochs per call.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating calls per job.")
_PRECISIONS = flags.DEFINE_list("precisions", list(config.PRECISIONS),
                                "Precisions of the custom loop and the dropout forward.")
_MODEL_FIT = flags.DEFINE_boolean("model_fit", True, "Also time float32 `model.fit`.")
_FORWARD_IMAGES = flags.DEFINE_integer("forward_images", 10240,
                                       "Images per dropout-forward timing (0 skips it).")
_FORWARD_BATCH = flags.DEFINE_integer("forward_batch_size", 1024, "Dropout-forward batch size.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON here.")


def cpu_flags():
    """The AVX/AMX flags of this CPU (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return sorted(flag for flag in line.split(":", 1)[1].split()
                                  if flag.startswith(("avx", "amx")))
    except OSError:
        pass
    return []


def main(_):
    precisions = [config.check_precision(p) for p in _PRECISIONS.value]
    dataset = data.load_dataset(_DATASET.value, _DATA_DIR.value)
    x, y = dataset.x_train, training.one_hot(dataset.y_train, dataset.num_classes)
    batch = _BATCH_SIZE.value
    images_per_epoch = (len(x) // batch) * batch

    keras.utils.set_random_seed(0)
    reference = models.cleverhans_cnn(dataset.num_classes, dataset.input_shape)
    custom_models = {p: models.with_precision(reference, p) for p in precisions}
    fit_model = models.with_precision(reference, "float32")
    if fit_model is reference:  # keep the custom float32 model separate from model.fit's
        fit_model = models.cleverhans_cnn(dataset.num_classes, dataset.input_shape)
        fit_model.set_weights(reference.get_weights())
    fit_model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                      metrics=["categorical_accuracy"])

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    def custom_job(model):
        def run():
            epochs = _EPOCHS.value + 1
            history = training.fit(model, x, y, epochs=epochs, batch_size=batch, seed=0,
                                   progress=False, log_epochs=False)
            return [images_per_epoch / t for t in history["epoch_seconds"][1:]]
        return run

    def fit_job():
        ds = data.make_pipeline(x, y, batch, shuffle_seed=0, drop_remainder=True)
        timer = EpochTimer()
        timer.seconds = []
        fit_model.fit(ds, epochs=_EPOCHS.value + 1, verbose=0, callbacks=[timer])
        return [images_per_epoch / t for t in timer.seconds[1:]]

    forward_x = x[:_FORWARD_IMAGES.value]

    def forward_job(model):
        step = tf.function(lambda images: model(images, training=True))
        pipeline = data.make_pipeline(forward_x, np.zeros(len(forward_x), np.int32),
                                      _FORWARD_BATCH.value)
        batches = [images for images, _ in pipeline]  # decoded once, outside the timing

        def run():
            for images in batches:  # untimed: traces, warms oneDNN
                step(images).numpy()
            start = time.perf_counter()
            for images in batches:
                step(images).numpy()
            return [len(forward_x) / (time.perf_counter() - start)]
        return run

    jobs = {f"custom_loop/{p}": custom_job(custom_models[p]) for p in precisions}
    if _MODEL_FIT.value:
        jobs["model_fit/float32"] = fit_job
    if len(forward_x):
        for p in precisions:
            jobs[f"dropout_forward/{p}"] = forward_job(custom_models[p])

    # Each round runs every job once, in turn, so that machine drift hits all alike.
    timings = {name: [] for name in jobs}
    for _ in range(_ROUNDS.value):
        for name, run in jobs.items():
            timings[name].append(run())
    rates = {name: statistics.median(v for call in calls for v in call)
             for name, calls in timings.items()}
    result = {
        "benchmark": "train_throughput",
        "dataset": dataset.summary(),
        "batch_size": batch,
        "timed_epochs": _EPOCHS.value * _ROUNDS.value,
        "rounds": _ROUNDS.value,
        "forward_images": len(forward_x),
        "forward_batch_size": _FORWARD_BATCH.value,
        "images_per_second": rates,
        "images_per_second_all": {name: [v for call in calls for v in call]
                                  for name, calls in timings.items()},
    }
    if "custom_loop/float32" in rates and "model_fit/float32" in rates:
        result["custom_over_fit"] = rates["custom_loop/float32"] / rates["model_fit/float32"]
    if {"float32", "mixed_bfloat16"} <= set(precisions):
        ratios, per_round = {}, {}
        for kind in ("custom_loop", "dropout_forward"):
            fp32, bf16 = (timings.get(f"{kind}/{p}") for p in ("float32", "mixed_bfloat16"))
            if fp32 and bf16:
                ratios[kind] = rates[f"{kind}/mixed_bfloat16"] / rates[f"{kind}/float32"]
                per_round[kind] = [statistics.median(b) / statistics.median(f)
                                   for f, b in zip(fp32, bf16)]
        result["bf16_over_fp32"] = ratios
        result["bf16_over_fp32_per_round"] = per_round
    result.update({
        "cpu": cpu_flags(),
        "load_average_1_5_15min": list(os.getloadavg()),
        "versions": run_dirs.versions(),
    })
    print(json.dumps(result, indent=2))
    if _OUTPUT.value:
        files.write_json(_OUTPUT.value, result)  # atomic, as every file of a run


if __name__ == "__main__":
    app.run(main)
