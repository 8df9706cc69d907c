"""The contract every attack of the registry keeps, checked on each registry row.

A new attack is one file plus one row in keras_edd.attack_registry; this test then runs
on it with no further edit: the budget at zero returns x, the output stays in the box
and within the budget, y=None (the model's own prediction) is the same attack as
passing that prediction, and bad arguments raise a ValueError naming them.
(cleverhans' torch/tests/test_attacks.py checks its attacks this way.)
"""

import numpy as np
import pytest

from conftest import random_linear
from keras_edd import attack_registry
from keras_edd.attack_registry import AttackConfig

SHAPE = (4, 4, 1)
CLASSES = 4
# Settings that make every attack quick on the tiny model, where the attack has them.
_QUICK = {"nb_iter": 5, "max_iterations": 20, "binary_search_steps": 2, "max_queries": 40,
          "nb_restarts": 1, "nb_targets": 2}
# The budget each kind of budget is checked at, and the ball it bounds.
_BUDGETS = {"eps": 0.1, "gamma": 0.2, "confidence": 0.5}


def _ball_holds(budget, value, x, x_adv, model):
    """Whether x_adv respects the budget `budget` = value around x."""
    delta = (x_adv - x).reshape(len(x), -1)
    if budget == "eps":  # L_inf radius
        return bool(np.all(np.abs(delta) <= value + 1e-6))
    if budget == "gamma":  # fraction of the features changed
        return bool(np.all(np.mean(delta != 0, axis=1) <= value + 1e-6))
    if budget == "confidence":  # kappa: a changed input is a success with margin >= kappa
        logits = np.asarray(model(x_adv))
        labels = np.asarray(model(x)).argmax(axis=1)
        own = logits[np.arange(len(x)), labels]
        other = np.where(np.eye(CLASSES, dtype=bool)[labels], -np.inf, logits).max(axis=1)
        changed = np.any(delta != 0, axis=1)
        return bool(np.all(other[changed] - own[changed] >= value - 1e-4))
    raise AssertionError(f"budget {budget!r} has no ball in this test: add it to _BUDGETS")


@pytest.fixture(scope="module")
def model():
    return random_linear(int(np.prod(SHAPE)), CLASSES, seed=0)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).uniform(0.2, 0.8, size=(6, *SHAPE)).astype(np.float32)


def _attack(name, model, x, budget=None, **overrides):
    row = attack_registry.get(name)
    params = attack_registry.attack_params(name, AttackConfig(), budget)
    params.update({key: value for key, value in _QUICK.items() if key in params})
    params.update(overrides)
    if row.takes_seed:
        params.setdefault("seed", 3)
    result = row.fn(model, x, **params)
    return np.asarray(getattr(result, "x_adv", result))


@pytest.fixture(params=attack_registry.NAMES)
def name(request):
    return request.param


def test_every_budget_kind_is_checked(name):
    assert attack_registry.get(name).budget in _BUDGETS


def test_zero_budget_returns_x(name, model, x):
    budget = attack_registry.get(name).budget
    if budget != "eps":
        pytest.skip(f"{name}: budget {budget} has no zero (its ball is checked below)")
    np.testing.assert_array_equal(_attack(name, model, x, 0.0), x)


def test_output_stays_in_the_box_and_the_budget(name, model, x):
    row = attack_registry.get(name)
    value = _BUDGETS[row.budget]
    # x lies in [0.2, 0.8]: an eps step of 0.1 would leave this box, which must hold it
    low, high = (0.15, 0.85) if row.budget == "eps" else (0.0, 1.0)
    x_adv = _attack(name, model, x, value, clip_min=low, clip_max=high)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= low - 1e-6 and x_adv.max() <= high + 1e-6
    assert _ball_holds(row.budget, value, x, x_adv, model)


def test_y_none_attacks_the_models_own_prediction(name, model, x):
    value = _BUDGETS[attack_registry.get(name).budget]
    predicted = np.asarray(model(x)).argmax(axis=1)
    np.testing.assert_allclose(_attack(name, model, x, value),
                               _attack(name, model, x, value, y=predicted), atol=1e-6)


@pytest.mark.parametrize("bad", ["box", "budget"])
def test_bad_arguments_raise_naming_them(name, model, x, bad):
    row = attack_registry.get(name)
    if bad == "box":
        with pytest.raises(ValueError, match="clip_min"):
            _attack(name, model, x, _BUDGETS[row.budget], clip_min=0.9, clip_max=0.1)
    else:
        with pytest.raises(ValueError, match=f"{row.budget}=-"):
            _attack(name, model, x, _BUDGETS[row.budget], **{row.budget: -0.5})
