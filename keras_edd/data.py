"""Datasets: images float32 in [0, 1], NHWC, integer labels, as `tf.data` pipelines.

Sources are tried in this order (`load_dataset`):
  1. an IDX folder: `data_dir=` (flag `--data_dir`) or the environment variable
     `KERAS_EDD_DATA_DIR`, holding the four standard files
     `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
     `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`
     (e.g. `../shared/data/mnist`, Debian's `/usr/share/datasets/fashion-mnist`);
  2. TensorFlow Datasets, when the dataset is already in the local tfds folder or
     the network answers within a few seconds (tfds itself retries for minutes);
  3. for MNIST, `mnist_sample`: 5,000 real MNIST digits bundled with the package
     (4,000 official training digits / 1,000 official test digits, named by their
     official indices; see tools/make_mnist_sample.py).
A folder that was named explicitly is never silently skipped: if it is unusable
the error says why, and `mnist_sample` (always the bundled sample) refuses one.
When nothing loads, `DataError` lists every source tried.
"""

import dataclasses
import gzip
import logging
import math
import os
import re
import socket
import threading
import zlib

import numpy as np

DATA_DIR_ENV = "KERAS_EDD_DATA_DIR"
OFFLINE_ENV = "KERAS_EDD_OFFLINE"
SAMPLE_PATH = os.path.join(os.path.dirname(__file__), "data_files", "mnist_sample.npz")

# name (one of keras_edd.config.Dataset) -> (input shape, class names)
DATASETS = {
    "mnist": ((28, 28, 1), tuple(str(i) for i in range(10))),
    "mnist_sample": ((28, 28, 1), tuple(str(i) for i in range(10))),
    "fashion_mnist": ((28, 28, 1), ("t-shirt/top", "trouser", "pullover", "dress", "coat",
                                    "sandal", "shirt", "sneaker", "bag", "ankle boot")),
    "cifar10": ((32, 32, 3), ("airplane", "automobile", "bird", "cat", "deer",
                              "dog", "frog", "horse", "ship", "truck")),
}

