"""Square Attack: properties on tiny linear models, masked gradients, the schedule."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LinearModel, random_linear
from keras_edd.attacks import fgsm, pgd, square
from keras_edd.attacks.square import p_schedule, square_side

HEIGHT, WIDTH = 6, 6
NUM_CLASSES = 4




def _weights(seed=0, num_classes=NUM_CLASSES):
    return np.random.default_rng(seed).normal(size=(HEIGHT * WIDTH, num_classes))


@pytest.fixture(scope="module")
def linear():
    return random_linear(HEIGHT * WIDTH, NUM_CLASSES)  # the weights _weights() gives


@pytest.fixture(scope="module")
def masked():
    return LinearModel(_weights(), np.zeros(NUM_CLASSES), scale=1e4)


def inputs(n, seed=1, channels=1):
    shape = (n, HEIGHT, WIDTH, channels) if channels else (n, HEIGHT, WIDTH)
    return np.random.default_rng(seed).uniform(0.05, 0.95, shape).astype(np.float32)


def predicted(model, x):
    return np.argmax(np.asarray(model(x)), axis=1)


def test_eps_zero_returns_x(linear):
    x = inputs(5)
    np.testing.assert_array_equal(square(linear, x, eps=0.0).numpy(), x)
    x_adv, queries = square(linear, x, eps=0.0, return_queries=True)
    np.testing.assert_array_equal(x_adv.numpy(), x)
    np.testing.assert_array_equal(queries.numpy(), 0)


@settings(max_examples=5, deadline=None)
@given(eps=st.floats(0.0, 0.6), max_queries=st.integers(1, 30), seed=st.integers(0, 3),
       clip=st.sampled_from([(0.0, 1.0), (-1.0, 2.0), (0.2, 0.8)]))
def test_box_and_eps_ball(linear, eps, max_queries, seed, clip):
    x = np.clip(inputs(6, seed), *clip)
    x_adv, queries = square(linear, x, eps=eps, max_queries=max_queries, seed=seed,
                            clip_min=clip[0], clip_max=clip[1], return_queries=True)
    x_adv = x_adv.numpy()
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= clip[0] and x_adv.max() <= clip[1]
    assert np.abs(x_adv - x).max() <= eps + 1e-6
    assert queries.numpy().max() <= max_queries


def test_stripe_start_is_two_queries(linear):
    """With 2 queries the result is the vertical-stripe start: one sign per column."""
    x = inputs(8)
    x_adv, queries = square(linear, x, eps=0.04, max_queries=2, return_queries=True)
    delta = x_adv.numpy() - x
    np.testing.assert_array_equal(queries.numpy(), 2)
    np.testing.assert_allclose(np.abs(delta), 0.04, atol=1e-6)  # x in (0.05, 0.95)
    np.testing.assert_allclose(delta, np.repeat(delta[:, :1], HEIGHT, axis=1), atol=1e-6)


def test_schedule_halves_p_at_the_reference_fractions():
    # Reference checkpoints out of 10,000: 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000.
    expected = {0: 0.8, 10: 0.8, 11: 0.4, 50: 0.4, 51: 0.2, 500: 0.1, 501: 0.05,
                8000: 0.8 / 256, 8001: 0.8 / 512, 9999: 0.8 / 512}
    for iteration, p in expected.items():
        np.testing.assert_allclose(float(p_schedule(0.8, iteration, 10000)), p, rtol=1e-6)
    # Scaled to the budget: 1,000 queries pass checkpoint 10 (of 10,000) after iteration 1.
    np.testing.assert_allclose(float(p_schedule(0.8, 1, 1000)), 0.8)
    np.testing.assert_allclose(float(p_schedule(0.8, 2, 1000)), 0.4)
    # MNIST: round(sqrt(0.8 * 784)) = 25; never the whole image, never below 1.
    assert int(square_side(0.8, 28, 28)) == 25
    assert int(square_side(1.0, 28, 28)) == 27
    assert int(square_side(1e-6, 28, 28)) == 1


def test_deterministic_per_seed(linear):
    x = inputs(6)
    kwargs = dict(eps=0.05, max_queries=20)
    first = square(linear, x, seed=3, **kwargs).numpy()
    np.testing.assert_array_equal(first, square(linear, x, seed=3, **kwargs).numpy())
    assert not np.array_equal(first, square(linear, x, seed=4, **kwargs).numpy())


def test_succeeds_on_easy_linear_model(linear):
    x = inputs(32)
    labels = predicted(linear, x)
    x_adv, queries = square(linear, x, eps=0.3, max_queries=500, return_queries=True)
    success = predicted(linear, x_adv) != labels
    assert success.all()
    assert queries.numpy().max() < 500  # every sample stopped on success


def test_breaks_masked_gradients_where_fgsm_and_pgd_fail(masked):
    x = inputs(32)
    labels = predicted(masked, x)
    error = lambda x_adv: np.mean(predicted(masked, x_adv) != labels)
    assert error(fgsm(masked, x, eps=0.3)) == 0.0
    assert error(pgd(masked, x, eps=0.3, eps_iter=0.05, nb_iter=10, rand_init=False)) == 0.0
    assert error(square(masked, x, eps=0.3, max_queries=500)) == 1.0


def test_already_misclassified_costs_one_query(linear):
    x = inputs(10)
    labels = predicted(linear, x)
    y = labels.copy()
    y[:4] = (labels[:4] + 1) % NUM_CLASSES  # the model already disagrees with these
    x_adv, queries = square(linear, x, eps=0.3, y=y, max_queries=50, return_queries=True)
    np.testing.assert_array_equal(queries.numpy()[:4], 1)
    np.testing.assert_array_equal(x_adv.numpy()[:4], x[:4])
    assert np.all(queries.numpy()[4:] >= 2)


def test_per_sample_stop_and_batch_independence(linear):
    """Finished samples stop counting; a sample's run does not depend on the others."""
    x = inputs(16, seed=2)
    x_adv, queries = square(linear, x, eps=0.1, max_queries=40, return_queries=True)
    queries = queries.numpy()
    labels = predicted(linear, x)
    stopped = queries < 40
    assert stopped.any() and not stopped.all()
    assert np.all(predicted(linear, x_adv)[stopped] != labels[stopped])
    assert np.all(predicted(linear, x_adv)[~stopped] == labels[~stopped])
    part, part_queries = square(linear, x[:5], eps=0.1, max_queries=40, return_queries=True)
    np.testing.assert_array_equal(part.numpy(), x_adv.numpy()[:5])
    np.testing.assert_array_equal(part_queries.numpy(), queries[:5])


