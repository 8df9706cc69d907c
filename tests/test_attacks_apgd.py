"""APGD: the checkpoint schedule and step-size rule by hand, properties on tiny linear
models (hand-computable L_inf margins), the outlier class, restarts, PGD comparison."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (LinearModel, NoisyLinear, linear_boundaries, outlier_trap,
                      random_linear, sample_mlp, uniform_inputs)
from keras_edd.attacks import pgd
from keras_edd.attacks.apgd import apgd, objective, target_classes
from keras_edd.attacks.apgd_step_size import checkpoint_windows, checkpoints, step_halvings

NUM_FEATURES = 12
NUM_CLASSES = 4
LOSSES = ("ce", "dlr", "dlr_targeted")


@pytest.fixture(scope="module")
def linear():
    return random_linear(NUM_FEATURES, NUM_CLASSES)


inputs = uniform_inputs


def needed_eps(model, x, norm="linf"):
    """Smallest eps that flips a linear model's decision, by hand: max over
    ||delta||_inf <= eps of Z_j - Z_y is (Z_j - Z_y)(x) + eps ||w_j - w_y||_1 when the
    box does not bind (||.||_2 for an L2 ball), so the decision can leave y iff eps
    exceeds min_j (Z_y - Z_j) / ||w_j - w_y||_1 (conftest.linear_boundaries)."""
    distances, labels, _, _ = linear_boundaries(model, x, norm)
    return distances.min(1), labels


# ------------------------------------------------------------------ schedule and rule

def test_checkpoints_by_hand():
    # p: 0, .22, .41 (+.19), .57 (+.16), .70 (+.13), .80 (+.10), .87 (+.07), .93 (+.06),
    # .99 (+.06); 1.05 > 1 stops.
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    # ceil(p * 10): 3, 5 (4.1), 6, 7, 8, 9 (8.7), 10 (9.3), 10 (9.9) kept once.
    assert checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]
    assert checkpoints(1) == [0, 1]
    windows = checkpoint_windows(100)
    assert np.flatnonzero(windows).tolist() == [22, 41, 57, 70, 80, 87, 93, 99]
    assert windows[[22, 41, 57, 99]].tolist() == [22, 19, 16, 6]


def test_no_halving_while_the_loss_keeps_rising():
    assert step_halvings(np.arange(101.0)) == []


def test_flat_loss_halves_at_every_checkpoint():
    # Condition 1: no increase at all in any window.
    assert step_halvings(np.zeros(101)) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_condition_2_alternates_when_the_best_never_moves():
    """f(x^0) = 100 and f(x^k) = k: almost every step is an increase (no condition 1),
    but f_max stays 100. Condition 2 (eta unchanged at the last checkpoint and f_max
    unchanged) then fires at 22 (eta(w_0) = eta(w_1)), not at 41 (halved at 22), at
    57, not 70, at 80, not 87, at 93, not 99. After each halving the next step is
    compared with f_max = 100, so those windows count one increase fewer, still
    above rho * window (18 of 19, 12 of 13, 6 of 7, 5 of 6)."""
    trace = np.arange(101.0)
    trace[0] = 100.0
    assert step_halvings(trace) == [22, 57, 80, 93]


@pytest.mark.parametrize("ups, rho, halved", [
    (17, 0.75, False), (16, 0.75, True), (16, 0.7, False), (12, 0.5, False), (11, 0.5, False),
    (10, 0.5, True)])
def test_condition_1_threshold_at_the_first_checkpoint(ups, rho, halved):
    """The first window has 22 steps: halve iff increases < rho * 22 (16.5 at rho 0.75,
    15.4 at 0.7, 11 at 0.5). Up steps +2 and down steps -1 raise f_max, so
    condition 2 stays out; afterwards the loss rises above f_max at every step."""
    steps = np.array([2.0] * ups + [-1.0] * (22 - ups))
    trace = np.concatenate([[0.0], np.cumsum(steps)])
    trace = np.concatenate([trace, trace.max() + np.arange(1.0, 79.0)])
    assert len(trace) == 101
    assert step_halvings(trace, rho=rho) == ([22] if halved else [])


# ------------------------------------------------------------------ the losses by hand

def test_losses_by_hand():
    logits = np.array([[4.0, 1.0, 3.0, 0.0, 2.0]], np.float32)
    labels = np.array([0], np.int32)
    value = lambda loss, **kw: float(objective(logits, labels, np.array([4], np.int32),
                                               loss=loss, **kw)[0])
    # DLR: -(4 - 3) / (4 - 2); targeted t = 4: -(4 - 2) / (4 - (2 + 1) / 2).
    np.testing.assert_allclose(value("dlr"), -0.5, rtol=1e-6)
    np.testing.assert_allclose(value("dlr_targeted"), -2.0 / 2.5, rtol=1e-6)
    # Outlier 2: y and 2 merge (max 4), sorted merged logits 4, 2, 1, 0.
    np.testing.assert_allclose(value("dlr", outlier_class=2), -(4 - 2) / (4 - 1), rtol=1e-6)
    np.testing.assert_allclose(value("dlr_targeted", outlier_class=2),
                               -(4 - 2) / (4 - 0.5 * (1 + 0)), rtol=1e-6)
    # Outlier 0 above y = 2: the merged logit is max(Z_2, Z_0) = 4.
    logits_out = np.array([[4.0, 1.0, 3.0, 0.0, 2.0]], np.float32)
    np.testing.assert_allclose(
        float(objective(logits_out, np.array([2], np.int32), loss="dlr", outlier_class=0)[0]),
        -(4 - 2) / (4 - 1), rtol=1e-6)
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    np.testing.assert_allclose(value("ce"), -np.log(p[0]), rtol=1e-5)
    np.testing.assert_allclose(value("ce", outlier_class=2), -np.log(p[0] + p[2]), rtol=1e-5)


def test_targets_are_real_classes_other_than_y():
    logits = np.array([[5.0, 1.0, 3.0, 9.0, 2.0], [0.0, 4.0, 1.0, 2.0, 3.0]])
    labels = np.array([0, 1])
    np.testing.assert_array_equal(target_classes(logits, labels, 9, outlier_class=3),
                                  [[2, 4, 1], [4, 2, 0]])
    np.testing.assert_array_equal(target_classes(logits, labels, 2), [[3, 2], [4, 3]])


# ------------------------------------------------------------------ properties

@settings(max_examples=3, deadline=None)  # each example traces anew
@given(eps=st.floats(0.0, 0.5), nb_iter=st.integers(0, 8), norm=st.sampled_from(["linf", "l2"]),
       loss=st.sampled_from(LOSSES), clip=st.sampled_from([(0.0, 1.0), (-1.0, 2.0), (0.2, 0.8)]))
def test_box_and_eps_ball(linear, eps, nb_iter, norm, loss, clip):
    x = np.clip(inputs(6, low=0.05, high=0.95), *clip)
    x_adv = apgd(linear, x, eps=eps, nb_iter=nb_iter, norm=norm, loss=loss, seed=0,
                 clip_min=clip[0], clip_max=clip[1]).numpy()
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= clip[0] and x_adv.max() <= clip[1]
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.sqrt((delta ** 2).sum(1))
    assert size.max() <= eps * (1 + 1e-5) + 1e-6


def test_eps_zero_returns_x(linear):
    x = inputs(5)
    np.testing.assert_array_equal(apgd(linear, x, eps=0.0, seed=0).numpy(), x)
    result = apgd(linear, x, eps=0.0, seed=0, return_details=True)
    np.testing.assert_array_equal(result.x_adv.numpy(), x)
    assert not result.success.any() and not result.iterations.any()


@pytest.mark.parametrize("loss, norm, eps", [(loss, "linf", 0.03) for loss in LOSSES]
                         + [("ce", "l2", 0.08), ("dlr", "l2", 0.08)])
def test_finds_the_adversarial_iff_one_exists(loss, norm, eps):
    """Two live classes, tied at x = 0.5 (classes 2 and 3 sit 30 logits down): every
    loss ascends the one margin between 0 and 1, so by hand the inputs needing
    eps' < eps / 1.25 are broken, those needing more than eps cannot be (by any
    attack), and `success` says exactly which."""
    weights = np.random.default_rng(6).normal(size=(NUM_FEATURES, NUM_CLASSES))
    model = LinearModel(weights, np.array([0.0, 0.0, -30.0, -30.0]) - 0.5 * weights.sum(0))
    x = inputs(64)
    need, labels = needed_eps(model, x, norm)
    easy, impossible = need < eps / 1.25, need > eps
    assert easy.sum() >= 10 and impossible.sum() >= 10  # the case is not vacuous
    result = apgd(model, x, eps=eps, nb_iter=50, loss=loss, norm=norm, seed=0,
                  return_details=True)
    predicted = np.asarray(model(result.x_adv)).argmax(1)
    np.testing.assert_array_equal(result.success, predicted != labels)
    assert result.success[easy].all()
    assert not result.success[impossible].any()


def test_targeted_dlr_tries_every_class(linear):
    """Four live classes: the nearest class in L_inf need not be the one the untargeted
    gradient heads for (a convex margin has local maxima at the box's vertices), but
    APGD-T runs once per class and finds every input with eps' < eps / 1.25. No loss
    claims a success that the hand computation rules out."""
    x = inputs(64)
    eps = 0.2
    need, labels = needed_eps(linear, x)
    easy, impossible = need < eps / 1.25, need > eps
    assert easy.sum() >= 20 and impossible.sum() >= 5
    found = {}
    for loss in LOSSES:
        result = apgd(linear, x, eps=eps, nb_iter=50, loss=loss, seed=0, return_details=True)
        np.testing.assert_array_equal(
            result.success, np.asarray(linear(result.x_adv)).argmax(1) != labels)
        assert not result.success[impossible].any()
        found[loss] = result.success
    assert found["dlr_targeted"][easy].all()
    assert found["dlr_targeted"].sum() >= max(found["ce"].sum(), found["dlr"].sum())


def test_already_misclassified_inputs_are_not_attacked(linear):
    x = inputs(8)
    _, labels = needed_eps(linear, x)
    wrong = labels.copy()
    wrong[:3] = (labels[:3] + 1) % NUM_CLASSES
    result = apgd(linear, x, y=wrong, eps=0.05, nb_iter=10, seed=0, return_details=True)
    assert result.success[:3].all() and not result.iterations[:3].any()
    np.testing.assert_array_equal(result.x_adv.numpy()[:3], x[:3])


@pytest.mark.parametrize("loss", LOSSES)
def test_adaptive_never_counts_the_outlier_class(loss):
    model = outlier_trap()
    x = inputs(48, seed=4, low=0.48, high=0.52)
    labels = np.asarray(model(x))[:, :4].argmax(1)
    kwargs = dict(eps=0.15, nb_iter=20, loss=loss, seed=0, return_details=True)
    plain = apgd(model, x, **kwargs)
    assert (np.asarray(model(plain.x_adv)).argmax(1) == 4).sum() >= 10  # the trap works
    adaptive = apgd(model, x, outlier_class=4, **kwargs)
    predicted = np.asarray(model(adaptive.x_adv)).argmax(1)
    np.testing.assert_array_equal(adaptive.success, (predicted != labels) & (predicted != 4))
    assert not (adaptive.success & (predicted == 4)).any()
    assert adaptive.success.mean() > 0.5


def test_restarts_attack_only_unbroken_inputs(linear):
    x = inputs(64, seed=5)
    kwargs = dict(eps=0.1, nb_iter=12, loss="ce", seed=7)
    one = apgd(linear, x, nb_restarts=1, return_details=True, **kwargs)
    three = apgd(linear, x, nb_restarts=3, return_details=True, **kwargs)
    broken = one.success
    assert broken.any() and not broken.all()
    # Restart 0 is shared: inputs it broke keep its result and cost nothing more.
    np.testing.assert_array_equal(three.x_adv.numpy()[broken], one.x_adv.numpy()[broken])
    np.testing.assert_array_equal(three.iterations[broken], one.iterations[broken])
    assert three.success[broken].all()
    # Unbroken after all three: every restart ran its full nb_iter on them.
    never = ~three.success
    assert never.any()
    np.testing.assert_array_equal(three.iterations[never], 3 * 12)
    # Broken by restart 1 or 2: restart 0 in full, then fewer than 2 * nb_iter.
    later = three.success & ~broken
    assert np.all((three.iterations[later] > 12) & (three.iterations[later] <= 36))


def test_targeted_runs_once_per_target(linear):
    x = inputs(32)
    need, _ = needed_eps(linear, x)
    result = apgd(linear, x, eps=0.05, nb_iter=10, loss="dlr_targeted", nb_targets=9,
                  seed=0, return_details=True)
    # 4 classes: at most 3 targets, so an input never broken costs 3 * nb_iter.
    np.testing.assert_array_equal(result.iterations[~result.success], 30)
    assert not result.success[need > 0.05].any()


def test_is_seeded(linear):
    x = inputs(6)
    run = lambda seed: apgd(linear, x, eps=0.05, nb_iter=5, seed=seed).numpy()
    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_eot_attacks_the_expected_gradient(linear):
    """EOT: a model whose logits are exactly x W but whose input gradient is
    W + 4 N(0, 1) per call (conftest.NoisyLinear, gradient_only). One call's gradient
    misleads APGD; the mean of 100 calls brings it to what APGD reaches on the
    deterministic model, judged on the margin Z_y - max_k Z_k of x W. On the
    deterministic model EOT changes nothing."""
    x = inputs(64)
    labels = np.asarray(linear(x)).argmax(1)

    def margin(points):
        logits = np.asarray(linear(points), np.float64)
        true = logits[np.arange(len(x)), labels].copy()
        logits[np.arange(len(x)), labels] = -np.inf
        return (true - logits.max(1)).mean()

    def attack(model, eot_iter):
        return apgd(model, x, y=labels, eps=0.1, nb_iter=10, seed=0, eot_iter=eot_iter)

    deterministic = attack(linear, 1)
    np.testing.assert_allclose(attack(linear, 100), deterministic, atol=1e-6)
    one, mean = (margin(attack(NoisyLinear(linear.weights, 4.0, gradient_only=True), eot))
                 for eot in (1, 100))
    best = margin(deterministic)
    assert one - mean > 0.2 and mean - best < 0.1, (one, mean, best)


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps=-0.1), "eps=-0.1"), (dict(eps=0.1, loss="cw"), "loss='cw'"),
    (dict(eps=0.1, norm="l1"), "norm='l1'"), (dict(eps=0.1, nb_restarts=0), "nb_restarts=0"),
    (dict(eps=0.1, rho=0.0), "rho=0.0"), (dict(eps=0.1, momentum=1.5), "momentum=1.5"),
    (dict(eps=0.1, nb_targets=0), "nb_targets=0"), (dict(eps=0.1, eot_iter=0), "eot_iter=0"),
    (dict(eps=0.1, loss="dlr_targeted", outlier_class=3), "needs at least 4 classes")])
def test_bad_arguments_raise(linear, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        apgd(linear, inputs(2), seed=0, **kwargs)


@pytest.mark.slow
def test_at_least_as_strong_as_pgd_on_a_trained_model():
    """A 784-32-10 MLP trained for 3 epochs on 1,000 bundled digits; same eps (0.1) and
    10 iterations. PGD at eps/4 reaches the ball's surface in 4 steps, at eps/10 only at
    the last; APGD needs no step size."""
    from keras_edd import data
    model, sample = sample_mlp()
    x = data.to_float(sample.x_test[:64])
    predicted = np.asarray(model(x)).argmax(1)
    broken = lambda x_adv: int((np.asarray(model(x_adv)).argmax(1) != predicted).sum())
    pgd_counts = [broken(pgd(model, x, eps=0.1, eps_iter=0.1 / ratio, nb_iter=10, seed=0))
                  for ratio in (4, 10)]
    result = apgd(model, x, eps=0.1, nb_iter=10, seed=0, return_details=True)
    assert broken(result.x_adv) == result.success.sum()
    assert result.success.sum() >= max(pgd_counts)
    assert result.success.sum() > pgd_counts[1]


# ------------------------------------------------------------------ the budget's range


@pytest.mark.parametrize("eps", [-0.1, 1e9])
def test_linf_eps_states_one_range(eps):
    """--apgd_ce_eps=-0.1 said [0, inf] and 1e9 said [0, 1]: one range per norm."""
    from keras_edd.attack_settings import ApgdSettings
    with pytest.raises(ValueError, match=rf"^apgd_ce_eps={eps!r}: allowed range for "
                                         r"norm='linf' is \[0, 1\]$"):
        ApgdSettings(eps=eps).validate("apgd_ce_")


def test_l2_eps_is_refused_past_the_box_diameter_and_warned_below_1(linear):
    from keras_edd.attack_registry import AttackConfig
    from keras_edd.attack_settings import ApgdSettings, ApgdTargetedSettings
    with pytest.raises(ValueError, match=r"^apgd_ce_eps=-0.1: allowed range for norm='l2' is "
                                         r"\[0, the diameter of the input box"):
        ApgdSettings(eps=-0.1, norm="l2").validate("apgd_ce_")
    config = AttackConfig(settings={"apgd_t": ApgdTargetedSettings(eps=28.5, norm="l2")})
    config.validate()
    with pytest.raises(ValueError, match=r"^apgd_t_eps=28.5: allowed range for norm='l2' is "
                                         r"\[0, 28\], the diameter of the input box$"):
        config.check_input_shape((28, 28, 1))
    config.check_input_shape((32, 32, 3))  # diameter 55.4
    with pytest.warns(UserWarning, match="apgd_ce_eps=0.5 with norm='l2' looks like an L_inf"):
        ApgdSettings(eps=0.5, norm="l2").validate("apgd_ce_")
    x = inputs(2)  # 12 values in [0, 1]: diameter sqrt(12) = 3.46
    with pytest.raises(ValueError, match=r"^eps=3.5: allowed range for norm='l2' is \[0, 3.4641"):
        apgd(linear, x, eps=3.5, norm="l2", nb_iter=1, seed=0)
    with pytest.raises(ValueError, match=r"^eps=0.7: allowed range for norm='linf' is \[0, 0.6\]"):
        apgd(linear, np.clip(x, 0.2, 0.8), eps=0.7, nb_iter=1, seed=0, clip_min=0.2,
             clip_max=0.8)
