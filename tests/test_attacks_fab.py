"""FAB: the box-constrained projection by hand and by grid search, the first step and the
minimal norm on linear models (analytic distances), the fixed-eps contract, FAB-T and
targeted runs, the outlier class, bad arguments, and a trained-MLP check against APGD."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (LinearModel, linear_boundaries, outlier_trap, random_linear,
                      sample_mlp, uniform_inputs)
from keras_edd.attacks.apgd import apgd
from keras_edd.attacks.fab import boundary_projection, fab, random_start

NUM_FEATURES = 12
NUM_CLASSES = 4
WIDE = dict(clip_min=-100.0, clip_max=100.0)  # a box that never binds


@pytest.fixture(scope="module")
def linear():
    return random_linear(NUM_FEATURES, NUM_CLASSES)


inputs = uniform_inputs


def closest_boundary(model, x, norm, classes=None):
    """Per input the analytic distance to a boundary Z_k = Z_y of a linear model (no box;
    conftest.linear_boundaries) and the closest point's step: gap / ||w||_1 * sign(w)
    (L_inf) or gap / ||w||_2^2 * w (L2), w = w_k - w_y. `classes` [n] picks k, else the
    nearest k != y. Returns (distance [n], step [n, d], k [n], y [n])."""
    distances, labels, gaps, differences = linear_boundaries(model, x, norm)
    rows = np.arange(len(x))
    if classes is None:
        classes = distances.argmin(1)
    w = differences[:, rows, classes].T
    gap = gaps[rows, classes][:, None]
    step = (gap / np.abs(w).sum(1, keepdims=True) * np.sign(w) if norm == "linf"
            else gap / (w ** 2).sum(1, keepdims=True) * w)
    return distances[rows, classes], step, classes, labels


def lengths(delta, norm):
    delta = np.asarray(delta, np.float64).reshape(len(delta), -1)
    return np.abs(delta).max(1) if norm == "linf" else np.sqrt((delta ** 2).sum(1))


# ------------------------------------------------------------------ the projection

@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_by_hand(norm):
    """t = (0.9, 0.5), hyperplane z1 + z2 = 1.8. Without the box both norms step
    (0.2, 0.2); in [0, 1] z1 can rise by 0.1 only, so the rest goes to z2: (0.1, 0.3),
    for L_inf and L2 alike (the L2 KKT point clip(mu w) with mu = 0.3)."""
    points, weights = tf.constant([[0.9, 0.5]]), tf.constant([[1.0, 1.0]])
    project = lambda offset, **box: boundary_projection(
        points, weights, tf.constant([offset]), norm, **box).numpy()
    np.testing.assert_allclose(project(1.8, clip_min=-9.0, clip_max=9.0), [[0.2, 0.2]],
                               atol=1e-6)
    np.testing.assert_allclose(project(1.8, clip_min=0.0, clip_max=1.0), [[0.1, 0.3]],
                               atol=1e-6)
    # From the other side: z1 + z2 = 1.0 needs -0.4, the box does not bind.
    np.testing.assert_allclose(project(1.0, clip_min=0.0, clip_max=1.0), [[-0.2, -0.2]],
                               atol=1e-6)
    # Out of reach (z1 + z2 = 5 > 2): every coordinate at its upper bound.
    np.testing.assert_allclose(project(5.0, clip_min=0.0, clip_max=1.0), [[0.1, 0.5]],
                               atol=1e-6)
    # On the hyperplane already: no step.
    np.testing.assert_allclose(project(1.4, clip_min=0.0, clip_max=1.0), [[0.0, 0.0]],
                               atol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_matches_a_grid_search(norm):
    """Random hyperplanes in 3-D through a box that binds: the projection is on the
    hyperplane, in the box, and no grid point of hyperplane and box is shorter."""
    rng = np.random.default_rng(2)
    grid = np.linspace(0.0, 1.0, 801)
    z1, z2 = (values.ravel() for values in np.meshgrid(grid, grid))
    binding = 0
    for case in range(6):
        t = rng.uniform(0.1, 0.9, 3)
        w = rng.normal(size=3)
        w[2] = np.sign(w[2]) * max(abs(w[2]), 0.5)
        if case % 2:  # a random hyperplane through the box
            b = w @ rng.uniform(0.0, 1.0, 3)
        else:  # t near the face z1 = 1, the hyperplane steeply beyond it
            t[0], w[0] = 0.97, 4.0
            reach = np.maximum(w * (1 - t), -w * t).sum()  # the most w . delta can gain
            b = w @ t + rng.uniform(0.4, 0.8) * reach
        delta = boundary_projection(tf.constant([t], tf.float32), tf.constant([w], tf.float32),
                                    tf.constant([b], tf.float32), norm, 0.0, 1.0).numpy()[0]
        z = t + delta
        np.testing.assert_allclose(w @ z, b, atol=1e-5)
        assert z.min() >= -1e-6 and z.max() <= 1 + 1e-6
        z3 = (b - w[0] * z1 - w[1] * z2) / w[2]
        inside = (z3 >= 0) & (z3 <= 1)
        candidates = np.stack([z1, z2, z3], 1)[inside] - t
        best = lengths(candidates, norm).min()
        found = lengths(delta[None], norm)[0]
        # The grid's spacing (1/800, times |w_i / w_3| <= ~6 on z3) bounds its error.
        assert found <= best + 1e-6
        assert found >= best - 0.01
        free = boundary_projection(tf.constant([t], tf.float32), tf.constant([w], tf.float32),
                                   tf.constant([b], tf.float32), norm, -9.0, 9.0).numpy()[0]
        binding += not np.allclose(free, delta, atol=1e-4)
    assert binding >= 2  # the box changed the answer in some of the cases


# ------------------------------------------------------------------ linear models

@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_first_step_lands_on_the_closest_boundary(linear, norm):
    """From x the first step goes to the nearest linearised boundary point, exact for a
    linear model, overshot by eta: x + eta * delta*, with ||delta*|| the analytic
    distance min_k |Z_y - Z_k| / ||w_y - w_k||_q. It is adversarial, so one iteration
    finds it and (eps large, early stop) the input is done."""
    x = inputs(16)
    distance, step, _, _ = closest_boundary(linear, x, norm)
    result = fab(linear, x, eps=50.0, norm=norm, nb_iter=1, seed=0, return_details=True,
                 **WIDE)
    assert result.success.all()
    np.testing.assert_allclose(result.norm / 1.05, distance, rtol=1e-4)
    np.testing.assert_allclose((result.x_min.numpy() - x).reshape(len(x), -1), 1.05 * step,
                               rtol=1e-3, atol=1e-5)
    np.testing.assert_array_equal(result.iterations, 1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_minimal_norm_approaches_the_analytic_minimum(linear, norm):
    """Run to the end (early_stop=False): the smallest adversarial found is never below
    the analytic minimum over classes (no adversarial is) and within 1% of it."""
    x = inputs(16)
    distance, _, _, labels = closest_boundary(linear, x, norm)
    eps = 0.15 if norm == "linf" else 0.4
    result = fab(linear, x, eps=eps, norm=norm, nb_iter=50, early_stop=False, seed=0,
                 return_details=True, **WIDE)
    assert np.all(result.norm >= distance * (1 - 1e-5))
    np.testing.assert_allclose(result.norm, distance, rtol=0.01)
    np.testing.assert_array_equal(result.iterations, 50)
    assert (np.asarray(linear(result.x_min)).argmax(1) != labels).all()
    # At eps, x_adv is x_min where its norm is within eps, x elsewhere.
    within = result.norm <= eps
    assert within.any() and not within.all()
    np.testing.assert_array_equal(result.success, within)
    np.testing.assert_array_equal(result.x_adv.numpy()[~within], x[~within])
    np.testing.assert_array_equal(result.x_adv.numpy()[within], result.x_min.numpy()[within])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_t_heads_for_its_target(linear, norm):
    """FAB-T with one target: the first step goes to the boundary between y and the
    real class ranked second on x, whether or not it is the nearest."""
    x = inputs(16)
    logits = np.asarray(linear(x))
    second = np.argsort(-logits, axis=1)[:, 1]
    distance, step, _, _ = closest_boundary(linear, x, norm, classes=second)
    result = fab(linear, x, eps=50.0, norm=norm, nb_iter=1, nb_targets=1, seed=0,
                 return_details=True, **WIDE)
    assert result.success.all()
    np.testing.assert_allclose(result.norm / 1.05, distance, rtol=1e-4)
    np.testing.assert_allclose((result.x_min.numpy() - x).reshape(len(x), -1), 1.05 * step,
                               rtol=1e-3, atol=1e-5)
    # Over all three targets, run to the end, FAB-T finds the nearest boundary too.
    nearest, _, _, _ = closest_boundary(linear, x, norm)
    full = fab(linear, x, eps=0.05, norm=norm, nb_iter=50, nb_targets=9, early_stop=False,
               seed=0, return_details=True, **WIDE)
    np.testing.assert_allclose(full.norm, nearest, rtol=0.01)
    np.testing.assert_array_equal(full.iterations, 3 * 50)


@pytest.mark.parametrize("norm, expected, unconstrained", [
    ("linf", 0.3, 0.2), ("l2", np.sqrt(0.1), np.sqrt(0.08))])
def test_minimal_norm_with_the_box_active(norm, expected, unconstrained):
    """Two classes, Z_1 - Z_0 = z1 + z2 - 1.8, x = (0.9, 0.5) in [0, 1]^2: the nearest
    boundary point (1.1, 0.7) is outside the box, the nearest inside is (1.0, 0.8)
    (by hand, as in test_projection_by_hand). FAB finds it, not the shorter one."""
    model = LinearModel([[0.0, 1.0], [0.0, 1.0]], [0.0, -1.8])
    x = np.array([[0.9, 0.5]], np.float32)
    result = fab(model, x, eps=1.0, norm=norm, nb_iter=50, early_stop=False, seed=0,
                 return_details=True)
    assert result.success.all()
    assert result.norm[0] >= expected * (1 - 1e-5) > unconstrained
    np.testing.assert_allclose(result.norm, [expected], rtol=0.01)
    np.testing.assert_allclose(result.x_min.numpy(), [[1.0, 0.8]], atol=0.01)


# ------------------------------------------------------------------ the contract

@settings(max_examples=3, deadline=None)  # each example traces anew
@given(eps=st.floats(0.0, 0.5), nb_iter=st.integers(0, 6), norm=st.sampled_from(["linf", "l2"]),
       nb_targets=st.sampled_from([None, 2]), restarts=st.integers(1, 2),
       clip=st.sampled_from([(0.0, 1.0), (-1.0, 2.0), (0.2, 0.8)]))
def test_box_and_eps_ball(linear, eps, nb_iter, norm, nb_targets, restarts, clip):
    x = np.clip(inputs(6, low=0.05, high=0.95), *clip)
    result = fab(linear, x, eps=eps, nb_iter=nb_iter, norm=norm, nb_targets=nb_targets,
                 nb_restarts=restarts, seed=0, clip_min=clip[0], clip_max=clip[1],
                 return_details=True)
    x_adv = result.x_adv.numpy()
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    for points in (x_adv, result.x_min.numpy()):
        assert points.min() >= clip[0] and points.max() <= clip[1]
    assert lengths(x_adv - x, norm).max() <= eps * (1 + 1e-5) + 1e-6
    found = np.isfinite(result.norm)
    np.testing.assert_allclose(lengths(result.x_min.numpy() - x, norm)[found],
                               result.norm[found], rtol=1e-5, atol=1e-6)


def test_eps_zero_returns_x(linear):
    x = inputs(5)
    np.testing.assert_array_equal(fab(linear, x, eps=0.0, seed=0).numpy(), x)
    result = fab(linear, x, eps=0.0, nb_iter=5, seed=0, return_details=True)
    np.testing.assert_array_equal(result.x_adv.numpy(), x)
    assert not result.success.any()
    assert (result.norm > 0).all()  # the minimal norms are still reported


def test_y_none_is_the_models_prediction(linear):
    x = inputs(8)
    predicted = np.asarray(linear(x)).argmax(1)
    kwargs = dict(eps=0.1, nb_iter=10, seed=0, return_details=True)
    own, given_y = fab(linear, x, **kwargs), fab(linear, x, y=predicted, **kwargs)
    np.testing.assert_array_equal(own.x_adv.numpy(), given_y.x_adv.numpy())
    np.testing.assert_array_equal(own.norm, given_y.norm)


def test_already_misclassified_inputs_are_not_attacked(linear):
    x = inputs(8)
    labels = np.asarray(linear(x)).argmax(1)
    wrong = labels.copy()
    wrong[:3] = (labels[:3] + 1) % NUM_CLASSES
    result = fab(linear, x, y=wrong, eps=0.05, nb_iter=10, seed=0, return_details=True)
    assert result.success[:3].all() and not result.iterations[:3].any()
    np.testing.assert_array_equal(result.norm[:3], 0.0)
    np.testing.assert_array_equal(result.x_adv.numpy()[:3], x[:3])


def test_early_stop_and_fab_t_runs_once_per_target(linear):
    x = inputs(32)
    result = fab(linear, x, eps=0.15, nb_iter=10, nb_targets=9, seed=0, return_details=True)
    # 4 classes: at most 3 targets, so an input never broken costs 3 * nb_iter.
    assert result.success.any() and not result.success.all()
    np.testing.assert_array_equal(result.iterations[~result.success], 30)
    # A broken input stopped at its first point within eps.
    assert (result.iterations[result.success] < 30).all()
    distance, _, _, _ = closest_boundary(linear, x, "linf")
    assert not result.success[distance > 0.15].any()


def test_targeted_reaches_its_target():
    """Three classes: from x = 0.5 class 2 lies beyond class 1 along the only
    direction that raises it, so crossing the boundary to the nearest class is not
    enough; targeted FAB follows t against whichever class is on top."""
    weights = np.zeros((2, 3))
    weights[0] = [0.0, 1.0, 2.0]
    model = LinearModel(weights, [0.0, -0.5, -1.25])
    x = np.random.default_rng(0).uniform(0.4, 0.45, (8, 2)).astype(np.float32)
    assert (np.asarray(model(x)).argmax(1) == 0).all()
    targets = np.full(8, 2)
    result = fab(model, x, y=targets, targeted=True, eps=0.6, nb_iter=20, seed=0,
                 return_details=True)
    assert result.success.all()
    np.testing.assert_array_equal(np.asarray(model(result.x_adv)).argmax(1), targets)
    # Z_2 > Z_0 and Z_2 > Z_1 need z0 > 0.75: the norm is at least 0.75 - x0.
    assert np.all(result.norm >= 0.75 - x[:, 0] - 1e-5)
    untargeted = fab(model, x, eps=0.6, nb_iter=1, seed=0)
    assert (np.asarray(model(untargeted)).argmax(1) == 1).all()


@pytest.mark.parametrize("nb_targets", [None, 9])
def test_adaptive_never_counts_the_outlier_class(nb_targets):
    """Plain FAB lands in "detected"; the adaptive one never counts it. FAB-T, heading
    for each real class in turn, finds class 2 for most inputs. Untargeted FAB
    linearises max(Z_y, Z_out) and keeps heading for class 1, whose boundary is the
    nearest on either side of the kink: it may fail here, but never claims the trap."""
    model = outlier_trap()
    x = inputs(24, seed=4, low=0.48, high=0.52)
    labels = np.asarray(model(x))[:, :4].argmax(1)
    kwargs = dict(eps=0.3, nb_iter=20, nb_targets=nb_targets, seed=0, early_stop=False,
                  return_details=True)
    plain = fab(model, x, **kwargs)
    assert (np.asarray(model(plain.x_adv)).argmax(1) == 4).sum() >= 10  # the trap works
    adaptive = fab(model, x, outlier_class=4, **kwargs)
    predicted = np.asarray(model(adaptive.x_adv)).argmax(1)
    np.testing.assert_array_equal(adaptive.success, (predicted != labels) & (predicted != 4))
    at_min = np.asarray(model(adaptive.x_min)).argmax(1)
    found = np.isfinite(adaptive.norm)
    assert not (at_min[found] == 4).any() and not (at_min[found] == labels[found]).any()
    if nb_targets is not None:
        assert adaptive.success.mean() > 0.9


def test_restarts_are_seeded(linear):
    x = inputs(6)
    run = lambda seed: fab(linear, x, eps=0.05, nb_iter=5, nb_restarts=3, early_stop=False,
                           seed=seed, return_details=True)
    first, again = run(3), run(3)
    np.testing.assert_array_equal(first.x_min.numpy(), again.x_min.numpy())
    # Restarts 1 and 2 start on spheres of radius min(norm, eps) / 2 = eps / 2 here.
    radius = np.full(len(x), 0.025, np.float32)
    starts = [random_start(tf.constant(x), radius, "linf", seed, 1, 0.0, 1.0).numpy()
              for seed in (3, 3, 4)]
    np.testing.assert_array_equal(starts[0], starts[1])
    assert not np.array_equal(starts[0], starts[2])
    np.testing.assert_allclose(lengths(starts[0] - x, "linf"), radius, rtol=1e-5)
    np.testing.assert_array_equal(first.iterations, 3 * 5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps=-0.1), "eps=-0.1"), (dict(eps=0.1, norm="l1"), "norm='l1'"),
    (dict(eps=0.1, nb_targets=0), "nb_targets=0"),
    (dict(eps=0.1, nb_targets=2.5), "nb_targets=2.5"),
    (dict(eps=0.1, nb_targets=3, targeted=True, y=[1, 2]), "nb_targets=3"),
    (dict(eps=0.1, nb_iter=-1), "nb_iter=-1"), (dict(eps=0.1, nb_restarts=0), "nb_restarts=0"),
    (dict(eps=0.1, alpha_max=1.5), "alpha_max=1.5"), (dict(eps=0.1, eta=0.9), "eta=0.9"),
    (dict(eps=0.1, beta=0.0), "beta=0.0"), (dict(eps=0.1, early_stop="yes"), "early_stop"),
    (dict(eps=0.1, targeted=True), "needs target labels y"),
    (dict(eps=0.1, y=[0, 1, 2]), r"y has shape \(3,\)"),
    (dict(eps=0.1, y=[0, 7]), "y contains 0..7"),
    (dict(eps=0.1, y=[0.5, np.nan]), "non-finite"),
    (dict(eps=0.1, outlier_class=4), "outlier_class=4"),
    (dict(eps=0.1, clip_min=1.0, clip_max=0.0), "clip_min=1.0")])
def test_bad_arguments_raise(linear, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        fab(linear, inputs(2), seed=0, **kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_close_to_apgd_on_a_trained_model():
    """A 784-32-10 MLP trained for 3 epochs on 1,000 bundled digits. Every digit APGD-CE
    breaks at eps = 0.05 has an adversarial point no farther than that from FAB (within
    10%), and FAB-T within eps breaks at least as many as APGD-CE does."""
    from keras_edd import data
    model, sample = sample_mlp()
    x = data.to_float(sample.x_test[:32])
    eps = 0.05
    broken = apgd(model, x, eps=eps, nb_iter=20, seed=0, return_details=True).success
    assert 5 <= broken.sum() < len(x)
    minimal = fab(model, x, eps=eps, nb_iter=20, early_stop=False, seed=0,
                  return_details=True)
    assert np.all(minimal.norm[broken] <= 1.1 * eps)
    fab_t = fab(model, x, eps=eps, nb_iter=20, nb_targets=9, seed=0, return_details=True)
    predicted = np.asarray(model(x)).argmax(1)
    np.testing.assert_array_equal(fab_t.success,
                                  np.asarray(model(fab_t.x_adv)).argmax(1) != predicted)
    assert fab_t.success.sum() >= broken.sum()
