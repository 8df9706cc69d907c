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


def test_mixed_bfloat16_model_has_float32_logits_and_variables():
    model = models.cleverhans_cnn(10, precision="mixed_bfloat16")
    policies = {layer.name: layer.dtype_policy.name for layer in model.layers[1:]}
    assert policies.pop("logits") == "float32"
    assert set(policies.values()) == {"mixed_bfloat16"}
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    assert model(x).dtype == "float32" and model(x, training=True).dtype == "float32"
    assert model.get_layer("conv3").output.dtype == "bfloat16"
    assert models.model_precision(model) == "mixed_bfloat16"
    assert models.model_precision(models.cleverhans_cnn(10)) == "float32"


def test_with_precision_round_trip_keeps_names_and_weights():
    keras.utils.set_random_seed(1)
    fp32 = models.cleverhans_cnn(11)
    bf16 = models.with_precision(fp32, "mixed_bfloat16")
    assert models.with_precision(fp32, "float32") is fp32
    assert models.model_precision(fp32) == "float32"  # the original is untouched
    back = models.with_precision(bf16, "float32")
    for copy in (bf16, back):
        assert [layer.name for layer in copy.layers] == [layer.name for layer in fp32.layers]
        for a, b in zip(fp32.variables, copy.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert {layer.dtype_policy.name for layer in back.layers} == {"float32"}
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(back(x).numpy(), fp32(x).numpy())
    # bfloat16 keeps 8 significant bits: logits agree to a few percent of their spread.
    np.testing.assert_allclose(bf16(x).numpy(), fp32(x).numpy(), atol=0.05 * np.ptp(fp32(x)))
    sequential = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(),
                                   keras.layers.Dense(3)])
    assert [layer.dtype_policy.name for layer in
            models.with_precision(sequential, "mixed_bfloat16").layers] == [
        "mixed_bfloat16", "float32"]


@pytest.mark.parametrize("bad", ["bfloat16", "float16", "mixed_float16", "", None, 32])
def test_bad_precision_is_named(bad):
    for call in (lambda: models.check_precision(bad),
                 lambda: models.cleverhans_cnn(10, precision=bad),
                 lambda: models.with_precision(models.cleverhans_cnn(10), bad)):
        with pytest.raises(ValueError, match=rf"^precision={bad!r}: allowed values are "
                                             "float32, mixed_bfloat16$"):
            call()


def test_precisions_are_a_light_import():
    import subprocess
    import sys
    code = ("import sys; from keras_edd.config import PRECISIONS, check_precision; "
            "check_precision('mixed_bfloat16'); print(PRECISIONS, 'tensorflow' in sys.modules, "
            "'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["('float32',", "'mixed_bfloat16')", "False", "False"]
