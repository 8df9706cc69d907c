"""keras_edd.robustness_curve: eps* per digit, the curve over an eps grid, its figure.

On a linear model Z = W^T x + b the smallest perturbation that makes class j beat y
is known in closed form: m_j / ||w_y - w_j||_q, m_j = Z_y - Z_j the clean margin and
q the dual norm (1 for L_inf, 2 for L2), as long as the box [0, 1] does not bind
(x in [0.3, 0.7] and distances below 0.3 here). FAB lands within 1 % of it.
"""

import json

import numpy as np
import pytest

import keras_edd
from conftest import LinearModel, linear_boundaries, random_linear, uniform_inputs
from keras_edd.reporting.robustness_curve_figure import plot_robustness_curves
from keras_edd.robustness import Rate, RobustnessCurve

SHAPE = (4, 4, 1)

# The sanity checks warn (e.g. zero gradients on a constant model); the result keeps them.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def quiet_curve(*args, **kwargs):
    return keras_edd.robustness_curve(*args, **dict(kwargs, progress=False))


def nearest_boundary(model, x, norm):
    return linear_boundaries(model, x, norm)[0].min(axis=1)


@pytest.fixture(scope="module")
def linear():
    """(model, x, the model's labels y, labels with four digits wrong when clean)."""
    model = random_linear(num_features=16, num_classes=4, seed=0)
    x = uniform_inputs(40, shape=SHAPE)
    y = np.asarray(model(x)).argmax(axis=1)
    y_given = y.copy()
    y_given[:4] = (y[:4] + 1) % 4
    return model, x, y, y_given


