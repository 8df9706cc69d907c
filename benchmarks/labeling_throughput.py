"""MC-dropout labeling throughput vs a plain forward pass, per pass.

    python benchmarks/labeling_throughput.py --data_dir=../shared/data/mnist

Prints one JSON object. "plain" is `model(x, training=True)` over the images in
tf.function at each listed batch size (images per second); "mc" is
`labeling.mc_uncertainty` with N passes, counted as images x N per second, i.e.
throughput per pass. Runs alternate and the median of the repeats is kept.
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

from keras_edd import data, models  # noqa: E402
from keras_edd.defense import labeling
from keras_edd.runs import run_dirs

_DATA_DIR = flags.DEFINE_string("data_dir", None, "IDX folder (default: bundled sample).")
_MODEL = flags.DEFINE_string("model", None, "A trained .keras teacher (default: fresh weights; "
                             "speed does not depend on the weights).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 4096, "Images labelled per repeat.")
_PASSES = flags.DEFINE_integer("passes", 20, "MC-dropout passes N.")
_PLAIN_BATCHES = flags.DEFINE_list("plain_batch_sizes", ["1024", "5120"], "Plain batch sizes.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats.")


def main(_):
    dataset = data.load_dataset("mnist", _DATA_DIR.value, test_limit=_NUM_IMAGES.value)
    images = dataset.x_test
    keras.utils.set_random_seed(0)
    model = (models.load_model(_MODEL.value) if _MODEL.value
             else models.cleverhans_cnn(dataset.num_classes, dataset.input_shape))
    forward = tf.function(lambda x: model(x, training=True))

    def plain(batch_size):
        def run():
            for x, _ in data.make_pipeline(images, np.zeros(len(images)), batch_size):
                forward(x).numpy()
        return run

    def mc():
        labeling.mc_uncertainty(model, images, passes=_PASSES.value)

    jobs = {f"plain_batch_{b}": (plain(int(b)), len(images)) for b in _PLAIN_BATCHES.value}
    jobs["mc_per_pass"] = (mc, len(images) * _PASSES.value)
    timings = {name: [] for name in jobs}
    for repeat in range(_REPEATS.value + 1):
        for name, (fn, count) in jobs.items():
            start = time.perf_counter()
            fn()
            if repeat:  # repeat 0 traces
                timings[name].append(count / (time.perf_counter() - start))
    rates = {name: statistics.median(v) for name, v in timings.items()}
    best_plain = max(v for k, v in rates.items() if k.startswith("plain"))
    print(json.dumps({
        "benchmark": "labeling_throughput",
        "dataset": dataset.summary(),
        "images": len(images),
        "passes": _PASSES.value,
        "label_batch_size": labeling.LABEL_BATCH_SIZE,
        "images_per_second": rates,
        "mc_over_best_plain": rates["mc_per_pass"] / best_plain,
        "versions": run_dirs.versions(),
    }, indent=2))


if __name__ == "__main__":
    app.run(main)
