"""L2 Square Attack: properties (the ball, the box, determinism, success on an easy model)."""

import numpy as np
import pytest

from conftest import LinearModel
from keras_edd.attacks.square_l2 import eta, square_l2, square_side


def problem(n=12, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(16, 4)).astype(np.float32)
    x = rng.uniform(0.3, 0.7, size=(n, 4, 4, 1)).astype(np.float32)
    y = (x.reshape(n, -1) @ weights).argmax(axis=1)
    return LinearModel(weights), weights, x, y


def l2_norms(a, b):
    return np.sqrt(((np.asarray(a, np.float64) - b) ** 2).reshape(len(b), -1).sum(axis=1))


def test_eta_is_a_unit_pattern_of_opposite_halves():
    for seed in range(4):  # both orientations get drawn
        pattern = eta(5, np.random.default_rng(seed))
        np.testing.assert_allclose((pattern ** 2).sum(), 1.0, rtol=1e-12)
        rows = np.all(pattern[:2] > 0) and np.all(pattern[2:] < 0)
        cols = np.all(pattern[:, :2] > 0) and np.all(pattern[:, 2:] < 0)
        assert rows != cols
    assert [square_side(p, 28, 28) for p in (0.8, 0.1, 0.001)] == [25, 9, 3]
    assert square_side(0.8, 4, 4) == 4


def test_stays_in_the_ball_and_box_and_is_deterministic():
    model, _, x, y = problem()
    first = np.asarray(square_l2(model, x, eps=0.5, y=y, max_queries=200, seed=3))
    again = np.asarray(square_l2(model, x, eps=0.5, y=y, max_queries=200, seed=3))
    np.testing.assert_array_equal(first, again)
    assert np.all(l2_norms(first, x) <= 0.5 + 1e-5)
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(np.asarray(square_l2(model, x, eps=0.0, y=y)), x)


def test_breaks_an_easy_linear_model_and_leaves_misclassified_inputs():
    model, weights, x, y = problem(n=10)
    # Closed form: with an L2 ball of 1.5 every input here can be moved across a boundary.
    gaps = [min(x[i].ravel() @ (weights[:, y[i]] - weights[:, j])
                - 1.5 * np.linalg.norm(weights[:, y[i]] - weights[:, j])
                for j in range(4) if j != y[i]) for i in range(len(x))]
    assert max(gaps) < 0
    adv = np.asarray(square_l2(model, x, eps=1.5, y=y, max_queries=1000, seed=0))
    predicted = (adv.reshape(len(x), -1) @ weights).argmax(axis=1)
    assert np.mean(predicted != y) >= 0.9
    wrong = (y + 1) % 4  # already misclassified: returned as x
    np.testing.assert_array_equal(np.asarray(square_l2(model, x, eps=1.5, y=wrong)), x)


@pytest.mark.parametrize("kwargs, message", [(dict(eps=-1.0), "^eps=-1.0"),
                                             (dict(eps=1.0, max_queries=0), "^max_queries=0"),
                                             (dict(eps=1.0, p_init=0.0), "^p_init=0.0")])
def test_bad_arguments_raise(kwargs, message):
    model, _, x, y = problem(n=2)
    with pytest.raises(ValueError, match=message):
        square_l2(model, x, y=y, **kwargs)