@pytest.fixture(scope="module")
def curves(linear):
    """The default curve of `linear` (FAB and FAB-T, labels y_given) per norm."""
    model, x, _, y_given = linear
    return {norm: quiet_curve(model, x, y_given, norm=norm) for norm in ("linf", "l2")}


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_eps_star_is_the_distance_to_the_linear_boundary(linear, curves, norm):
    model, x, y, y_given = linear
    curve = curves[norm]
    distance = nearest_boundary(model, x, norm)
    assert distance.max() < 0.3  # the box never binds
    wrong = y_given != y
    # A digit wrong when clean has eps* = 0; the others are at the boundary, from above.
    np.testing.assert_array_equal(curve.eps_star[wrong], 0.0)
    assert all(curve.found_by[i] == "clean" for i in np.flatnonzero(wrong))
    right = ~wrong
    np.testing.assert_allclose(curve.eps_star[right], distance[right], rtol=0.01)
    assert np.all(curve.eps_star[right] >= distance[right] * (1 - 1e-4))
    assert {curve.found_by[i] for i in np.flatnonzero(right)} <= {"fab", "fab_t"}
    # x_adv is adversarial and of norm eps*.
    predicted = np.asarray(model(curve.x_adv[right])).argmax(axis=1)
    assert np.all(predicted != y[right])
    delta = (curve.x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    np.testing.assert_allclose(size, curve.eps_star, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_curve_is_read_off_eps_star(linear, curves, norm):
    x = linear[1]
    curve = curves[norm]
    n = len(x)
    # Default grid: 0 to the largest eps* found, where no digit is left robust.
    assert curve.eps_grid[0] == 0 and curve.eps_grid[-1] == pytest.approx(curve.eps_star.max())
    ks = [rate.k for rate in curve.robust_accuracy]
    assert ks == sorted(ks, reverse=True) and ks[0] == curve.clean_accuracy.k == n - 4
    assert ks[-1] == 0
    for eps, rate in zip(curve.eps_grid, curve.robust_accuracy):
        assert rate == Rate(int((curve.eps_star > eps * (1 + 1e-6) + 1e-5).sum()), n)
    # The median eps*: the smallest eps at which at most half of the digits are robust.
    ordered = np.sort(curve.eps_star)
    assert curve.median_eps == ordered[n // 2 - 1]
    assert (curve.eps_star > curve.median_eps).sum() <= n / 2
    assert (curve.eps_star >= curve.median_eps).sum() > n / 2


def test_a_fixed_radius_attack_tightens_the_curve_at_grid_points(linear, curves):
    """APGD-T at eps between the exact distance d and FAB's answer (d < eps < eps*_FAB)
    finds a point in the ball: the digit counts as broken at that grid point."""
    model, x, y, y_given = linear
    distance = nearest_boundary(model, x, "linf")
    fab = curves["linf"].eps_star
    between = np.flatnonzero((y == y_given) & (fab > distance * 1.003))[:5]
    assert len(between) == 5
    grid = [0.0, *(distance[between] * 1.002)]
    tightened = quiet_curve(model, x[between], y[between], norm="linf",
                            attacks=["fab", "apgd_t"], eps_grid=grid)
    assert tightened.attacks == ("fab", "apgd_t")
    assert tightened.found_by == ("apgd_t",) * 5
    assert np.all(tightened.eps_star <= distance[between] * 1.002 + 1e-5)
    # At its grid point each digit is broken; FAB and FAB-T alone left it robust there.
    assert np.all(fab[between] > grid[1:])
    order = np.argsort(grid)
    np.testing.assert_allclose(tightened.eps_grid, np.asarray(grid)[order])
    for eps, rate in zip(tightened.eps_grid, tightened.robust_accuracy):
        assert rate.k == int((tightened.eps_star > eps * (1 + 1e-6) + 1e-5).sum())
        assert rate.k < 5 or eps == 0
    assert [rate.k for rate in tightened.robust_accuracy] == [5, 4, 3, 2, 1, 0]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_outlier_class_makes_the_attacks_adaptive(norm):
    """With an outlier class, moving into it is no win: eps* is the distance to the
    nearest real class boundary, not to the (nearer) outlier boundary."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(16, 3))
    x = uniform_inputs(200, seed=0, shape=SHAPE)
    # Outlier logit 3 = class 0's plus a random direction, just below it on average.
    weights = np.concatenate([real, real[:, :1] + 0.5 * rng.normal(size=(16, 1))], axis=1)
    model = LinearModel(weights, -(x.reshape(200, -1).mean(axis=0) @ weights) - [0, 0, 0, 0.1])
    distances, y, _, differences = linear_boundaries(model, x, norm)  # differences: w_k - w_y
    nearest_real = distances[:, :3].argmin(axis=1)
    rows = np.arange(len(x))
    # The nearest real boundary point (closed form), where the outlier must stay below.
    toward = differences[:, rows, nearest_real].T
    step = (np.sign(toward) if norm == "linf"
            else toward / np.linalg.norm(toward, axis=1, keepdims=True))
    at_boundary = np.asarray(model(x + (distances[rows, nearest_real][:, None]
                                        * step).reshape(x.shape)))
    keep = ((y != 3)  # right when clean: a real class on top of all 4 logits
            & (distances[:, 3] < 0.8 * distances[:, :3].min(axis=1))  # the outlier is nearer
            & (at_boundary[rows, 3] < at_boundary[rows, nearest_real] - 0.05)
            & (distances[:, :3].min(axis=1) < 0.25))
    assert keep.sum() >= 5
    x, y, distances = x[keep], y[keep], distances[keep]
    plain = quiet_curve(model, x, y, norm=norm)
    adaptive = quiet_curve(model, x, y, norm=norm, outlier_class=3)
    assert adaptive.outlier_class == 3 and plain.outlier_class is None
    np.testing.assert_allclose(plain.eps_star, distances.min(axis=1), rtol=0.01)
    np.testing.assert_allclose(adaptive.eps_star, distances[:, :3].min(axis=1), rtol=0.01)
    # The adaptive attacker's point is a real class other than y, not the outlier class.
    predicted = np.asarray(model(adaptive.x_adv)).argmax(axis=1)
    assert np.all((predicted != y) & (predicted != 3))


def test_result_is_frozen_and_serialises(curves):
    curve = curves["linf"]
    assert isinstance(curve, RobustnessCurve)
    # The curve is shared by the module's tests: the attempted writes change nothing.
    with pytest.raises(Exception):
        curve.eps_star[0] = curve.eps_star[0]
    with pytest.raises(Exception):
        curve.n = curve.n
    data = json.loads(curve.to_json())
    assert [point["eps"] for point in data["curve"]] == pytest.approx(np.asarray(curve.eps_grid).tolist())
    assert len(data["curve"]) > 2
    assert [point["k"] for point in data["curve"]] == [r.k for r in curve.robust_accuracy]
    assert data["eps_star"] == pytest.approx(curve.eps_star.tolist())
    assert data["median_eps"] == pytest.approx(curve.median_eps)
    assert data["attacks"] == ["fab", "fab_t"] and data["settings"]["fab_t"]["nb_targets"] == 9
    text = curve.summary()
    assert "median eps*" in text and str(curve.robust_accuracy[1]) in text


def test_digits_never_broken_have_infinite_eps_star():
    """A constant model: no perturbation changes its answer; eps* = inf, JSON null."""
    model = LinearModel(np.zeros((16, 3)), [2.0, 0.0, 0.0])
    x = np.full((4, *SHAPE), 0.5, np.float32)
    y = np.array([0, 0, 0, 1])  # the last one is wrong when clean
    curve = quiet_curve(model, x, y, eps_grid=[0.0, 0.5])
    np.testing.assert_array_equal(curve.eps_star, [np.inf, np.inf, np.inf, 0.0])
    assert curve.found_by == (None, None, None, "clean")
    assert curve.median_eps == np.inf and [r.k for r in curve.robust_accuracy] == [3, 3]
    data = curve.to_dict()
    assert data["eps_star"] == [None, None, None, 0.0] and data["median_eps"] is None
    assert "more than half of the digits never broken" in curve.summary()
    assert any("gradients are exactly zero" in w for w in curve.warnings)


@pytest.mark.parametrize("kwargs, message", [
    (dict(norm="l1"), r"norm='l1'"),
    (dict(eps_grid=[0.1, -0.1]), r"eps_grid=-0\.1: allowed range"),
    (dict(eps_grid=[1.5]), r"eps_grid=1\.5: allowed range for norm='linf' is \[0, 1\]"),
    (dict(eps_grid=[]), r"eps_grid=\[\]: expected a non-empty list"),
    (dict(eps_grid=[0.1], eps_max=0.2), r"eps_grid and eps_max=0\.2: give one of them"),
    (dict(eps_max=0.0), r"eps_max=0\.0: must be > 0"),
    (dict(norm="l2", eps_max=5.0), r"eps_max=5\.0: allowed range for norm='l2'"),
    (dict(attacks=["apgd_ce"]), r"needs a minimum-norm attack, one of fab, fab_t"),
    (dict(attacks=["fab", "boom"]), r"unknown attack 'boom'"),
    (dict(attacks=["fab", "fab"]), r"'fab' is named twice"),
    (dict(attacks=[]), r"attacks=\[\]: expected 'standard', 'rand' or a non-empty list"),
    (dict(attacks=["fab", "fgsm"], norm="l2"), r"fgsm supports norm linf only"),
    (dict(outlier_class=7), r"outlier_class=7: allowed range is \[0, 3\]"),
    (dict(batch_size=0), r"batch_size=0"),
    (dict(progress="yes"), r"progress='yes'"),
])
def test_bad_arguments_raise_one_line(linear, kwargs, message):
    model, x, y, _ = linear
    with pytest.raises(ValueError, match=message) as raised:
        keras_edd.robustness_curve(model, x[:3], y[:3], **kwargs)
    assert "\n" not in str(raised.value)


def test_bad_labels_raise_as_in_evaluate(linear):
    model, x, y, _ = linear
    with pytest.raises(ValueError, match=r"y contains labels 0\.\.9: allowed range is \[0, 3\]"):
        keras_edd.robustness_curve(model, x[:3], np.array([0, 9, 1]), progress=False)
    with pytest.raises(ValueError, match=r"x holds n = 0 examples"):
        keras_edd.robustness_curve(model, x[:0], y[:0], progress=False)


def test_figure_shows_curves_with_bands_and_medians(linear, curves, tmp_path):
    model, x, _, y_given = linear
    shown = [curves["linf"], quiet_curve(model, x[:10], y_given[:10], eps_grid=[0, 0.05])]
    png = tmp_path / "curve.png"
    assert plot_robustness_curves(shown, str(png), labels=["all 40", "first 10"])
    assert png.stat().st_size > 10_000 and (tmp_path / "curve.pdf").stat().st_size > 1_000
    import matplotlib.image
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and min(image.shape[:2]) > 300
    assert plot_robustness_curves([], str(tmp_path / "none.png")) is False
    assert not (tmp_path / "none.png").exists()
    with pytest.raises(ValueError, match=r"curves of norms \['l2', 'linf'\]"):
        plot_robustness_curves([curves["linf"], curves["l2"]], str(tmp_path / "mixed.png"))


@pytest.mark.slow  # Square's 5,000 queries on the digits robust at a radius: ~20 s
def test_standard_is_fab_t_then_the_fixed_radius_attacks_at_each_grid_radius(linear):
    model, x, y, _ = linear
    grid = [0.0, 0.01, 0.03]
    fab_t = quiet_curve(model, x[:10], y[:10], eps_grid=grid, attacks=["fab_t"])
    standard = quiet_curve(model, x[:10], y[:10], eps_grid=grid, attacks="standard")
    assert standard.attacks == ("fab_t", "apgd_ce", "apgd_t", "square")
    assert set(standard.settings) == set(standard.attacks)
    assert np.all(standard.eps_star <= fab_t.eps_star)
    assert np.all(np.array([r.k for r in standard.robust_accuracy])
                  <= np.array([r.k for r in fab_t.robust_accuracy]))
