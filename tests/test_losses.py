import numpy as np
import pytest
import tensorflow as tf

from keras_edd.defense import losses


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_temperature_cross_entropy_by_hand():
    logits = np.array([[2.0, 0.0, -2.0], [1.0, 3.0, 0.0]], np.float32)
    labels = np.array([[0.7, 0.0, 0.3], [0.0, 1.0, 0.0]], np.float32)
    # T = 4: softmax([0.5, 0, -0.5]) and softmax([0.25, 0.75, 0]) by hand.
    p1 = np.exp([0.5, 0.0, -0.5]) / np.exp([0.5, 0.0, -0.5]).sum()
    p2 = np.exp([0.25, 0.75, 0.0]) / np.exp([0.25, 0.75, 0.0]).sum()
    expected = -(0.7 * np.log(p1[0]) + 0.3 * np.log(p1[2]) + np.log(p2[1])) / 2
    got = losses.temperature_cross_entropy(labels, logits, 4.0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_temperature_one_is_ordinary_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 11)).astype(np.float32) * 3
    labels = np.eye(11, dtype=np.float32)[rng.integers(0, 11, 16)]
    expected = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels, logits)).numpy()
    np.testing.assert_allclose(losses.temperature_cross_entropy(labels, logits, 1.0).numpy(),
                               expected, rtol=1e-6)
    np.testing.assert_allclose(losses.temperature_cross_entropy(labels, logits).numpy(),
                               -np.mean((labels * _log_softmax(logits)).sum(1)), rtol=1e-5)


def test_large_temperature_is_stable():
    logits = np.array([[1e4, -1e4]], np.float32)
    value = losses.temperature_cross_entropy([[0.0, 1.0]], logits, 1.0).numpy()
    assert np.isfinite(value) and value == pytest.approx(2e4)


def test_logit_penalty_by_hand():
    logits = np.array([[1.0, -2.0], [3.0, 0.0]], np.float32)
    assert losses.logit_penalty(logits).numpy() == pytest.approx((1 + 4 + 9 + 0) / 4)
    assert losses.logit_penalty(np.zeros((3, 5), np.float32)).numpy() == 0.0