_IDX_NAME = re.compile(r"^(train|t10k)-(images|labels)[.-]idx([134])-ubyte(\.gz)?$")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DataError(ValueError):
    """A dataset could not be found or a data file is malformed."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """In-memory dataset: uint8 NHWC images and int labels, plus where they came from."""
    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    def summary(self):
        return {"name": self.name, "source": self.source, "train_size": int(len(self.y_train)),
                "test_size": int(len(self.y_test)), "input_shape": list(self.input_shape),
                "num_classes": self.num_classes}


# ----------------------------------------------------------------------------- IDX


def read_idx(path):
    """Read one IDX file (optionally gzipped) into a numpy array.

    Raises DataError naming the file on a bad magic number, an unknown type code,
    a truncated or over-long body, or a corrupt gzip stream. A corrupt gzip body
    surfaces from the standard library as zlib.error (bad deflate data),
    EOFError (stream cut short) or gzip.BadGzipFile, an OSError (bad header,
    CRC or length check at the end).
    """
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        kind = "corrupt gzip data" if isinstance(exc, zlib.error) else "cannot read"
        raise DataError(f"{path}: {kind} ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}; "
                        "expected 0000 followed by a type code and a rank)")
    type_code, rank = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x}")
    if rank < 1 or len(raw) < 4 + 4 * rank:
        raise DataError(f"{path}: truncated IDX header (rank {rank}, {len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = math.prod(shape) * dtype.itemsize  # exact: np.prod wraps past 2**63
    if math.prod(d for d in shape if d) * dtype.itemsize > np.iinfo(np.intp).max:
        # numpy refuses such a shape even when a zero dimension makes it empty
        raise DataError(f"{path}: header says shape {shape}, too large for an array")
    body = raw[4 + 4 * rank:]
    if len(body) != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} data bytes) but the file "
                        f"holds {len(body)} data bytes ({'truncated' if len(body) < expected else 'trailing bytes'})")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def find_idx_files(data_dir):
    """Map ('train'|'t10k', 'images'|'labels') -> path for the IDX files in a folder."""
    if not os.path.isdir(data_dir):
        raise DataError(f"data_dir={data_dir!r} is not a directory")
    found = {}
    for entry in sorted(os.listdir(data_dir)):
        match = _IDX_NAME.match(entry)
        if match:
            key = (match.group(1), match.group(2))
            # Prefer an uncompressed copy if both exist (sorted puts it first).
            found.setdefault(key, os.path.join(data_dir, entry))
    missing = [f"{s}-{k}-idx{1 if k == 'labels' else 3}-ubyte[.gz]"
               for s in ("train", "t10k") for k in ("images", "labels") if (s, k) not in found]
    if missing:
        raise DataError(f"data_dir={data_dir!r} lacks IDX file(s): {', '.join(missing)}")
    return found


def _images_labels(images_path, labels_path, num_classes):
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8:
        raise DataError(f"{images_path}: images must be unsigned bytes, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DataError(f"{images_path}: images must have rank 3 or 4, got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: labels must have rank 1, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{labels_path}: labels must lie in [0, {num_classes - 1}], found "
                        f"[{labels.min()}, {labels.max()}]")
    return images, labels.astype(np.int64)


def load_idx_folder(name, data_dir):
    """Load a dataset from a folder of the four standard IDX files."""
    shape, class_names = _spec(name)
    files = find_idx_files(data_dir)
    x_train, y_train = _images_labels(files["train", "images"], files["train", "labels"],
                                      len(class_names))
    x_test, y_test = _images_labels(files["t10k", "images"], files["t10k", "labels"],
                                    len(class_names))
    if not len(x_test):
        raise DataError(f"{files['t10k', 'images']}: holds no images; the test split needs at "
                        "least one (every model is evaluated on it)")
    for path, x in ((files["train", "images"], x_train), (files["t10k", "images"], x_test)):
        if x.shape[1:] != shape:
            raise DataError(f"{path}: images of shape {x.shape[1:]} do not fit dataset "
                            f"{name!r}, which expects {shape}")
    return Dataset(name, f"idx:{os.path.abspath(data_dir)}", x_train, y_train, x_test, y_test,
                   class_names)


# ---------------------------------------------------------------------- other sources


def load_sample():
    """The bundled 5,000-digit MNIST sample (see tools/make_mnist_sample.py): its test
    split is 1,000 of MNIST's official test digits, none of them a training digit of a
    model trained on MNIST's training set."""
    with np.load(SAMPLE_PATH) as arrays:
        parts = {k: arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    return Dataset("mnist_sample", "bundled:mnist_sample", parts["x_train"][..., None],
                   parts["y_train"].astype(np.int64), parts["x_test"][..., None],
                   parts["y_test"].astype(np.int64), DATASETS["mnist_sample"][1])


def network_available(host="storage.googleapis.com", port=443, timeout=3.0):
    """True if a TCP connection to `host` succeeds within `timeout` seconds.

    Runs in a daemon thread so a hanging DNS lookup cannot stall the caller.
    """
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return False
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def _tfds_local_dir(name):
    root = os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"),
                                                          "tensorflow_datasets"))
    path = os.path.join(root, name)
    return path if os.path.isdir(path) and os.listdir(path) else None


def load_tfds(name):
    """Load `name` with TensorFlow Datasets (already local, or downloaded)."""
    import tensorflow_datasets as tfds  # slow import, only when needed
    local = _tfds_local_dir(name) is not None
    splits = tfds.as_numpy(tfds.load(name, split=["train", "test"], batch_size=-1,
                                     as_supervised=True, download=not local,
                                     try_gcs=False))
    (x_train, y_train), (x_test, y_test) = splits
    return Dataset(name, f"tfds:{name}", np.asarray(x_train, np.uint8), y_train.astype(np.int64),
                   np.asarray(x_test, np.uint8), y_test.astype(np.int64), _spec(name)[1])


