"""Models. Every model returns logits; temperature lives in losses and labeling.

`cleverhans_cnn` is the MNIST CNN of cleverhans v1 (`make_basic_cnn`), the
architecture used by Papernot & McDaniel (2017), with dropout before the first
convolution and before the classifier so that MC-dropout has something to sample.

Precision: a model is built in one of `PRECISIONS`. "mixed_bfloat16" gives its
hidden layers the Keras policy of that name (float32 variables, bfloat16
arithmetic; faster on CPUs with AVX512_BF16, slower without) and keeps the
logits layer float32, so logits, losses and sigma stay float32. The policy is
set per layer, never globally, so models built side by side do not affect each
other. Attacks and evaluation run in float32: `load_model` always returns a
float32 model and `with_precision` converts in either direction.

The precisions and their check are settings (keras_edd.config.PRECISIONS); this module
imports Keras only inside its functions, so it stays a light import.
"""

import dataclasses
import os
import re
import weakref
import zipfile

import numpy as np

from keras_edd import files, pretrained
from keras_edd.config import check_precision
from keras_edd.data import make_pipeline

# Layer names are part of the saved-model format; keep them stable.
CLEVERHANS_CNN_PARAMS_10 = 710_218
EVAL_BATCH_SIZE = 1000  # inputs per inference call



