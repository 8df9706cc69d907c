"""Carlini-Wagner L2: success with margin kappa, binary search, state, outlier class."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import LinearModel
from keras_edd.attacks import carlini_wagner_l2, fgsm, pgd

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def easy():
    weights = np.kron(4.0 * np.eye(NUM_CLASSES) - 1.0, np.ones((3, 1)))
    weights += np.random.default_rng(0).normal(scale=0.2, size=weights.shape)
    return LinearModel(weights, np.zeros(NUM_CLASSES))


def images(n, seed=0):
    return np.random.default_rng(seed).uniform(0.2, 0.8, (n, 3, 4)).astype(np.float32)


def margins(model, x_adv, labels, targeted=False):
    logits = model(tf.convert_to_tensor(x_adv)).numpy()
    own = logits[np.arange(len(labels)), labels]
    others = logits.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return own - others.max(1) if targeted else others.max(1) - own


FAST = dict(learning_rate=0.1, max_iterations=60, binary_search_steps=4, initial_const=1.0)


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.1), ("adadelta", 10.0)])
def test_untargeted_success_with_margin_kappa(easy, optimizer, lr):
    x = images(8)
    labels = np.argmax(easy(x).numpy(), axis=1)
    kwargs = dict(FAST, optimizer=optimizer, learning_rate=lr, confidence=2.0)
    x_adv = carlini_wagner_l2(easy, x, **kwargs).numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    margin = margins(easy, x_adv, labels)
    success = margin > 0
    assert success.mean() >= 0.75
    assert np.all(margin[success] >= 2.0 - 1e-4)
    np.testing.assert_array_equal(x_adv[~success], x[~success])  # failures return x
    # Twice in a row in one process: fresh variables and optimizer per call.
    again = carlini_wagner_l2(easy, x, **kwargs).numpy()
    np.testing.assert_allclose(again, x_adv, atol=1e-5)


def test_targeted_reaches_target(easy):
    x = images(8, seed=1)
    targets = (np.argmax(easy(x).numpy(), axis=1) + 2) % NUM_CLASSES
    x_adv = carlini_wagner_l2(easy, x, y=targets, targeted=True, confidence=1.0, **FAST)
    margin = margins(easy, x_adv, targets, targeted=True)
    assert np.all(margin >= 1.0 - 1e-4)


def test_binary_search_lowers_l2_versus_fixed_large_const(easy):
    x = images(8, seed=2)
    fixed = carlini_wagner_l2(easy, x, learning_rate=0.05, max_iterations=100,
                              binary_search_steps=1, initial_const=100.0, abort_early=False)
    searched = carlini_wagner_l2(easy, x, learning_rate=0.05, max_iterations=100,
                                 binary_search_steps=6, initial_const=100.0, abort_early=False)
    labels = np.argmax(easy(x).numpy(), axis=1)
    assert np.all(margins(easy, fixed, labels) > 0)
    assert np.all(margins(easy, searched, labels) > 0)
    l2 = lambda x_adv: np.sqrt(((np.asarray(x_adv) - x) ** 2).sum(axis=(1, 2)))
    assert np.all(l2(searched) <= l2(fixed) + 1e-6)
    assert l2(searched).mean() < 0.8 * l2(fixed).mean()


@pytest.fixture(scope="module")
def outlier_model():
    """Class 0 at x = 0.5; the outlier logit (3) is the nearest "other" class.

    Z_0 = 0, Z_out = 4 (x_0 - 0.5) - 0.5 (wins once x_0 > 0.625),
    Z_1 = 4 (x_1 - 0.5) - 1.0 (wins once x_1 > 0.75), Z_2 = -10.
    """
    weights = np.zeros((4, 4), np.float32)
    weights[0, 3] = 4.0
    weights[1, 1] = 4.0
    bias = np.array([0.0, -3.0, -10.0, -2.5], np.float32)
    return LinearModel(weights, bias)


def test_adaptive_margin_avoids_the_outlier_class(outlier_model):
    x = np.full((3, 2, 2), 0.5, np.float32)
    kwargs = dict(learning_rate=0.05, max_iterations=200, binary_search_steps=5,
                  initial_const=1.0, confidence=0.5)
    plain = carlini_wagner_l2(outlier_model, x, **kwargs)
    adaptive = carlini_wagner_l2(outlier_model, x, outlier_class=3, **kwargs)
    np.testing.assert_array_equal(np.argmax(outlier_model(plain).numpy(), 1), [3, 3, 3])
    np.testing.assert_array_equal(np.argmax(outlier_model(adaptive).numpy(), 1), [1, 1, 1])
    # FGSM and PGD: plain cross-entropy raises Z_out and Z_1 alike and ends in the
    # outlier class; the adaptive losses (both kinds) end in class 1.
    plain_pgd = pgd(outlier_model, x, eps=0.45, eps_iter=0.05, nb_iter=20, seed=0)
    np.testing.assert_array_equal(
        np.argmax(outlier_model(fgsm(outlier_model, x, eps=0.45)).numpy(), 1), [3, 3, 3])
    np.testing.assert_array_equal(np.argmax(outlier_model(
        fgsm(outlier_model, x, eps=0.45, outlier_class=3)).numpy(), 1), [1, 1, 1])
    np.testing.assert_array_equal(np.argmax(outlier_model(plain_pgd).numpy(), 1), [3, 3, 3])
    for loss in ("ce", "cw"):
        adaptive_pgd = pgd(outlier_model, x, eps=0.45, eps_iter=0.05, nb_iter=20, seed=0,
                           outlier_class=3, loss=loss)
        np.testing.assert_array_equal(
            np.argmax(outlier_model(adaptive_pgd).numpy(), 1), [1, 1, 1], err_msg=loss)


def test_binary_search_raises_a_too_small_const(easy):
    x = images(6, seed=3)
    labels = np.argmax(easy(x).numpy(), axis=1)
    kwargs = dict(learning_rate=0.1, max_iterations=60, initial_const=1e-4, confidence=1.0)
    stuck = carlini_wagner_l2(easy, x, binary_search_steps=1, **kwargs)
    searched = carlini_wagner_l2(easy, x, binary_search_steps=6, **kwargs)
    assert np.all(margins(easy, stuck, labels) <= 0)  # c = 1e-4: the L2 term wins
    assert np.all(margins(easy, searched, labels) >= 1.0 - 1e-4)  # c grew 10x per failure
