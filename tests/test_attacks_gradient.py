"""FGSM and PGD: properties on tiny linear models (hand-computable gradients)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LinearModel, random_linear
from keras_edd.attacks import fgsm, pgd

NUM_FEATURES = 12
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def linear():
    return random_linear(NUM_FEATURES, NUM_CLASSES)


@pytest.fixture(scope="module")
def blocky():
    """Class k owns features 3k..3k+2: every target is reachable inside the box."""
    weights = np.kron(np.eye(NUM_CLASSES), np.ones((3, 1))) * 4.0
    weights += np.random.default_rng(2).normal(scale=0.3, size=weights.shape)
    return LinearModel(weights, np.zeros(NUM_CLASSES))


def inputs(n, seed=1):
    return np.random.default_rng(seed).uniform(0.05, 0.95, (n, 3, 4)).astype(np.float32)


def numpy_ce_gradient(model, x, labels):
    """d CE(softmax(x W + b), y) / dx = (p - onehot(y)) W^T, by hand."""
    flat = x.reshape(len(x), -1)
    logits = flat @ model.weights + model.bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(x)), labels] -= 1.0
    return (p @ model.weights.T).reshape(x.shape)


def test_fgsm_matches_hand_computed_step(linear):
    x = inputs(8)
    labels = np.argmax(x.reshape(8, -1) @ linear.weights, axis=1)
    expected = np.clip(x + 0.1 * np.sign(numpy_ce_gradient(linear, x, labels)), 0, 1)
    np.testing.assert_allclose(fgsm(linear, x, eps=0.1).numpy(), expected, atol=1e-6)
    targets = (labels + 1) % NUM_CLASSES
    expected_t = np.clip(x - 0.1 * np.sign(numpy_ce_gradient(linear, x, targets)), 0, 1)
    np.testing.assert_allclose(
        fgsm(linear, x, eps=0.1, y=targets, targeted=True).numpy(), expected_t, atol=1e-6)


def test_fgsm_default_label_is_prediction_not_truth(linear):
    x = inputs(8)
    predicted = np.argmax(x.reshape(8, -1) @ linear.weights, axis=1)
    wrong = (predicted + 1) % NUM_CLASSES
    by_default = fgsm(linear, x, eps=0.1).numpy()
    np.testing.assert_allclose(by_default, fgsm(linear, x, eps=0.1, y=predicted).numpy())
    assert not np.allclose(by_default, fgsm(linear, x, eps=0.1, y=wrong).numpy())


@settings(max_examples=6, deadline=None)
@given(eps=st.floats(0.0, 0.6), seed=st.integers(0, 3), loss=st.sampled_from(["ce", "cw"]))
def test_fgsm_box_and_eps_ball(linear, eps, seed, loss):
    x = inputs(6, seed)
    x_adv = fgsm(linear, x, eps=eps, loss=loss).numpy()
    assert x_adv.shape == x.shape
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.abs(x_adv - x).max() <= eps + 1e-6


@settings(max_examples=5, deadline=None)
@given(eps=st.floats(0.0, 0.5), nb_iter=st.integers(0, 6), rand_init=st.booleans(),
       clip=st.sampled_from([(0.0, 1.0), (-1.0, 2.0), (0.2, 0.8)]))
def test_pgd_box_and_eps_ball(linear, eps, nb_iter, rand_init, clip):
    x = np.clip(inputs(6), *clip)
    x_adv = pgd(linear, x, eps=eps, eps_iter=0.05, nb_iter=nb_iter, rand_init=rand_init,
                clip_min=clip[0], clip_max=clip[1], seed=0).numpy()
    assert x_adv.min() >= clip[0] and x_adv.max() <= clip[1]
    assert np.abs(x_adv - x).max() <= eps + 1e-6


def test_eps_zero_returns_x(linear):
    x = inputs(5)
    np.testing.assert_array_equal(fgsm(linear, x, eps=0.0).numpy(), x)
    np.testing.assert_array_equal(
        pgd(linear, x, eps=0.0, eps_iter=0.1, nb_iter=3, seed=0).numpy(), x)


def test_pgd_misclassifies_easy_model_and_beats_fgsm(linear):
    x = inputs(32)
    labels = np.argmax(x.reshape(32, -1) @ linear.weights, axis=1)

    def error_rate(x_adv):
        return np.mean(np.argmax(linear(x_adv).numpy(), axis=1) != labels)

    pgd_error = error_rate(pgd(linear, x, eps=0.3, eps_iter=0.05, nb_iter=20, seed=0))
    fgsm_error = error_rate(fgsm(linear, x, eps=0.3))
    assert pgd_error >= fgsm_error
    assert pgd_error > 0.9


def test_pgd_targeted_reaches_target(blocky):
    x = inputs(16)
    labels = np.argmax(blocky(x).numpy(), axis=1)
    targets = (labels + 1) % NUM_CLASSES
    for loss in ("ce", "cw"):
        x_adv = pgd(blocky, x, eps=0.5, eps_iter=0.05, nb_iter=30, y=targets,
                    targeted=True, seed=0, loss=loss)
        reached = np.argmax(blocky(x_adv).numpy(), axis=1) == targets
        assert reached.all(), loss


def test_pgd_restarts_keep_the_best_start(linear):
    x = inputs(32, seed=5)
    labels = np.argmax(x.reshape(32, -1) @ linear.weights, axis=1)
    kwargs = dict(eps=0.12, eps_iter=0.03, nb_iter=3, seed=7, loss="cw")
    one = pgd(linear, x, nb_restarts=1, **kwargs)
    many = pgd(linear, x, nb_restarts=4, **kwargs)
    margin = lambda x_adv: _untargeted_margin(linear(x_adv).numpy(), labels)
    # Restart 0 is shared, so keeping the best can only help, per sample.
    assert np.all(margin(many) >= margin(one) - 1e-5)
    assert np.any(margin(many) > margin(one) + 1e-4)


def _untargeted_margin(logits, labels):
    own = logits[np.arange(len(labels)), labels]
    others = logits.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return others.max(axis=1) - own


def test_pgd_is_seeded(linear):
    x = inputs(6)
    first = pgd(linear, x, eps=0.2, eps_iter=0.05, nb_iter=2, seed=3).numpy()
    again = pgd(linear, x, eps=0.2, eps_iter=0.05, nb_iter=2, seed=3).numpy()
    other = pgd(linear, x, eps=0.2, eps_iter=0.05, nb_iter=2, seed=4).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_keras_model_is_called_in_inference_mode():
    import keras
    inputs_ = keras.Input((3, 4))
    hidden = keras.layers.Dropout(0.9)(keras.layers.Flatten()(inputs_))
    model = keras.Model(inputs_, keras.layers.Dense(NUM_CLASSES)(hidden))
    x = inputs(4)
    first = fgsm(model, x, eps=0.1).numpy()
    np.testing.assert_array_equal(first, fgsm(model, x, eps=0.1).numpy())


def test_attacks_trace_once_per_keras_model_and_do_not_keep_it_alive():
    """A second call on the same model and shapes reuses the trace (a wrapper made per
    call would die with it and force a new trace every batch); the cached wrapper holds
    the model weakly."""
    import gc
    import importlib
    import weakref

    import keras

    from keras_edd.attacks import apgd
    modules = {name: importlib.import_module(f"keras_edd.attacks.{name}")
               for name in ("fgsm", "pgd", "apgd")}
    traced = {"fgsm": modules["fgsm"]._fgsm_step, "pgd": modules["pgd"]._pgd_run,
              "apgd": modules["apgd"]._apgd_run}
    model = keras.Sequential([keras.Input((3, 4)), keras.layers.Flatten(),
                              keras.layers.Dense(NUM_CLASSES)])

    def run_all(seed):
        x = inputs(5, seed=seed)
        fgsm(model, x, eps=0.1)
        pgd(model, x, eps=0.1, eps_iter=0.02, nb_iter=3, seed=seed)
        apgd(model, x, eps=0.1, nb_iter=4, seed=seed)

    run_all(1)
    counts = {name: fn.experimental_get_tracing_count() for name, fn in traced.items()}
    run_all(2)
    assert {name: fn.experimental_get_tracing_count() for name, fn in traced.items()} == counts
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
