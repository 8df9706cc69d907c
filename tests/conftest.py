"""Shared test set-up: quiet, offline, deterministic; tiny IDX writers; the linear models
(LinearModel by hand, keras_linear as a Keras model); running a binary and checking its
one-line error."""

import functools
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


@functools.lru_cache(maxsize=None)
def random_linear(num_features=12, num_classes=4, seed=0):
    """A LinearModel with normal weights and no bias (the attack tests' small model).

    One object per set of arguments for the whole session: the attacks' tf.function
    traces for it are reused by every test module that asks for the same model (tracing,
    not arithmetic, is most of an attack test's time). Tests never change its weights.
    """
    rng = np.random.default_rng(seed)
    return LinearModel(rng.normal(size=(num_features, num_classes)), np.zeros(num_classes))


class NoisyLinear(LinearModel):
    """A stochastic LinearModel: each call uses weights W + noise * N(0, 1), drawn anew
    (a seeded tf.random.Generator, so a test's draws repeat); its expected logits are
    LinearModel(W)'s. With `gradient_only` the logits stay exactly x W and only the
    input gradient is W + noise * N(0, 1): a single call's gradient is mostly noise,
    its mean over calls is W (what EOT, averaging gradients over calls, is for)."""

    def __init__(self, weights, noise, seed=0, gradient_only=False):
        import tensorflow as tf
        super().__init__(weights)
        self.noise = float(noise)
        self.gradient_only = gradient_only
        self.generator = tf.random.Generator.from_seed(seed)

    def __call__(self, x):
        import tensorflow as tf
        flat = tf.reshape(x, [tf.shape(x)[0], -1])
        noisy = flat @ (self.weights + self.noise * self.generator.normal(self.weights.shape))
        if not self.gradient_only:
            return noisy
        return flat @ self.weights + noisy - tf.stop_gradient(noisy)


def uniform_inputs(n, seed=1, low=0.3, high=0.7, shape=(3, 4)):
    """Inputs in [low, high] (default [0.3, 0.7]: for eps <= 0.3 the box [0, 1] never binds)."""
    return np.random.default_rng(seed).uniform(low, high, (n, *shape)).astype(np.float32)


def linear_boundaries(model, x, norm="linf"):
    """A LinearModel's decision boundaries, by hand, without the box.

    The boundary Z_k = Z_y of the predicted class y lies at Lp distance
    (Z_y - Z_k) / ||w_k - w_y||_q from x, q the dual norm (1 for L_inf, 2 for L2).
    Returns (distances [n, classes], inf at y; labels y [n]; gaps Z_y - Z [n, classes];
    differences w_k - w_y [d, n, classes]), in float64.
    """
    logits = np.asarray(model(x), np.float64)
    labels = logits.argmax(1)
    gaps = logits[np.arange(len(x)), labels][:, None] - logits
    weights = model.weights.astype(np.float64)
    differences = weights[:, None, :] - weights[:, labels][:, :, None]
    dual = (np.abs(differences).sum(0) if norm == "linf"
            else np.sqrt((differences ** 2).sum(0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        distances = np.where(np.arange(logits.shape[1])[None] == labels[:, None], np.inf,
                             gaps / dual)
    return distances, labels, gaps, differences


def outlier_trap(num_features=12):
    """4 real classes and an outlier logit (index 4), linear. At x = 0.5 the logits are
    about (1, 0, -0.2, -5, -0.5), y = 0. Raising feature 0 lifts class 1 (slope 10)
    but the outlier twice as fast (slope 20); raising feature 1 lifts class 2 (slope 10)
    alone. So the steepest way out of y ends in "detected", and only feature 1 (with
    feature 0 held down) reaches a real class: eps = 0.15 gives Z_2 = 1.3 > Z_0 = 1."""
    rng = np.random.default_rng(3)
    weights = rng.normal(scale=0.3, size=(num_features, 5))
    weights[0, 1] += 10.0
    weights[1, 2] += 10.0
    weights[0, 4] += 20.0
    at_half = np.array([1.0, 0.0, -0.2, -5.0, -0.5])
    return LinearModel(weights, at_half - 0.5 * weights.sum(0))


_SAMPLE_MLP = []


def sample_mlp():
    """A 784-32-10 MLP (logits) trained for 3 epochs on 1,000 bundled training digits (seed 0),
    built once per session: the attack tests' small real model."""
    if not _SAMPLE_MLP:
        import keras

        from keras_edd import data
        sample = data.load_sample()
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(10)])
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(data.to_float(sample.x_train[:1000]), sample.y_train[:1000], epochs=3,
                  batch_size=50, verbose=0)
        _SAMPLE_MLP.append((model, sample))
    return _SAMPLE_MLP[0]


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


def pytest_collection_modifyitems(config, items):
    """The tests that share a module-scoped fixture go to one worker process (pytest-xdist's
    --dist loadgroup, setup.cfg), so the fixture (e.g. test_bin_eval's tiny bin/reproduce
    run) is built once rather than once per worker."""
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        shared = sorted(name for name, chain in (defs.name2fixturedefs.items() if defs else ())
                        if chain and chain[-1].scope == "module")
        if shared:
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{shared[0]}"))


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
