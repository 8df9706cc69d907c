import keras
import numpy as np
import pytest

from conftest import keras_linear
from keras_edd.evaluation import substitute

SHAPE = (2, 2, 1)




def _pixel_oracle(permutation=(0, 1, 2)):
    """Class = index of the brightest of the first three pixels, then permuted."""
    permutation = np.asarray(permutation)

    def oracle(images):
        return permutation[np.asarray(images).reshape(len(images), -1)[:, :3].argmax(axis=1)]
    return oracle


def _points(n, seed=0):
    return np.random.default_rng(seed).random((n,) + SHAPE).astype(np.float32)


def test_augmentation_step_is_sign_of_the_label_logit_gradient_clipped():
    model = keras_linear(3, SHAPE)
    kernel = np.array([[1.0, -2.0, 0.0],
                       [-0.5, 0.0, 3.0],
                       [0.0, 1.0, -1.0],
                       [2.0, 2.0, 2.0]], np.float32)
    model.layers[-1].set_weights([kernel, np.zeros(3, np.float32)])
    x = np.array([[0.5, 0.95, 0.02, 0.3], [0.05, 0.5, 1.0, 0.99]], np.float32).reshape(2, *SHAPE)
    labels = np.array([0, 2])
    out = substitute.jacobian_augment(model, x, labels, 0.1)
    # d Z_label / dx = kernel[:, label]; a zero weight leaves the pixel unchanged.
    expected = np.clip(x.reshape(2, 4) + 0.1 * np.sign(kernel[:, labels].T), 0.0, 1.0)
    np.testing.assert_allclose(out.reshape(2, 4), expected, atol=1e-7)
    np.testing.assert_allclose(out.reshape(2, 4), [[0.6, 0.85, 0.02, 0.4],
                                                   [0.05, 0.6, 0.9, 1.0]], atol=1e-6)
    flipped = substitute.jacobian_augment(model, x, labels, -0.1)
    np.testing.assert_allclose(
        flipped.reshape(2, 4), np.clip(x.reshape(2, 4) - 0.1 * np.sign(kernel[:, labels].T),
                                       0.0, 1.0), atol=1e-7)


def _recording(oracle):
    queried = []

    def recorded(images):
        queried.append(np.array(images))
        return oracle(images)
    return recorded, queried


@pytest.mark.slow
def test_set_doubles_and_every_labelled_point_is_one_query():
    # On 28x28 inputs the CNN's gradient signs change after each round's training,
    # so no augmented point repeats and S_rho has |S_0| * 2**rho points.
    oracle, queried = _recording(_pixel_oracle(np.arange(10)))
    x0 = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    model, report = substitute.train_jacobian_substitute(
        oracle, x0, num_classes=10, rounds=3, lam=0.1, epochs_per_round=1, batch_size=4)
    assert report["set_sizes"] == [4, 8, 16, 32]
    assert report["duplicates_dropped"] == 0
    all_queried = np.concatenate(queried)
    assert report["oracle_queries"] == len(all_queried) == 4 * 2 ** 3
    assert len(np.unique(all_queried.reshape(len(all_queried), -1), axis=0)) == 32
    # S_0 first, then each round queries only its new points.
    assert [len(q) for q in queried] == [4, 4, 8, 16]
    np.testing.assert_array_equal(queried[0], x0)
    assert [e["queries"] for e in report["per_round"]] == [4, 8, 16, 32]


@pytest.mark.slow
def test_repeated_points_are_neither_queried_nor_added():
    # A linear substitute has the same Jacobian everywhere: re-augmenting x in the
    # next round, with signs unchanged, lands on a point already labelled.
    oracle, queried = _recording(_pixel_oracle())
    _, report = substitute.train_jacobian_substitute(
        oracle, _points(6), num_classes=3, rounds=3, lam=0.1, epochs_per_round=1,
        batch_size=4, model_fn=keras_linear)
    all_queried = np.concatenate(queried)
    distinct = len(np.unique(all_queried.reshape(len(all_queried), -1), axis=0))
    assert report["duplicates_dropped"] > 0
    assert report["oracle_queries"] == len(all_queried) == distinct == report["set_sizes"][-1]
    sizes, dropped = report["set_sizes"], [e["duplicates_dropped"] for e in report["per_round"][:-1]]
    assert all(sizes[r + 1] == 2 * sizes[r] - dropped[r] for r in range(3))