def cleverhans_cnn(num_classes=10, input_shape=(28, 28, 1), *,
                   input_dropout=0.2, hidden_dropout=0.5, precision="float32",
                   name="cleverhans_cnn"):
    """Dropout 0.2 -> Conv 64 8x8/2 same -> ReLU -> Conv 128 6x6/2 valid -> ReLU
    -> Conv 128 5x5/1 valid -> ReLU -> Dropout 0.5 -> Flatten -> Dense (logits).

    Args:
      num_classes: number of logits, e.g. 10, or 11 with the outlier class.
      input_shape: (height, width, channels); 28x28x1 for MNIST, 32x32x3 works.
      input_dropout, hidden_dropout: dropout rates (0 disables the layer's effect).
      precision: one of PRECISIONS; the logits layer is float32 in both.
    Returns:
      An uncompiled `keras.Model` mapping float32 NHWC images in [0, 1] to
      float32 logits.
    """
    import keras

    if int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes!r}: need at least 2 classes")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape={tuple(input_shape)!r}: need (height, width, channels)")
    for rate_name, rate in (("input_dropout", input_dropout), ("hidden_dropout", hidden_dropout)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{rate_name}={rate!r}: allowed range is [0, 1)")
    hidden = {"dtype": check_precision(precision)}
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Dropout(input_dropout, name="input_dropout", **hidden)(inputs)
    x = keras.layers.Conv2D(64, 8, strides=2, padding="same", activation="relu", name="conv1",
                            **hidden)(x)
    x = keras.layers.Conv2D(128, 6, strides=2, padding="valid", activation="relu", name="conv2",
                            **hidden)(x)
    x = keras.layers.Conv2D(128, 5, strides=1, padding="valid", activation="relu", name="conv3",
                            **hidden)(x)
    x = keras.layers.Dropout(hidden_dropout, name="hidden_dropout", **hidden)(x)
    x = keras.layers.Flatten(name="flatten", **hidden)(x)
    logits = keras.layers.Dense(int(num_classes), name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=name)


def model_precision(model):
    """"mixed_bfloat16" if any layer of `model` computes in bfloat16, else "float32"."""
    compute = {layer.dtype_policy.compute_dtype for layer in model.layers}
    return "mixed_bfloat16" if "bfloat16" in compute else "float32"


def with_precision(model, precision):
    """`model` rebuilt in `precision` with the same layers, names and weights.

    Returns `model` itself when it already has that precision. Otherwise the
    architecture is rebuilt from its config with every layer's dtype policy set
    to `precision`, except the output layer(s), which stay float32 so the
    logits are float32; then all weights are copied by value, including the
    dropout layers' RNG states. The copy shares nothing with `model`.

    Use it to label a float32 teacher in bfloat16 and to attack or evaluate
    a model trained in bfloat16 in float32.
    """
    check_precision(precision)
    if model_precision(model) == precision:
        return model
    config = model.get_config()
    if "layers" not in config:
        raise ValueError(f"model {model.name!r}: only Sequential and functional models can "
                         "change precision")
    if "output_layers" in config:  # functional: [name, node, tensor] or a list of them
        entries = config["output_layers"]
        outputs = {entries[0]} if isinstance(entries[0], str) else {e[0] for e in entries}
    else:  # Sequential: the last layer gives the logits
        outputs = {config["layers"][-1]["config"]["name"]}
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            continue
        name = layer["config"]["name"]
        layer["config"]["dtype"] = "float32" if name in outputs else precision
    copy = model.__class__.from_config(config)
    # Layer by layer (names are kept; RNG variables get fresh global names).
    for old_layer, new_layer in zip(model.layers, copy.layers, strict=True):
        pairs = list(zip(old_layer.variables, new_layer.variables, strict=True))
        for src, dst in pairs:
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError(f"model {model.name!r}: layer {old_layer.name!r} changed shape "
                                 "when rebuilt from its config")
        for src, dst in pairs:
            dst.assign(src)
    return copy


def load_model(path, *, num_outputs=None, input_shape=None):
    """Load a `.keras` model with Keras' safe mode (no arbitrary code from the file).

    The model comes back in float32 whatever precision it was trained and saved
    in (see `with_precision`): attacks and evaluation run in float32.

    Args:
      path: a `.keras` file.
      num_outputs: if given, the number of logits the model must have.
      input_shape: if given, the (height, width, channels) the model must accept.
    Raises:
      ValueError naming the file when it is missing, not a Keras model file, or
      of the wrong shape.
    """
    import keras
    path = str(path)
    if not path.endswith(".keras"):
        raise ValueError(f"model {path!r}: only .keras files are loaded")
    if not os.path.isfile(path):
        raise ValueError(f"model {path!r}: no such file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"model {path!r}: not a .keras archive (the file is not a zip file)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"model {path!r}: cannot load it as a Keras model ({reason[:200]})") from None
    if num_outputs is not None and model.output_shape[-1] != num_outputs:
        raise ValueError(f"model {path!r} has {model.output_shape[-1]} outputs, expected "
                         f"{num_outputs}")
    if input_shape is not None and tuple(model.input_shape[1:]) != tuple(input_shape):
        raise ValueError(f"model {path!r} takes inputs of shape {tuple(model.input_shape[1:])}, "
                         f"expected {tuple(input_shape)}")
    return with_precision(model, "float32")


def load_pretrained(name, *, root=None):
    """A pretrained model shipped with the repository, e.g. "paper:extended", in float32.

    The file's sha256 is checked against the collection's MANIFEST.json first
    (keras_edd.pretrained); a missing file, an unknown name or a sha256
    mismatch raises a one-line keras_edd.pretrained.PretrainedError (a
    ValueError). `root`: the folder of the collections (default: saved_models/
    beside the package, or $KERAS_EDD_PRETRAINED_DIR).
    """
    return load_model(pretrained.model_path(name, root))


# ------------------------------------------------------------------------- inference

def predict_logits(model, images, batch_size=EVAL_BATCH_SIZE):
    """Logits of a model at inference (training=False) for uint8 or float images."""
    ds = make_pipeline(images, np.zeros(len(images), np.int32), batch_size)
    step = _inference_step(model)
    return np.concatenate([step(x).numpy() for x, _ in ds], axis=0)


_INFERENCE_STEPS = weakref.WeakKeyDictionary()


def _inference_step(model):
    """One compiled inference function per model (traced once, reused)."""
    import tensorflow as tf
    if model not in _INFERENCE_STEPS:
        _INFERENCE_STEPS[model] = tf.function(lambda x: model(x, training=False))
    return _INFERENCE_STEPS[model]


def evaluate_clean(model, images, labels, *, outlier_class=None, batch_size=EVAL_BATCH_SIZE):
    """Clean accuracy and, for models with an outlier class, the detected rate."""
    predictions = predict_logits(model, images, batch_size).argmax(axis=1)
    result = {"accuracy": float(np.mean(predictions == np.asarray(labels)))}
    if outlier_class is not None:
        result["detected"] = float(np.mean(predictions == outlier_class))
    return result


# ----------------------------------------------------------------------- model specs

# Attack variants: "plain" ignores the outlier class, "adaptive" avoids it.
VARIANTS = ("plain", "adaptive")


@dataclasses.dataclass
class ModelSpec:
    """A loaded model and what its logits mean.

    num_classes: n real classes; outlier_class: n for n + 1-logit models, else None.
    only_target: for a surrogate trained against one target (surrogate J, trained
    on that target's labels), the name of that target: its black-box attacks are
    scored on it alone. None: scored on every target.
    extra: a model beyond the paper's Figure 1 (bin/reproduce: the adversarial-training
    target, the surrogates J); slow attacks computed on it use at most
    EvalConfig.extra_examples inputs.
    """
    name: str
    model: object
    path: str
    num_classes: int
    outlier_class: int | None
    only_target: str | None = None
    extra: bool = False

    def variants(self, adaptive=True):
        """Attack variants that make sense on this model."""
        return VARIANTS if (adaptive and self.outlier_class is not None) else VARIANTS[:1]

    def attack_outlier_class(self, variant):
        return self.outlier_class if variant == "adaptive" else None

    def describe(self):
        out = {"path": os.path.abspath(self.path), "sha256": files.sha256(self.path),
               "outputs": self.num_classes + (self.outlier_class is not None),
               "outlier_class": self.outlier_class,
               "parameters": int(self.model.count_params())}
        if self.only_target is not None:
            out["only_target"] = self.only_target
        if self.extra:
            out["extra"] = True
        return out


def load_model_spec(name, path, dataset):
    """Load a `.keras` model (safe mode) for `dataset`: n or n + 1 logits.

    Raises ValueError naming the file when it is missing, unreadable, takes
    other inputs, or has neither n nor n + 1 outputs.
    """
    model = load_model(path, input_shape=dataset.input_shape)
    outputs = int(model.output_shape[-1])
    n = dataset.num_classes
    if outputs not in (n, n + 1):
        raise ValueError(f"model {str(path)!r} has {outputs} outputs; dataset {dataset.name!r} "
                         f"has n={n} classes, so expected {n} or {n + 1} (with the outlier class)")
    return ModelSpec(name, model, str(path), n, n if outputs == n + 1 else None)


def model_label(path):
    """A run-name-safe label for a model file: <run dir>-<file stem>."""
    path = os.path.abspath(path)
    run_dir = os.path.basename(os.path.dirname(path))
    label = f"{run_dir}-{os.path.splitext(os.path.basename(path))[0]}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", label).lstrip(".-") or "model"
