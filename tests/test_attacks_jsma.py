"""Pairwise JSMA: budget, direction, target reached, batching, pair-search modes."""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LinearModel
from keras_edd.attacks import all_targets, jsma, jsma_untargeted

NUM_CLASSES = 4
SHAPE = (4, 4, 1)  # 16 features


@pytest.fixture(scope="module")
def easy():
    """Features 4k..4k+3 raise Z_k and lower the other logits; noise breaks ties."""
    weights = np.kron(4.0 * np.eye(NUM_CLASSES) - 1.0, np.ones((4, 1)))
    weights += np.random.default_rng(0).normal(scale=0.2, size=weights.shape)
    return LinearModel(weights)


@pytest.fixture(scope="module")
def generic():
    return LinearModel(np.random.default_rng(1).normal(size=(16, NUM_CLASSES)))


def images(n, seed=0, high=0.3):
    return np.random.default_rng(seed).uniform(0.0, high, (n, *SHAPE)).astype(np.float32)


def predictions(model, x):
    return np.argmax(model(tf.convert_to_tensor(x)).numpy(), axis=1)


@settings(max_examples=6, deadline=None)
@given(gamma=st.floats(0.05, 1.0), theta=st.sampled_from([1.0, 0.3]),
       use_logits=st.booleans(), seed=st.integers(0, 5))
def test_budget_and_direction(generic, gamma, theta, use_logits, seed):
    x = images(6, seed)
    targets = (predictions(generic, x) + 1) % NUM_CLASSES
    x_adv = jsma(generic, x, targets, theta=theta, gamma=gamma, use_logits=use_logits).numpy()
    changed = np.count_nonzero((x_adv != x).reshape(6, -1), axis=1)
    assert np.all(changed <= 2 * math.floor(16 * gamma / 2))
    assert np.all(x_adv >= x) and x_adv.max() <= 1.0
    np.testing.assert_allclose(x_adv[x_adv != x], np.minimum(x[x_adv != x] + theta, 1.0),
                               atol=1e-6)


def test_negative_theta_only_decreases(generic):
    x = images(6, high=1.0)
    targets = (predictions(generic, x) + 2) % NUM_CLASSES
    x_adv = jsma(generic, x, targets, theta=-0.5, gamma=0.5).numpy()
    assert np.all(x_adv <= x) and x_adv.min() >= 0.0
    assert np.any(x_adv < x)


@pytest.mark.parametrize("use_logits", [False, True])
def test_reaches_target_on_easy_model(easy, use_logits):
    x = images(12)
    labels = predictions(easy, x)
    targets = (labels + 1 + np.arange(12) % 3) % NUM_CLASSES
    x_adv = jsma(easy, x, targets, theta=1.0, gamma=0.5, use_logits=use_logits)
    np.testing.assert_array_equal(predictions(easy, x_adv), targets)


def test_sample_stops_when_target_reached(easy):
    x = images(4)
    labels = predictions(easy, x)
    untouched = jsma(easy, x, labels, gamma=1.0).numpy()  # target already reached
    np.testing.assert_array_equal(untouched, x)


def test_batched_equals_one_at_a_time(generic):
    x = images(7, seed=3)
    targets = (predictions(generic, x) + 1) % NUM_CLASSES
    for kwargs in (dict(), dict(use_logits=True)):
        batched = jsma(generic, x, targets, gamma=0.6, batch_chunk=3, **kwargs).numpy()
        for i in range(len(x)):
            single = jsma(generic, x[i:i + 1], targets[i:i + 1], gamma=0.6, **kwargs).numpy()
            np.testing.assert_array_equal(batched[i:i + 1], single)


def test_top2_shortcut_equals_pair_matrix_for_probabilities(generic):
    x = images(10, seed=4)
    targets = (predictions(generic, x) + 3) % NUM_CLASSES
    top2 = jsma(generic, x, targets, gamma=0.8, pair_search="top2").numpy()
    matrix = jsma(generic, x, targets, gamma=0.8, pair_search="matrix").numpy()
    np.testing.assert_array_equal(top2, matrix)


def test_untargeted_random_and_all(easy):
    x = images(5)
    labels = predictions(easy, x)
    result = jsma_untargeted(easy, x, labels, target_mode="random", seed=0, gamma=0.5)
    assert np.all(result.target != labels)
    np.testing.assert_array_equal(result.success, predictions(easy, result.x_adv) == result.target)
    assert result.success.all()
    again = jsma_untargeted(easy, x, labels, target_mode="random", seed=0, gamma=0.5)
    np.testing.assert_array_equal(again.target, result.target)

    best = jsma_untargeted(easy, x, labels, target_mode="all", gamma=0.5)
    assert best.success.all() and np.all(best.target != labels)
    sample_index, targets = all_targets(labels, NUM_CLASSES)
    every = jsma(easy, x[sample_index], targets, gamma=0.5).numpy()
    changed = np.count_nonzero((every != x[sample_index]).reshape(len(targets), -1), axis=1)
    best_changed = np.count_nonzero((best.x_adv.numpy() != x).reshape(5, -1), axis=1)
    for i in range(5):
        assert best_changed[i] == changed[sample_index == i].min()


def test_outlier_class_is_never_a_target(easy):
    x = images(20)
    labels = predictions(easy, x)
    result = jsma_untargeted(easy, x, labels, target_mode="random", seed=1,
                             outlier_class=3, gamma=0.5)
    assert not np.any(result.target == 3) and np.all(result.target != labels)
    _, targets = all_targets(labels, NUM_CLASSES, outlier_class=3)
    assert not np.any(targets == 3)
    with pytest.raises(ValueError, match="outlier_class"):
        jsma(easy, x[:1], [3], outlier_class=3)
