"""keras_edd.evaluate: rates, AutoAttack's bookkeeping, inputs, thresholds, errors.

Tiny hand-made models (4x4x1 images, a dense layer of chosen weights) whose
answers can be worked out by hand: the worst case of a linear model in an
L_inf / L2 ball is known in closed form, and at eps = 0 every attack returns x.
"""

import builtins
import dataclasses
import functools
import importlib.machinery
import io
import os
import sys
import types
import warnings

import numpy as np
import pytest

import keras_edd
from conftest import LinearModel, NoisyLinear, uniform_inputs
from keras_edd.robustness import Rate, points, suite, wilson_interval

SHAPE = (4, 4, 1)


def dense_model(weights, bias=None):
    import keras
    weights = np.asarray(weights, np.float32)
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(),
                              keras.layers.Dense(weights.shape[1])])
    bias = np.zeros(weights.shape[1], np.float32) if bias is None else bias
    model.layers[-1].set_weights([weights, np.asarray(bias, np.float32)])
    return model


def quiet_evaluate(*args, **kwargs):
    kwargs.setdefault("progress", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return keras_edd.evaluate(*args, **kwargs)


# ------------------------------------------------------------------------------ rates


@pytest.mark.parametrize("k, n, low, high", [
    # Newcombe (1998), Table I, method 3 (Wilson score interval without continuity correction)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718), (29, 29, 0.8830, 1.0)])
def test_wilson_interval_matches_published_values(k, n, low, high):
    np.testing.assert_allclose(wilson_interval(k, n), (low, high), atol=5e-5)
    rate = Rate(k, n)
    assert rate.value == k / n and rate.interval == wilson_interval(k, n)
    assert rate.to_dict() == {"k": k, "n": n, "value": k / n, "low": rate.interval[0],
                              "high": rate.interval[1]}


@pytest.mark.parametrize("k, n", [(1, 0), (-1, 5), (6, 5), (1.5, 5), (True, 5)])
def test_rate_refuses_impossible_counts(k, n):
    with pytest.raises(ValueError, match=r"^(k|n)="):
        Rate(k, n)


# --------------------------------------------------------------- robust accuracy, by hand


def linear_problem(norm, eps, seed=0, n=60):
    """A 4-class linear model and digits whose worst case in the ball is far from 0.

    For Z = W^T x + b and x + delta inside [0, 1] (x in [0.3, 0.7], eps <= 0.3, so the
    box never binds), the smallest margin Z_y - Z_j is
    (w_y - w_j) x + b_y - b_j - eps ||w_y - w_j||_q, q the dual norm (1 for L_inf, 2 for L2).
    """
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(16, 4)).astype(np.float32)
    x = rng.uniform(0.3, 0.7, size=(n, *SHAPE)).astype(np.float32)
    logits = x.reshape(n, -1) @ weights
    y = logits.argmax(axis=1)
    y[:8] = (y[:8] + 1) % 4  # eight digits wrong when clean
    dual = 1 if norm == "linf" else 2
    worst = np.full(n, np.inf)
    for j in range(4):
        gap = weights[:, y].T - weights[:, j][None]  # [n, 16]
        margin = (logits[np.arange(n), y] - logits[:, j]
                  - eps * np.linalg.norm(gap, ord=dual, axis=1))
        worst = np.where(j == y, worst, np.minimum(worst, margin))
    keep = np.abs(worst) > 0.05  # away from the boundary, so the attack's answer is sure
    return _linear_problem_model(seed), x[keep], y[keep], worst[keep] > 0


@functools.lru_cache(maxsize=None)
def _linear_problem_model(seed):
    """linear_problem's model: one per seed for the module, so the attacks' traces for it
    are reused across tests (evaluate never changes a model's weights)."""
    return dense_model(np.random.default_rng(seed).normal(size=(16, 4)).astype(np.float32))


@pytest.mark.parametrize("norm, eps", [("linf", 0.05), ("l2", 0.4)])
def test_robust_accuracy_is_the_closed_form_worst_case(norm, eps):
    model, x, y, robust = linear_problem(norm, eps)
    result = quiet_evaluate(model, x, y, eps=eps, norm=norm, attacks=["apgd_ce", "apgd_t"])
    np.testing.assert_array_equal(result.robust, robust)
    assert result.robust_accuracy == Rate(int(robust.sum()), len(x))
    # A digit wrong when clean is never robust, and is marked as such.
    clean_wrong = ~result.clean_correct
    assert clean_wrong.sum() > 0 and not result.robust[clean_wrong].any()
    assert all(result.broken_by[i] == "clean" for i in np.flatnonzero(clean_wrong))
    # Cumulative by attack: non-increasing, ending at the robust accuracy.
    ks = [rate.k for rate in result.robust_accuracy_by_attack.values()]
    assert list(result.robust_accuracy_by_attack) == ["apgd_ce", "apgd_t"]
    assert result.clean_accuracy.k >= ks[0] and ks == sorted(ks, reverse=True)
    assert ks[-1] == result.robust.sum()
    # Every broken digit's adversarial example is inside the ball and misclassified.
    broken = result.clean_correct & ~result.robust
    assert broken.sum() > 0
    assert np.all(result.perturbation_norm[broken] <= eps + 1e-5)
    assert np.all(result.perturbation_norm[~broken] == 0)
    predicted = np.asarray(model(result.x_adv[broken])).argmax(axis=1)
    assert np.all(predicted != y[broken])
    assert {result.broken_by[i] for i in np.flatnonzero(broken)} <= {"apgd_ce", "apgd_t"}
    # Each attack's wall time, in the order run, within the whole call's.
    assert list(result.seconds_by_attack) == ["apgd_ce", "apgd_t"]
    assert 0 < sum(result.seconds_by_attack.values()) <= result.seconds


def test_standard_list_runs_in_order_and_records_fab_t_missing():
    if suite.ATTACKS["fab_t"].unavailable("linf") is None:
        pytest.skip("keras_edd.attacks.fab is installed: fab_t runs (test_fab_adapter_runs)")
    model, x, y, _ = linear_problem("linf", 0.05, n=12)
    with pytest.warns(RuntimeWarning, match="fab_t needs keras_edd.attacks.fab"):
        result = keras_edd.evaluate(model, x, y, eps=0.05, progress=False)
    assert result.attacks == ("apgd_ce", "apgd_t", "square")
    assert [name for name, _ in result.attacks_skipped] == ["fab_t"]
    assert "fab_t" in result.summary() and "not run" in result.summary()
    assert result.settings["square"] == {"max_queries": 5000, "p_init": 0.8}
    assert result.settings["apgd_t"] == {"loss": "dlr_targeted", "nb_iter": 100,
                                         "nb_restarts": 1, "nb_targets": 9}
    assert result.to_dict()["attacks_skipped"][0]["attack"] == "fab_t"


def test_l2_standard_runs_l2_square_and_linf_only_attacks_raise():
    model, x, y, _ = linear_problem("l2", 0.4, n=6)
    result = quiet_evaluate(model, x, y, eps=0.4, norm="l2")
    assert result.attacks[0] == "apgd_ce" and result.attacks[-1] == "square"
    assert "square" not in dict(result.attacks_skipped)
    broken = result.clean_correct & ~result.robust
    assert np.all(result.perturbation_norm[broken] <= 0.4 + 1e-5)
    with pytest.raises(ValueError, match="^attacks: pgd supports norm linf only, not 'l2'"):
        keras_edd.evaluate(model, x, y, eps=0.4, norm="l2", attacks=["pgd"], progress=False)


def test_rand_is_apgd_ce_and_dlr_with_eot_for_a_stochastic_model(monkeypatch):
    """attacks="rand" (AutoAttack's version="rand"): APGD-CE and APGD-DLR, 100
    iterations, EOT over 20 calls; on a stochastic model no warning, on a deterministic
    one a warning that EOT only costs time, and the stochastic model's warning under
    other attacks names attacks='rand'. (Run with 3 iterations and 2 calls: the checks
    and the bookkeeping are what is tested here, EOT itself in test_attacks_apgd.)"""
    rows, skipped = suite.resolve("rand", "linf", 0.05)
    assert [row.name for row in rows] == ["apgd_ce", "apgd_dlr"] and skipped == ()
    for row, loss in zip(rows, ("ce", "dlr")):
        assert row.settings == {"loss": loss, "nb_iter": 100, "nb_restarts": 1, "eot_iter": 20}
    monkeypatch.setattr(suite, "RAND_ROWS", tuple(
        dataclasses.replace(row, settings=dict(row.settings, nb_iter=3, eot_iter=2))
        for row in rows))
    weights = np.random.default_rng(3).normal(size=(16, 3))
    x = uniform_inputs(8, shape=SHAPE)
    y = np.asarray(LinearModel(weights)(x)).argmax(1)
    noisy = NoisyLinear(weights, 0.05, seed=0)
    result = quiet_evaluate(noisy, x, y, eps=0.05, attacks="rand")
    assert result.attacks == ("apgd_ce", "apgd_dlr") and result.settings["apgd_dlr"]["eot_iter"] == 2
    assert result.checks["stochastic"] is True and result.warnings == ()
    # The checks evaluate runs first (points.sanity_checks), without the attacks.
    for model, eot, words in ((LinearModel(weights), True, "EOT only costs time"),
                              (noisy, False, "attacks='rand'")):
        issued = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            points.sanity_checks(model, x, y, None, issued, eot=eot)
        assert [w for w in issued if words in w], issued


def test_square_is_left_out_on_inputs_that_are_not_images():
    weights = np.random.default_rng(5).normal(size=(16, 4)).astype(np.float32)

    def flat_model(x):  # a callable on [n, 16] vectors, not a Keras model
        import tensorflow as tf
        return tf.reshape(x, [-1, 16]) @ weights

    x = np.random.default_rng(6).uniform(0.3, 0.7, size=(6, 16)).astype(np.float32)
    y = (x @ weights).argmax(axis=1)
    with pytest.warns(RuntimeWarning, match="square needs images"):
        result = keras_edd.evaluate(flat_model, x, y, eps=0.05, progress=False)
    assert "square" in dict(result.attacks_skipped) and result.attacks[:2] == ("apgd_ce",
                                                                                "apgd_t")
    with pytest.raises(ValueError, match="^attacks: square needs images"):
        keras_edd.evaluate(flat_model, x, y, eps=0.05, attacks=["square"], progress=False)


# --------------------------------------------------------------------------- inputs


def test_uint8_and_float_inputs_give_identical_results():
    rng = np.random.default_rng(1)
    model = _linear_problem_model(0)
    pixels = rng.integers(0, 256, size=(20, *SHAPE), dtype=np.uint8)
    y = np.asarray(model(pixels.astype(np.float32) / 255)).argmax(axis=1)
    a = quiet_evaluate(model, pixels, y, eps=0.05, attacks=["apgd_ce", "square"])
    # Float images [n, H, W] without the channel axis, with one-hot labels: the same run.
    b = quiet_evaluate(model, pixels[..., 0].astype(np.float64) / 255.0, np.eye(4)[y],
                       eps=0.05, attacks=["apgd_ce", "square"])
    assert 0 < a.robust_accuracy.k < a.clean_accuracy.k  # a test with something to compare
    np.testing.assert_array_equal(a.robust, b.robust)
    np.testing.assert_array_equal(a.x_adv, b.x_adv)
    assert a.robust_accuracy_by_attack == b.robust_accuracy_by_attack


def test_model_in_memory_path_and_pretrained_name_agree(tmp_path):
    model = dense_model(np.random.default_rng(2).normal(size=(16, 4)))
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    x = np.random.default_rng(3).integers(0, 256, size=(10, *SHAPE), dtype=np.uint8)
    y = np.asarray(model(x.astype(np.float32) / 255)).argmax(axis=1)
    in_memory = quiet_evaluate(model, x, y, eps=0.1, attacks=["apgd_ce"])
    from_file = quiet_evaluate(path, x, y, eps=0.1, attacks=["apgd_ce"])
    np.testing.assert_array_equal(in_memory.robust, from_file.robust)
    assert from_file.model == os.path.abspath(path)
    assert from_file.robust_accuracy == in_memory.robust_accuracy


def test_pretrained_name_is_accepted():
    from keras_edd import pretrained
    try:
        pretrained.model_path("paper:undefended")
    except pretrained.PretrainedError as exc:
        pytest.skip(f"shipped collection unavailable: {exc}")
    # Random noise images (never the MNIST training digits the model was trained on).
    x = np.random.default_rng(4).integers(0, 256, size=(4, 28, 28, 1), dtype=np.uint8)
    y = np.arange(4)
    result = quiet_evaluate("paper:undefended", x, y, eps=0.1, attacks=["fgsm"])
    assert result.model == "paper:undefended" and result.n == 4
    assert result.robust_accuracy.k <= result.clean_accuracy.k
    with pytest.raises(ValueError, match="outlier_class=10.*allowed range is \\[0, 9\\]"):
        quiet_evaluate("paper:undefended", x, y, eps=0.1, attacks=["fgsm"], outlier_class=10)


def bad_cases():
    y = np.array([0, 1, 2, 3])
    return [
        (dict(y=np.array([0, 1, 2, 4])), r"^y contains labels 0\.\.4: allowed range is \[0, 3\]"),
        (dict(y=y.astype(np.float32)), r"^y has dtype float32: labels must be integers"),
        (dict(y=np.eye(5)[y]), r"^y has shape \(4, 5\): one-hot labels must be \[4, 4\]"),
        (dict(eps=-0.1), r"^eps=-0\.1: allowed range for norm='linf' is \[0, 1\]"),
        (dict(eps=1.5), r"^eps=1\.5: allowed range for norm='linf' is \[0, 1\]"),
        (dict(x=np.zeros((0, *SHAPE), np.uint8), y=np.zeros(0, int)),
         r"^x holds n = 0 examples"),
        (dict(x=np.full((4, *SHAPE), 2.0)), r"^float images span \[2\.0, 2\.0\]: expected values in \[0, 1\]"),
        (dict(x=np.zeros((4, *SHAPE), np.uint16)), r"^images of dtype uint16: expected uint8"),
        (dict(x=np.zeros((4, 5, 5, 1), np.uint8)), r"^x has examples of shape \(5, 5, 1\)"),
        (dict(outlier_class=4), r"^outlier_class=4: allowed range is \[0, 3\]"),
        (dict(outlier_class=3), r"^y contains outlier_class=3"),
        (dict(attacks=["apgd_ce", "nope"]), r"^attacks: unknown attack 'nope'; allowed"),
        (dict(attacks=["jsma"]), r"^attacks: unknown attack 'jsma'"),
        (dict(attacks=[]), r"^attacks=\[\]: expected 'standard', 'rand' or a non-empty list"),
        (dict(norm="l1"), r"^norm='l1': allowed values are \['l2', 'linf'\]"),
        (dict(false_detection=(0.0,)), r"^false_detection=0\.0: allowed range is \(0"),
        (dict(batch_size=0), r"^batch_size=0: allowed range"),
    ]


@pytest.mark.parametrize("change, message", bad_cases())
def test_bad_input_raises_one_line_value_error(change, message):
    model = dense_model(np.ones((16, 4)))
    arguments = dict(x=np.zeros((4, *SHAPE), np.uint8), y=np.array([0, 1, 2, 3]), eps=0.1,
                     attacks=["fgsm"])
    arguments.update(change)
    with pytest.raises(ValueError, match=message) as info:
        quiet_evaluate(model, arguments.pop("x"), arguments.pop("y"), **arguments)
    assert "\n" not in str(info.value)


def test_model_whose_outputs_do_not_fit_raises():
    model = dense_model(np.ones((16, 1)))  # one output: not a classifier
    with pytest.raises(ValueError, match="expected a vector of at least 2 logits"):
        quiet_evaluate(model, np.zeros((2, *SHAPE), np.uint8), [0, 0], eps=0.1)
    with pytest.raises(ValueError, match="^model=3: expected a Keras model"):
        quiet_evaluate(3, np.zeros((2, *SHAPE), np.uint8), [0, 0], eps=0.1)


# ----------------------------------------------------------------- outlier thresholds

# Ten digits, four real classes and the outlier class (index 4). Image i is the one-hot
# pixel i, so its logits are row i of the weights: the scores are known by hand.
#                 real logits        Z_out  y   s = Z_out - max real
THRESHOLD_DIGITS = [([3, 0, 0, 0], -2.0, 0),  # -5   correct
                    ([0, 3, 0, 0], -1.0, 1),  # -4   correct
                    ([0, 0, 3, 0], 0.0, 2),   # -3   correct
                    ([0, 0, 0, 3], 1.0, 3),   # -2   correct
                    ([0, 3, 0, 0], 2.0, 0),   # -1   wrong (predicts 1)
                    ([0, 3, 0, 0], 2.5, 1),   # -0.5 correct
                    ([0, 0, 3, 0], 3.5, 2),   # +0.5 detected when clean (real class right)
                    ([0, 0, 0, 3], 4.0, 3),   # +1   detected when clean (real class right)
                    ([3, 0, 0, 0], -3.0, 0),  # -6   correct
                    ([3, 0, 0, 0], -4.0, 1)]  # -7   wrong (predicts 0)


def threshold_model():
    weights = np.zeros((16, 5), np.float32)
    for i, (real, out, _) in enumerate(THRESHOLD_DIGITS):
        weights[i] = real + [out]
    x = np.zeros((10, *SHAPE), np.float32)
    x.reshape(10, 16)[np.arange(10), np.arange(10)] = 1.0
    return dense_model(weights), x, np.array([d[2] for d in THRESHOLD_DIGITS])


def test_thresholds_match_the_hand_computation():
    model, x, y = threshold_model()
    result = quiet_evaluate(model, x, y, eps=0.0, outlier_class=4,
                            false_detection=(0.1, 0.25, 0.35), attacks=["apgd_ce", "apgd_t"])
    # tau: the (floor(f n) + 1)-th largest score of 1, .5, -.5, -1, -2, -3, -4, -5, -6, -7.
    # Accepted (s <= tau) and right: f=.1 -> digits 0,1,2,3,5,6,8; f=.25 -> 0,1,2,3,5,8;
    # f=.35 -> 0,1,2,3,8. At eps = 0 the robust rates equal the clean rate at tau.
    expected = {0.1: (0.5, 1, 7), 0.25: (-0.5, 2, 6), 0.35: (-1.0, 3, 5)}
    assert [row.target_false_detection for row in result.thresholds] == [0.1, 0.25, 0.35]
    for row in result.thresholds:
        tau, rejected, accepted_right = expected[row.target_false_detection]
        assert row.tau == pytest.approx(tau, abs=1e-6)
        assert row.false_detection == Rate(rejected, 10)
        assert row.clean_accuracy == Rate(accepted_right, 10)
        assert row.robust_accuracy_detection_correct == Rate(accepted_right, 10)
        assert row.robust_accuracy_rejection_error == Rate(accepted_right, 10)
    # The model's own rule (argmax of all 11... here 5 logits): digits 0,1,2,3,5,8.
    assert result.clean_accuracy == Rate(6, 10) and result.robust_accuracy == Rate(6, 10)


def test_threshold_attacks_aim_at_the_detector():
    """One digit, two live pixels: pixel 0 (the image, value 1) with logits [3, 0, 0, 0, -2]
    and pixel 15 (value 0) with [0, 6, 0, 0, 8]. Lowering pixel 0 by a and raising pixel 15
    by b (both <= eps = 0.75) gives Z = [3 - 3a, 6b, 0, 0, -2 + 2a + 8b], clean score -5.
      tau = 0 (the model's rule): class 1 wins accepted when 6b > 3 - 3a and 6b > Z_out,
        e.g. a = 0, b = 0.625 (Z = [3, 3.75, 0, 0, 3]): not robust.
      tau = -5 (f = 0.5 of one digit keeps it): winning accepted needs Z_out - Z_1 <= -5,
        i.e. 2a + 2b <= -3: impossible, robust with a detection counted correct;
        but s > -5 is easy: not robust when a rejection counts as an error."""
    weights = np.zeros((16, 5), np.float32)
    weights[0] = [3, 0, 0, 0, -2]
    weights[15] = [0, 6, 0, 0, 8]
    model = dense_model(weights)
    x = np.zeros((1, *SHAPE), np.float32)
    x.reshape(1, 16)[0, 0] = 1.0
    result = quiet_evaluate(model, x, [0], eps=0.75, outlier_class=4, attacks=["apgd_ce"],
                            false_detection=(0.5,))
    row = result.thresholds[0]
    assert row.tau == pytest.approx(-5.0)
    assert row.false_detection == Rate(0, 1) and row.clean_accuracy == Rate(1, 1)
    assert row.robust_accuracy_detection_correct == Rate(1, 1)
    assert row.robust_accuracy_rejection_error == Rate(0, 1)
    assert result.clean_accuracy == Rate(1, 1) and result.robust_accuracy == Rate(0, 1)
    assert result.broken_by == ("apgd_ce",)


# ----------------------------------------------------------------------- bookkeeping


def fake_attack_module(monkeypatch, name, function):
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.fab = function
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_points_outside_the_ball_count_as_failures(monkeypatch):
    def too_far(model_fn, x, *, eps, y, outlier_class, seed, **settings):
        return np.clip(np.asarray(x) + 3 * eps, 0, 1)  # L_inf 3 eps: misclassified, not allowed

    fake_attack_module(monkeypatch, "keras_edd_fake_attack", too_far)
    monkeypatch.setitem(suite.ATTACKS, "fab", suite.SuiteAttack(
        name="fab", functions={"linf": "keras_edd_fake_attack:fab"}, settings={},
        norm_keyword=False))
    weights = np.zeros((16, 4), np.float32)
    weights[:, 1] = 1.0  # brighter images move to class 1
    model = dense_model(weights, bias=[0.5, 0, 0, 0])
    x = np.full((3, *SHAPE), 0.0, np.float32)
    with pytest.warns(RuntimeWarning, match="fab returned 3 point"):
        result = keras_edd.evaluate(model, x, [0, 0, 0], eps=0.05, attacks=["fab"],
                                    progress=False)
    assert np.asarray(model(np.full((1, *SHAPE), 0.15))).argmax() == 1  # it would have won
    assert result.norm_violations == {"fab": 3}
    assert result.robust_accuracy == Rate(3, 3)


def test_fab_adapter_passes_the_expected_keywords(monkeypatch):
    calls = []

    def fab(model_fn, x, *, eps, y=None, norm="linf", targeted=False, nb_targets=None,
            nb_iter=100, nb_restarts=1, outlier_class=None, seed=0, **rest):
        calls.append(dict(eps=eps, y=np.asarray(y), norm=norm, targeted=targeted,
                          nb_targets=nb_targets, nb_iter=nb_iter,
                          nb_restarts=nb_restarts, outlier_class=outlier_class, seed=seed))
        return x

    if "keras_edd.attacks.fab" not in sys.modules:
        fake_attack_module(monkeypatch, "keras_edd.attacks.fab", fab)
    else:
        monkeypatch.setattr(sys.modules["keras_edd.attacks.fab"], "fab", fab)
    assert "fab_t" in suite.resolve("standard", "linf", 0.1)[0][2].name
    model, x, y = threshold_model()
    result = quiet_evaluate(model, x, y, eps=0.1, norm="l2", outlier_class=4,
                            attacks=["fab_t"], false_detection=(0.1,), seed=7)
    # FAB-T: 9 best-ranked targets, still aiming at any class != y (not targeted=True)
    assert not calls[0]["targeted"] and calls[0]["nb_targets"] == 9
    assert calls[0]["norm"] == "l2" and calls[0]["eps"] == 0.1 and calls[0]["seed"] == 7
    assert calls[0]["outlier_class"] == 4 and calls[0]["nb_iter"] == 100
    np.testing.assert_array_equal(calls[0]["y"], y[result.clean_correct])
    assert result.attacks == ("fab_t",)
    np.testing.assert_array_equal(result.robust, result.clean_correct)  # fab returned x


def test_fab_adapter_runs():
    pytest.importorskip("keras_edd.attacks.fab")
    model, x, y, _ = linear_problem("linf", 0.05, n=16)
    for name in ("fab_t", "fab"):
        result = quiet_evaluate(model, x, y, eps=0.05, attacks=[name])
        assert result.robust_accuracy.k <= result.clean_accuracy.k
        broken = result.clean_correct & ~result.robust
        assert np.all(result.perturbation_norm[broken] <= 0.05 + 1e-5)


def test_evaluate_writes_nothing(tmp_path, monkeypatch):
    model, x, y, _ = linear_problem("linf", 0.05, n=8)
    monkeypatch.chdir(tmp_path)
    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"evaluate opened {file!r} for writing")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.setattr(io, "open", read_only_open)
    result = quiet_evaluate(model, x, y, eps=0.05, attacks=["apgd_ce", "square"])
    assert result.n == len(x)
    assert os.listdir(tmp_path) == []


def test_result_is_frozen_and_serialises():
    model, x, y, _ = linear_problem("linf", 0.05, n=8)
    result = quiet_evaluate(model, x, y, eps=0.05, attacks=["apgd_ce"])
    with pytest.raises(AttributeError):
        result.eps = 1.0
    with pytest.raises(ValueError):
        result.robust[0] = not result.robust[0]
    import json
    data = json.loads(result.to_json())
    assert data["robust_accuracy"]["k"] == int(result.robust.sum())
    assert data["robust"] == result.robust.tolist()
    assert data["seconds_by_attack"] == dict(result.seconds_by_attack)
    assert "robust (all attacks)" in result.summary()


def test_package_top_exports_are_lazy():
    import subprocess
    # `import keras_edd` stays light (the binaries check their flags before TensorFlow
    # starts); the API names load their modules when first used.
    # The names resolve here, where TensorFlow is loaded already: the subprocess only
    # imports the package (starting TensorFlow there would cost seconds and test nothing).
    code = ("import sys, keras_edd; print(sorted(m for m in ('tensorflow', 'keras') "
            "if m in sys.modules), 'evaluate' in vars(keras_edd))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["[]", "False"]
    from keras_edd import Rate, evaluate, load_pretrained
    assert evaluate.__module__ == "keras_edd.robustness.evaluate_model"
    assert load_pretrained.__module__.startswith("keras_edd.") and Rate.__name__ == "Rate"
