"""Shared test set-up: quiet, offline, deterministic; tiny IDX writers; the linear models
(LinearModel by hand, keras_linear as a Keras model); running a binary and checking its
one-line error."""

import gzip
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_EDD_OFFLINE"] = "1"  # tests never touch the network
os.environ.pop("KERAS_EDD_DATA_DIR", None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_MNIST = os.path.join(REPO, "..", "shared", "data", "mnist")


def load_tool(name):
    """tools/<name>.py as a module (the tools are scripts, not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tools",
                                                                     f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def idx_bytes(array, type_code=0x08):
    array = np.asarray(array)
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path, array, *, compress=None, raw=None):
    data = raw if raw is not None else idx_bytes(array)
    compress = path.endswith(".gz") if compress is None else compress
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(data)
    return path


def write_idx_folder(folder, n_train=40, n_test=20, shape=(28, 28), num_classes=10, seed=0,
                     gz=True):
    """Four standard IDX files of random images with labels 0..num_classes-1."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    ext = ".gz" if gz else ""
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % num_classes
        write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte{ext}"), images)
        write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte{ext}"), labels)
        arrays[split] = (images, labels)
    return arrays


class LinearModel:
    """Z(x) = scale * (x W (+ b)) on flattened inputs: logits an attack test can compute by
    hand. A huge `scale` saturates the softmax in float32, so the cross-entropy gradient
    is exactly zero (a defensively distilled network read at T = 1 in miniature); the
    decision (argmax) does not depend on it.

    Hashable (by identity), so tf.function traces are reused across calls.
    """

    def __init__(self, weights, bias=None, scale=1.0):
        self.weights = np.asarray(weights, np.float32)
        self.bias = None if bias is None else np.asarray(bias, np.float32)
        self.scale = scale

    def __call__(self, x):
        import tensorflow as tf
        logits = tf.reshape(x, [tf.shape(x)[0], -1]) @ self.weights
        if self.bias is not None:
            logits = logits + self.bias
        return logits if self.scale == 1.0 else self.scale * logits


def keras_linear(outputs, input_shape=(2, 2, 1), *, seed=None, scale=1.0):
    """A Keras model Flatten -> Dense(outputs): logits, trainable and savable. `seed`
    seeds Keras first (None: the current random state); `scale` multiplies the weights."""
    import keras
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(outputs, name="logits")])
    if scale != 1.0:
        model.set_weights([w * scale for w in model.get_weights()])
    return model


_RUNNING = {}  # the test being run (pytest_runtest_call)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    _RUNNING["item"] = item
    try:
        return (yield)
    finally:
        _RUNNING.pop("item", None)


def run_binary(name, *args, prefix=(), cwd=None, timeout=600):
    """bin/<name> with `args` in a subprocess (after the `prefix` command, if any).

    Only for tests marked slow: a binary starts a Python process (and often TensorFlow),
    seconds each, and the unit suite (-m "not slow") stays about a minute.
    """
    item = _RUNNING.get("item")
    if item is not None and item.get_closest_marker("slow") is None:
        raise AssertionError(f"{item.nodeid} runs bin/{name} in a subprocess: mark it "
                             "@pytest.mark.slow")
    return subprocess.run([*prefix, sys.executable, os.path.join(REPO, "bin", name), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


# TensorFlow's C++ start-up notices reach stderr whatever TF_CPP_MIN_LOG_LEVEL says.
_TF_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "W0000 ",
             "To enable the following instructions")


def assert_one_line_error(result, *fragments, program=None):
    """The binary failed with exit status 2 and one line on stderr (besides TensorFlow's
    start-up notices) holding every fragment; `program`: the line starts with
    '<program>: error: '."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith(_TF_NOISE)]
    assert len(lines) == 1, result.stderr
    if program is not None:
        assert lines[0].startswith(f"{program}: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def idx_folder(tmp_path):
    folder = str(tmp_path / "idx")
    arrays = write_idx_folder(folder)
    return folder, arrays


@pytest.fixture
def shared_mnist():
    if not os.path.isdir(SHARED_MNIST):
        pytest.skip("../shared/data/mnist is not present")
    return SHARED_MNIST


def event_hparams(log_dir):
    """The hparams (session start info) and scalars of the event files directly in log_dir."""
    import glob

    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2
    hparams, scalars = {}, {}
    for path in glob.glob(os.path.join(str(log_dir), "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    data = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content)
                    for name, v in data.session_start_info.hparams.items():
                        kind = v.WhichOneof("kind")
                        hparams[name] = getattr(v, kind)
                elif value.metadata.plugin_data.plugin_name == "scalars" or value.HasField(
                        "tensor"):
                    scalars[value.tag] = (event.step,
                                          float(tf.make_ndarray(value.tensor)))
    return hparams, scalars