def test_zero_rounds_trains_on_the_initial_set_only():
    _, report = substitute.train_jacobian_substitute(
        _pixel_oracle(), _points(5), num_classes=3, rounds=0, epochs_per_round=1, batch_size=8,
        model_fn=keras_linear)
    assert report["set_sizes"] == [5] and report["oracle_queries"] == 5


@pytest.mark.slow
def test_periodic_step_flips_sign_every_tau_rounds():
    _, report = substitute.train_jacobian_substitute(
        _pixel_oracle(), _points(4), num_classes=3, rounds=4, lam=0.1, tau=2,
        epochs_per_round=1, batch_size=4, model_fn=keras_linear)
    np.testing.assert_allclose([e["step"] for e in report["per_round"][:-1]],
                               [0.1, 0.1, -0.1, -0.1])


@pytest.mark.slow
def test_oracle_labels_are_the_only_supervision():
    # The oracle answers a fixed permutation of the "true" classes; the substitute
    # must learn the permutation, not the true classes.
    permutation = (2, 0, 1)
    held_out = _points(300, seed=5)
    model, report = substitute.train_jacobian_substitute(
        _pixel_oracle(permutation), _points(32, seed=1), num_classes=3, rounds=2,
        epochs_per_round=40, batch_size=16, learning_rate=0.05, model_fn=keras_linear,
        agreement_data=(held_out, _pixel_oracle(permutation)(held_out)))
    predictions = model.predict(held_out, verbose=0).argmax(axis=1)
    assert substitute.agreement(predictions, _pixel_oracle(permutation)(held_out)) > 0.85
    assert substitute.agreement(predictions, _pixel_oracle()(held_out)) < 0.2
    assert report["per_round"][-1]["agreement"] > 0.85


@pytest.mark.slow
def test_same_seed_same_substitute_and_other_seed_differs():
    def run(seed):
        model, report = substitute.train_jacobian_substitute(
            _pixel_oracle(), _points(8), num_classes=3, rounds=2, epochs_per_round=2,
            batch_size=4, seed=seed,
            model_fn=lambda n, s: keras.Sequential([
                keras.Input(s), keras.layers.Dropout(0.3), keras.layers.Flatten(),
                keras.layers.Dense(n)]))
        return [w.copy() for w in model.get_weights()], report["oracle_queries"]

    first, second, other = run(0), run(0), run(1)
    for a, b in zip(first[0], second[0]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first[0], other[0]))


def test_outlier_answers_are_kept_as_class_n():
    def oracle(images):
        labels = _pixel_oracle()(images)
        return np.where(np.asarray(images).reshape(len(images), -1)[:, 3] > 0.8, 3, labels)

    model, report = substitute.train_jacobian_substitute(
        oracle, _points(16), num_classes=3, outlier_class=3, rounds=1, epochs_per_round=1,
        batch_size=8, model_fn=keras_linear)
    assert model.output_shape[-1] == 4 and report["outputs"] == 4
    assert report["outlier_answers"] > 0
    with pytest.raises(ValueError, match="oracle label 3 outside 0..2"):
        substitute.train_jacobian_substitute(oracle, _points(16), num_classes=3, rounds=0,
                                             epochs_per_round=1, batch_size=8,
                                             model_fn=keras_linear)


