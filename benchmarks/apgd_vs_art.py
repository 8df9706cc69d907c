"""keras_edd's APGD against IBM ART's AutoProjectedGradientDescent on one model.

Both attack the same correctly classified test digits (the first --num_digits of
them) with the same eps, iterations, restarts, norm and loss (ART's step starts at
eps_step = 2 eps, the paper's value, as ours does). Prints one JSON document.

  python benchmarks/apgd_vs_art.py --model=saved_models/mnist-none-e6-s0/model.keras \
      --data_dir=../shared/data/mnist --num_digits=200 --eps=0.1 --loss=ce

Without --model, a cleverhans CNN is trained for --train_epochs epochs on the
bundled 4,000-digit sample (about a minute on a laptop CPU; --save_model keeps
it) and the sample's test digits are used. Needs `pip install
adversarial-robustness-toolbox`.

Per library: success_rate = fraction of digits whose x_adv the model no longer
classifies as its clean prediction (recomputed here from the model, the same way
for both); max_linf (or max_l2) distance, to show both stay in the ball; seconds
of one call over all digits after warm-up calls on 2 and 3 digits (tracing excluded),
adv_per_s = digits / seconds. Ratios within one run are what count on a shared
machine. With --norm=linf a third row, "gradient_loop", times the arithmetic floor:
a compiled loop of the same number of input gradients (cross-entropy, sign step,
projection) per batch, no APGD bookkeeping; "apgd_over_loop" is keras_edd's time
over it (1.0: nothing left to remove but the model's own forward and backward
passes). Known differences of ART 1.20 from the paper (read from its source):
checkpoints from float ceil(p * N) (23, 42, ... for N = 100 instead of 22, 41,
...), condition 1 counts new maxima rather than increases, and the result is the
last iterate when it is misclassified; keras_edd keeps any misclassified iterate.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from keras_edd import files

_MODEL = flags.DEFINE_string("model", None, "Model (.keras, logits); default: train one.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with the MNIST IDX files "
                                "(default: the bundled sample's test digits).")
_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset name for keras_edd.data.")
_NUM_DIGITS = flags.DEFINE_integer("num_digits", 200, "Correctly classified test digits.")
_EPS = flags.DEFINE_float("eps", 0.1, "Radius of the ball.")
_NORM = flags.DEFINE_enum("norm", "linf", ["linf", "l2"], "Norm of the ball.")
_LOSS = flags.DEFINE_enum("loss", "ce", ["ce", "dlr"], "Loss (ART has no targeted DLR).")
_NB_ITER = flags.DEFINE_integer("nb_iter", 100, "Iterations per restart.")
_NB_RESTARTS = flags.DEFINE_integer("nb_restarts", 1, "Random restarts.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 100, "Digits per call (both libraries).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of keras_edd's starts (ART uses numpy's).")
_TRAIN_EPOCHS = flags.DEFINE_integer("train_epochs", 2, "Epochs of the default model.")
_SAVE_MODEL = flags.DEFINE_string("save_model", None, "Write the trained default model here.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON here.")

_ART_LOSSES = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}


def train_default_model(epochs, seed):
    """A cleverhans CNN trained on the bundled sample; returns (model, sample)."""
    import keras

    from keras_edd import data, models
    sample = data.load_sample()
    keras.utils.set_random_seed(seed)
    model = models.cleverhans_cnn(num_classes=sample.num_classes,
                                  input_shape=sample.input_shape)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.to_float(sample.x_train), sample.y_train, epochs=epochs, batch_size=128,
              verbose=0)
    return model, sample


def _distance(x, x_adv, norm):
    import numpy as np
    delta = (np.asarray(x_adv, np.float64) - x).reshape(len(x), -1)
    if norm == "linf":
        return float(np.abs(delta).max())
    return float(np.sqrt((delta ** 2).sum(axis=1)).max())


def _row(name, x, x_adv, labels, seconds, predict, norm):
    import numpy as np
    success = predict(x_adv).argmax(axis=1) != labels
    return {"library": name, "digits": len(x), "success_rate": round(float(success.mean()), 4),
            f"max_{norm}": round(_distance(x, x_adv, norm), 6),
            "seconds": round(seconds, 2), "adv_per_s": round(len(x) / seconds, 2)}


def run(model_path=None, data_dir=None, *, dataset="mnist", num_digits=200, eps=0.1,
        norm="linf", loss="ce", nb_iter=100, nb_restarts=1, batch_size=100, seed=0,
        train_epochs=2, save_model=None):
    """Runs both attacks and returns the result dictionary."""
    import keras
    import numpy as np
    import tensorflow as tf
    from art.attacks.evasion import AutoProjectedGradientDescent
    from art.estimators.classification import TensorFlowV2Classifier

    from keras_edd import attacks, data

    if model_path:
        model = keras.models.load_model(model_path, safe_mode=True, compile=False)
        loaded = data.load_dataset(dataset, data_dir=data_dir, allow_download=False)
        model_name = model_path
    else:
        model, loaded = train_default_model(train_epochs, seed)
        model_name = f"cleverhans_cnn, {train_epochs} epochs on the bundled sample"
        if save_model:
            model.save(save_model)
    if data_dir and not model_path:
        loaded = data.load_dataset(dataset, data_dir=data_dir, allow_download=False)
    predict = lambda x: np.asarray(model.predict(np.asarray(x), batch_size=512, verbose=0))
    x_all = data.to_float(loaded.x_test)
    y_all = np.asarray(loaded.y_test).astype(np.int64)
    correct = np.flatnonzero(predict(x_all).argmax(axis=1) == y_all)[:num_digits]
    x, labels = x_all[correct], y_all[correct]

    def ours(inputs):
        out = []
        for start in range(0, len(inputs), batch_size):
            out.append(np.asarray(attacks.apgd(
                model, inputs[start:start + batch_size], eps=eps, norm=norm, loss=loss,
                nb_iter=nb_iter, nb_restarts=nb_restarts, seed=seed + start)))
        return np.concatenate(out)

    classifier = TensorFlowV2Classifier(
        model=model, nb_classes=int(model.output_shape[-1]), input_shape=tuple(x.shape[1:]),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0))
    art_attack = AutoProjectedGradientDescent(
        classifier, norm=np.inf if norm == "linf" else 2, eps=eps, eps_step=2 * eps,
        max_iter=nb_iter, targeted=False, nb_random_init=nb_restarts, batch_size=batch_size,
        loss_type=_ART_LOSSES[loss], verbose=False)

    def theirs(inputs):
        np.random.seed(seed)  # ART draws its starts from numpy's global generator
        return art_attack.generate(np.asarray(inputs, np.float32))

    gradients = nb_iter * nb_restarts

    @tf.function(reduce_retracing=True)
    def sign_steps(inputs, targets):
        def body(i, x_adv):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                value = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
                    targets, model(x_adv, training=False), from_logits=True))
            x_adv = x_adv + 0.25 * eps * tf.sign(tape.gradient(value, x_adv))
            x_adv = tf.clip_by_value(tf.clip_by_value(x_adv, inputs - eps, inputs + eps), 0, 1)
            return i + 1, x_adv
        return tf.while_loop(lambda i, _: i < gradients, body, (tf.constant(0), inputs))[1]

    def gradient_loop(inputs):
        steps = [sign_steps(tf.constant(inputs[start:start + batch_size]),
                            tf.constant(labels[:len(inputs)][start:start + batch_size]))
                 for start in range(0, len(inputs), batch_size)]
        return np.concatenate([np.asarray(step) for step in steps])

    contenders = [("keras_edd", ours), ("art", theirs)]
    if norm == "linf":
        contenders.append(("gradient_loop", gradient_loop))
    rows = []
    for name, attack in contenders:
        # Warm-up on 2 then 3 digits: the second shape makes tf.function's trace
        # batch-size generic (reduce_retracing), so the timed call traces nothing.
        attack(x[:2])
        attack(x[:3])
        start = time.perf_counter()
        x_adv = attack(x)
        row = _row(name, x, x_adv, labels, time.perf_counter() - start, predict, norm)
        print(json.dumps(row), flush=True, file=sys.stderr)
        rows.append(row)
    import art
    return {"model": model_name, "digits": int(len(x)),
            "settings": {"eps": eps, "norm": norm, "loss": loss, "nb_iter": nb_iter,
                         "nb_restarts": nb_restarts, "batch_size": batch_size, "seed": seed,
                         "art_eps_step": 2 * eps},
            "versions": {"art": art.__version__, "keras": keras.__version__},
            "results": rows,
            "speed_up": round(rows[0]["adv_per_s"] / rows[1]["adv_per_s"], 2),
            "apgd_over_loop": (round(rows[2]["adv_per_s"] / rows[0]["adv_per_s"], 2)
                               if len(rows) > 2 else None)}


def main(argv):
    del argv
    result = run(_MODEL.value, _DATA_DIR.value, dataset=_DATASET.value,
                 num_digits=_NUM_DIGITS.value, eps=_EPS.value, norm=_NORM.value,
                 loss=_LOSS.value, nb_iter=_NB_ITER.value, nb_restarts=_NB_RESTARTS.value,
                 batch_size=_BATCH_SIZE.value, seed=_SEED.value,
                 train_epochs=_TRAIN_EPOCHS.value, save_model=_SAVE_MODEL.value)
    print(json.dumps(result, indent=2))
    if _OUTPUT.value:
        files.write_json(_OUTPUT.value, result)


if __name__ == "__main__":
    app.run(main)
