"""Sanity checks (probabilities, zero gradients, stochastic models) and bad arguments."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_edd.attacks import (
    carlini_wagner_l2,
    check_deterministic,
    check_gradient_masking,
    check_logits,
    fgsm,
    jsma,
    jsma_untargeted,
    pgd,
    run_all_checks,
    zero_gradient_fraction,
)

WEIGHTS = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)


def logits_model(x):
    return tf.reshape(x, [tf.shape(x)[0], -1]) @ WEIGHTS


def probability_model(x):
    return tf.nn.softmax(logits_model(x))


def saturated_model(x):
    """Z = 1000 * onehot(argmax): piecewise constant, so every gradient is 0."""
    logits = logits_model(x)
    return 1000.0 * tf.stop_gradient(tf.one_hot(tf.argmax(logits, 1), 3)) + 0.0 * logits


X = np.random.default_rng(1).uniform(0.0, 1.0, (5, 2, 3)).astype(np.float32)


def test_probabilities_are_flagged():
    with pytest.warns(RuntimeWarning, match="probabilities"):
        assert check_logits(probability_model, X) is True
    with pytest.raises(ValueError, match="probabilities"):
        check_logits(probability_model, X, action="raise")
    assert check_logits(logits_model, X, action="raise") is False
    with pytest.warns(RuntimeWarning, match="probabilities"):
        fgsm(probability_model, X, eps=0.1)


def test_zero_gradients_are_flagged():
    assert zero_gradient_fraction(saturated_model, X) == 1.0
    assert zero_gradient_fraction(logits_model, X) < 0.1
    with pytest.warns(RuntimeWarning, match="gradient masking"):
        assert check_gradient_masking(saturated_model, X) == 1.0
    with pytest.raises(ValueError, match="gradient masking"):
        check_gradient_masking(saturated_model, X, action="raise")


def test_stochastic_models_are_flagged():
    inputs = keras.Input((2, 3))
    hidden = keras.layers.Dropout(0.5)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    keras.utils.set_random_seed(0)
    with pytest.warns(RuntimeWarning, match="stochastic"):
        assert check_deterministic(lambda x: model(x, training=True), X) is True
    assert check_deterministic(model, X, action="raise") is False  # training=False
    report = run_all_checks(logits_model, X, action="raise")
    assert report["probabilities"] is False and report["stochastic"] is False
    assert report["zero_gradient_fraction"] < 0.1


BAD_ARGUMENTS = [
    (fgsm, dict(eps=-0.1), "eps=-0.1"),
    (fgsm, dict(eps=float("nan")), "eps=nan"),
    (fgsm, dict(eps=0.1, clip_min=1.0, clip_max=0.0), "clip_min"),
    (fgsm, dict(eps=0.1, loss="hinge"), "loss"),
    (fgsm, dict(eps=0.1, targeted=True), "y=None"),
    (fgsm, dict(eps=0.1, y=[0, 1, 7, 0, 0]), r"\[0, 2\]"),
    (fgsm, dict(eps=0.1, y=[0, 1]), "shape"),
    (fgsm, dict(eps=0.1, outlier_class=5), "outlier_class=5"),
    (pgd, dict(eps=0.1, eps_iter=-1.0, nb_iter=3), "eps_iter"),
    (pgd, dict(eps=0.1, eps_iter=0.1, nb_iter=-3), "nb_iter"),
    (pgd, dict(eps=0.1, eps_iter=0.1, nb_iter=3, nb_restarts=0), "nb_restarts"),
    (pgd, dict(eps=0.1, eps_iter=0.1, nb_iter=2.5), "nb_iter"),
    (carlini_wagner_l2, dict(confidence=-1.0), "confidence=-1.0"),
    (carlini_wagner_l2, dict(optimizer="sgd"), "optimizer='sgd'"),
    (carlini_wagner_l2, dict(learning_rate=0.0), "learning_rate"),
    (carlini_wagner_l2, dict(binary_search_steps=0), "binary_search_steps"),
    (carlini_wagner_l2, dict(max_iterations=0), "max_iterations"),
    (carlini_wagner_l2, dict(initial_const=0.0), "initial_const"),
    (jsma_untargeted, dict(target_mode="some"), "target_mode"),
]


@pytest.mark.parametrize("attack,kwargs,message", BAD_ARGUMENTS)
def test_bad_arguments_raise(attack, kwargs, message):
    with pytest.raises(ValueError, match=message):
        attack(logits_model, X, **kwargs)


@pytest.mark.parametrize("kwargs,message", [
    (dict(gamma=0.0), r"gamma=0.0: allowed range is \(0.0, 1.0\]"),
    (dict(gamma=1.5), "gamma=1.5"),
    (dict(theta=0.0), "theta=0.0"),
    (dict(batch_chunk=0), "batch_chunk"),
    (dict(pair_search="fast"), "pair_search"),
    (dict(pair_search="top2", use_logits=True), "top2"),
])
def test_bad_jsma_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        jsma(logits_model, X, [0] * 5, **kwargs)


def test_inputs_outside_the_box_raise():
    with pytest.raises(ValueError, match="clip_min, clip_max"):
        fgsm(logits_model, X + 2.0, eps=0.1)


# Every attack, called once with its usual arguments; `label` is the label argument.
ATTACKS = {
    "fgsm": lambda model, x, label=None: fgsm(model, x, eps=0.1, y=label),
    "pgd": lambda model, x, label=None: pgd(model, x, eps=0.1, eps_iter=0.05, nb_iter=2,
                                            y=label),
    "jsma": lambda model, x, label=None: jsma(model, x, [1, 2, 0, 1, 2] if label is None
                                              else label),
    "cw": lambda model, x, label=None: carlini_wagner_l2(model, x, y=label, max_iterations=2,
                                                         binary_search_steps=1),
}
X_NAN = X.copy()
X_NAN[1, 0, 2] = np.nan


@pytest.mark.parametrize("attack", ATTACKS)
def test_nan_inputs_raise(attack):
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value\(s\) .* in 1 of 5"):
        ATTACKS[attack](logits_model, X_NAN)


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("label", [
    pytest.param(np.array([0, np.nan, 1, 2, 0]), id="nan"),
    pytest.param(np.where(np.eye(3)[[0, 1, 2, 0, 1]] == 1, np.nan, 0.0), id="nan-one-hot"),
    pytest.param(np.array([0.0, 1.0, np.inf, 2.0, 0.0]), id="inf"),
])
def test_nan_labels_raise(attack, label):
    with pytest.raises(ValueError, match=r"^y \(.*labels\) contains \d+ non-finite"):
        ATTACKS[attack](logits_model, X, label)


def nan_logits_model(x):
    """Logits with NaN for the second example, as from a model with a broken unit."""
    logits = logits_model(x)
    return tf.where(tf.range(tf.shape(x)[0])[:, None] == 1, np.nan, logits)


def inf_logits_model(x):
    return logits_model(x) * np.float32(np.inf)


@pytest.mark.parametrize("attack", ATTACKS)
def test_non_finite_logits_raise(attack):
    with pytest.raises(ValueError, match=r"model_fn returned non-finite logits \(NaN/inf\) "
                                         r"for 1 of 5 inputs"):
        ATTACKS[attack](nan_logits_model, X)
    with pytest.raises(ValueError, match="model_fn returned non-finite logits"):
        ATTACKS[attack](inf_logits_model, X)


def test_check_warnings_use_the_checks_threshold():
    from keras_edd.attacks import checks
    at = checks.ZERO_GRADIENT_THRESHOLD
    quiet = {"probabilities": False, "stochastic": False, "zero_gradient_fraction": at}
    assert checks.check_warnings("f", quiet) == []
    loud = {"probabilities": True, "stochastic": True, "zero_gradient_fraction": 0.1,
            "zero_gradient_fraction_adaptive": at + 0.01}
    found = checks.check_warnings("f", loud)
    assert len(found) == 3 and all(line.startswith("f: ") for line in found)
    assert "zero_gradient_fraction_adaptive" in found[2] and "gradient masking" in found[2]


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("label,message", [
    pytest.param(np.array([0.0, 1.7, 1.0, 2.0, 0.0]), r"^y holds float64 values that are not "
                 r"whole numbers \(e.g. \[0.0, 1.7, 1.0\]\): expected integer labels in \[0, 2\]",
                 id="fractional"),
    pytest.param(np.eye(4)[[0, 1, 2, 0, 1]], r"^y has shape \(5, 4\): one-hot rows must have "
                 r"exactly the model's 3 columns", id="one-hot-too-wide"),
    pytest.param(np.eye(2)[[0, 1, 1, 0, 1]], r"^y has shape \(5, 2\)", id="one-hot-too-narrow"),
])
def test_fractional_or_wrong_width_labels_raise(attack, label, message):
    """Float labels were truncated silently and a width-11 one-hot was accepted on a
    10-logit model: labels are integers in range or one-hot rows of the model's width."""
    with pytest.raises(ValueError, match=message):
        ATTACKS[attack](logits_model, X, label)


def test_whole_float_labels_are_integer_labels():
    from keras_edd.attacks import utils
    labels = utils.prepare_labels(np.array([0.0, 2.0, 1.0]), 3, 3)
    np.testing.assert_array_equal(labels.numpy(), [0, 2, 1])
