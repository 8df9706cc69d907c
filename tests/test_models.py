import keras
import numpy as np
import pytest

from keras_edd import models


def test_parameter_count_and_shapes():
    model = models.cleverhans_cnn(10)
    assert model.count_params() == models.CLEVERHANS_CNN_PARAMS_10 == 710_218
    assert model.output_shape == (None, 10)
    assert [layer.name for layer in model.layers][1:] == [
        "input_dropout", "conv1", "conv2", "conv3", "hidden_dropout", "flatten", "logits"]
    assert model.get_layer("conv2").output.shape[1:] == (5, 5, 128)


def test_outlier_class_and_colour_input():
    assert models.cleverhans_cnn(11).output_shape == (None, 11)
    assert models.cleverhans_cnn(11).count_params() == 710_218 + 129
    colour = models.cleverhans_cnn(10, (32, 32, 3))
    assert colour.output_shape == (None, 10)
    assert colour.get_layer("conv3").output.shape[1:] == (2, 2, 128)


def test_logits_not_probabilities_and_dropout_only_when_training():
    keras.utils.set_random_seed(0)
    model = models.cleverhans_cnn(10)
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    inference = model(x, training=False).numpy()
    assert not np.allclose(inference.sum(axis=1), 1.0)
    assert (inference < 0).any()
    np.testing.assert_array_equal(inference, model(x, training=False).numpy())
    assert not np.allclose(model(x, training=True).numpy(), model(x, training=True).numpy())


@pytest.mark.parametrize("kwargs,message", [
    ({"num_classes": 1}, "num_classes=1"),
    ({"input_shape": (28, 28)}, "input_shape"),
    ({"hidden_dropout": 1.0}, "hidden_dropout=1.0"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.cleverhans_cnn(**kwargs)