def _spec(name):
    if name not in DATASETS:
        raise DataError(f"dataset={name!r} is unknown; allowed: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def load_dataset(name="mnist", data_dir=None, *, train_limit=None, test_limit=None,
                 allow_download=True):
    """Resolve and load a dataset (see the module docstring for the order).

    Args:
      name: one of `DATASETS`.
      data_dir: IDX folder; defaults to $KERAS_EDD_DATA_DIR when set. Refused
        with name="mnist_sample", which is always the bundled sample (the
        environment variable is then not used).
      train_limit, test_limit: keep only the first that many examples.
      allow_download: False skips TensorFlow Datasets unless already local.
    Returns:
      A `Dataset` with uint8 NHWC images.
    Raises:
      DataError: listing the sources tried and how to provide data.
    """
    _spec(name)
    for limit_name, limit in (("train_limit", train_limit), ("test_limit", test_limit)):
        if limit is not None and int(limit) < 1:
            raise DataError(f"{limit_name}={limit!r}: must be a positive count or None")
    if name == "mnist_sample" and data_dir:
        raise DataError(f"dataset='mnist_sample' is the bundled sample and reads no folder, "
                        f"but data_dir={data_dir!r} was given: drop --data_dir, or use "
                        "--dataset=mnist (or fashion_mnist) to load that folder")
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if name == "mnist_sample":  # $KERAS_EDD_DATA_DIR is a default; it does not apply here
        dataset = load_sample()
    elif data_dir:
        dataset = load_idx_folder(name, data_dir)
    else:
        tried = []
        dataset = None
        if _tfds_local_dir(name):
            dataset = load_tfds(name)
        elif allow_download and network_available():
            try:
                dataset = load_tfds(name)
            except Exception as exc:  # noqa: BLE001 - any tfds failure falls through
                tried.append(f"TensorFlow Datasets '{name}' failed ({type(exc).__name__}: {exc})")
        else:
            tried.append(f"TensorFlow Datasets '{name}' (not in the local tfds folder and "
                         f"{'downloads disabled' if not allow_download else 'no network'})")
        if dataset is None and name == "mnist":
            logging.warning("MNIST not found (%s); using the bundled 5,000-digit mnist_sample",
                            "; ".join(tried) or "tfds failed")
            dataset = load_sample()
        if dataset is None:
            raise DataError(
                f"no data for dataset={name!r}: tried --data_dir / ${DATA_DIR_ENV} (not set); "
                + "; ".join(tried) + ". Provide a folder of the four IDX files with --data_dir "
                "(e.g. `apt-get install -y dataset-fashion-mnist` gives "
                "/usr/share/datasets/fashion-mnist)")
    if train_limit or test_limit:
        dataset = dataclasses.replace(
            dataset,
            x_train=dataset.x_train[:train_limit], y_train=dataset.y_train[:train_limit],
            x_test=dataset.x_test[:test_limit], y_test=dataset.y_test[:test_limit])
    return dataset


# ------------------------------------------------------------------------ pipelines


def to_float(images):
    """Images as float32 in [0, 1], the one uint8 -> float rule: uint8 divided by 255,
    float images passed through. ValueError (one line) for float values outside
    [0, 1] (not finite included: e.g. images already divided, or never scaled) and for
    any other dtype."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images of dtype {images.dtype}: expected uint8 (0..255) or "
                         "floats in [0, 1]")
    images = images.astype(np.float32, copy=False)
    if images.size and not (np.isfinite(images).all() and images.min() >= 0.0
                            and images.max() <= 1.0):
        low, high = float(np.nanmin(images)), float(np.nanmax(images))
        raise ValueError(f"float images span [{low}, {high}]: expected values in [0, 1] "
                         "(uint8 images are divided by 255)")
    return images


def make_pipeline(images, targets, batch_size, *, shuffle_seed=None, drop_remainder=False):
    """A batched, prefetched `tf.data.Dataset` of (float32 images, targets).

    `targets` may be integer labels or soft-label rows. With `shuffle_seed`, the
    whole set is shuffled once in a fixed order that depends only on the seed, so
    an epoch's order can be rebuilt exactly when a run resumes.
    """
    import tensorflow as tf
    images = to_float(images)
    ds = tf.data.Dataset.from_tensor_slices((images, targets))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(images), seed=int(shuffle_seed), reshuffle_each_iteration=False)
    return ds.batch(int(batch_size), drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def load_data(data_config):
    """The dataset of a keras_edd.config.DataConfig (see `load_dataset`)."""
    return load_dataset(data_config.dataset, data_config.data_dir,
                        train_limit=data_config.train_limit, test_limit=data_config.test_limit)