def test_default_substitute_is_the_targets_family():
    model = substitute._build(None, 10, (28, 28, 1))  # what model_fn=None trains
    assert model.name == "substitute_J" and model.output_shape[-1] == 10
    assert model.count_params() == 710_218
    with pytest.raises(ValueError, match="model_fn gave 3 outputs, expected 4"):
        substitute._build(lambda n, shape: keras_linear(3, shape), 4, SHAPE)


@pytest.mark.slow  # trains the paper's CNN through the training loop
def test_default_substitute_trains_the_targets_family():
    model, report = substitute.train_jacobian_substitute(
        _pixel_oracle(), np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), np.uint8),
        num_classes=10, rounds=0,
        epochs_per_round=1, batch_size=4)
    assert model.name == "substitute_J" and model.output_shape[-1] == 10
    assert model.count_params() == 710_218


def test_agreement_helper():
    assert substitute.agreement([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    with pytest.raises(ValueError, match="3 substitute predictions but 2"):
        substitute.agreement([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="zero predictions"):
        substitute.agreement([], [])


@pytest.mark.parametrize("kwargs, match", [
    ({"rounds": -1}, "rounds=-1"),
    ({"rounds": 1.5}, "rounds=1.5"),
    ({"lam": 0.0}, "lam=0.0"),
    ({"lam": -0.1}, "lam=-0.1"),
    ({"lam": float("nan")}, "lam=nan"),
    ({"tau": 0}, "tau=0"),
    ({"epochs_per_round": 0}, "epochs_per_round=0"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"outlier_class": 5}, "outlier_class=5"),
    ({"x_initial": np.zeros((0,) + SHAPE, np.float32)}, r"x_initial of shape \(0, 2, 2, 1\)"),
    ({"x_initial": np.full((3,) + SHAPE, 2.0, np.float32)}, r"span \[2.0, 2.0\]"),
    ({"x_initial": np.zeros((3,) + SHAPE, np.float32)}, "2 repeated inputs"),
])
def test_bad_arguments_raise_naming_the_value(kwargs, match):
    args = {"x_initial": _points(4), "num_classes": 3, "model_fn": keras_linear,
            "epochs_per_round": 1, "batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        substitute.train_jacobian_substitute(_pixel_oracle(), args.pop("x_initial"), **args)


# ---------------------------------------------------------------- surrogate J in a run


def test_initial_set_is_the_last_inputs_disjoint_from_the_attacked_ones():
    from keras_edd.runs import substitute_run
    indices = substitute_run.initial_indices(1000, 850, 150)
    np.testing.assert_array_equal(indices, np.arange(850, 1000))
    assert not set(indices) & set(range(850))
    assert list(substitute_run.initial_indices(40, 12, 10)) == list(range(30, 40))
    with pytest.raises(ValueError, match="num_examples=851 attacked test inputs plus "
                                         "substitute_initial=150 .* exceed the 1000 test"):
        substitute_run.initial_indices(1000, 851, 150)


@pytest.mark.parametrize("field, value, match", [
    ("initial", 0, "substitute_initial=0"),
    ("rounds", -1, "substitute_rounds=-1"),
    ("lam", 0.0, "substitute_lam=0.0"),
    ("lam", 1.5, "substitute_lam=1.5"),
    ("tau", -1, "substitute_tau=-1"),
    ("epochs_per_round", 0, "substitute_epochs_per_round=0"),
    ("batch_size", 0, "substitute_batch_size=0"),
])
def test_substitute_config_rejects_bad_values(field, value, match):
    from keras_edd.config import SubstituteConfig
    with pytest.raises(ValueError, match=match):
        SubstituteConfig(**{field: value}).validate()


def test_substitute_config_defaults_and_constant_step():
    from keras_edd.config import SubstituteConfig
    config = SubstituteConfig().validate()
    assert (config.initial, config.rounds, config.lam, config.tau, config.epochs_per_round,
            config.batch_size) == (150, 6, 0.1, 3, 10, 128)
    assert config.resolved_tau == 3 and SubstituteConfig(tau=0).resolved_tau is None