def test_rank3_and_multichannel_inputs(linear):
    x = inputs(8, channels=0)
    x_adv = square(linear, x, eps=0.3, max_queries=300).numpy()
    assert x_adv.shape == x.shape
    assert np.all(predicted(linear, x_adv) != predicted(linear, x))
    rgb = LinearModel(np.random.default_rng(5).normal(size=(HEIGHT * WIDTH * 3, NUM_CLASSES)),
                      np.zeros(NUM_CLASSES))
    x = inputs(8, channels=3)
    x_adv = square(rgb, x, eps=0.2, max_queries=300).numpy()
    assert np.abs(x_adv - x).max() <= 0.2 + 1e-6
    assert np.all(predicted(rgb, x_adv) != predicted(rgb, x))


def test_outlier_class_is_never_the_success():
    """The outlier logit (index 4) is easy to raise; success must be a real class."""
    weights = _weights(seed=6, num_classes=NUM_CLASSES + 1)
    weights[:, 4] = 0.3 * np.abs(weights[:, :4]).max(axis=1)  # every pixel pushes towards class 4
    model = LinearModel(weights, np.array([0, 0, 0, 0, -8.0]))
    x = inputs(24, seed=3)
    logits = np.asarray(model(x))
    assert np.all(np.argmax(logits, axis=1) != 4)
    real = np.argmax(logits[:, :4], axis=1)
    x_adv, queries = square(model, x, eps=0.25, max_queries=300, outlier_class=4,
                            return_queries=True)
    adv = np.asarray(model(x_adv))
    top = np.argmax(adv, axis=1)
    stopped = queries.numpy() < 300
    assert stopped.any()
    assert np.all(top[stopped] != 4) and np.all(top[stopped] != real[stopped])
    # Without the outlier class the same search counts class 4 as a success.
    plain = np.argmax(np.asarray(model(square(model, x, eps=0.25, max_queries=300))), axis=1)
    assert np.any(plain == 4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps=-0.1), "eps=-0.1"),
    (dict(eps=0.1, p_init=0.0), "p_init=0.0"),
    (dict(eps=0.1, p_init=1.5), "p_init=1.5"),
    (dict(eps=0.1, max_queries=0), "max_queries=0"),
    (dict(eps=0.1, max_queries=2.5), "max_queries=2.5"),
    (dict(eps=0.1, seed=1.5), "seed=1.5"),
    (dict(eps=0.1, seed=None), "seed=None"),
    (dict(eps=0.1, clip_min=1.0, clip_max=0.0), "clip_min=1.0"),
    (dict(eps=0.1, outlier_class=7), "outlier_class=7"),
])
def test_bad_arguments_raise(linear, kwargs, message):
    with pytest.raises(ValueError, match=message):
        square(linear, inputs(2), **kwargs)


def test_non_image_inputs_raise(linear):
    flat = inputs(2).reshape(2, -1)
    with pytest.raises(ValueError, match="expected images"):
        square(linear, flat, eps=0.1)
