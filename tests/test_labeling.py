import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_edd import models
from keras_edd.defense import labeling


def test_uncertainty_exact_on_known_passes():
    # Two inputs, N = 4 passes, 3 classes, chosen so sigma is easy by hand.
    passes = np.zeros((4, 2, 3), np.float32)
    passes[:, 0, 0] = [1, 3, 1, 3]        # mean 2, squared deviations 1 each -> 4 / 4 = 1
    passes[:, 0, 2] = [0, 0, 0, 4]        # mean 1, squared deviations 1,1,1,9 -> 12 / 4 = 3
    passes[:, 1, :] = [[5, -5, 2]] * 4    # identical passes -> 0
    np.testing.assert_allclose(labeling.uncertainty(passes).numpy(), [1 + 3, 0.0])


class _ScriptedModel:
    """A "model" whose passes are known: logits = first two pixels, plus, in
    training mode, 1 on every other pass (the batch is tiled pass-major and
    holds 2 images)."""

    def __call__(self, x, training=False):
        flat = tf.reshape(x, [tf.shape(x)[0], -1])[:, :2]
        if not training:
            return flat
        n = tf.shape(flat)[0]
        noise = tf.cast((tf.range(n) // 2) % 2, tf.float32)[:, None]  # passes 0,1,0,1
        return flat + noise

    non_trainable_variables = ()


def test_mc_dropout_logits_tiles_passes():
    x = tf.reshape(tf.range(8, dtype=tf.float32), [2, 2, 2, 1])
    out = labeling.mc_dropout_logits(_ScriptedModel(), x, 4).numpy()
    assert out.shape == (4, 2, 2)
    # copies are laid out pass-major: rows 0,1 = pass 0; 2,3 = pass 1; ...
    np.testing.assert_allclose(out[:, 0], [[0, 1], [1, 2], [0, 1], [1, 2]])
    np.testing.assert_allclose(out[:, 1], [[4, 5], [5, 6], [4, 5], [5, 6]])
    # sigma: each logit alternates +0/+1 or +1/+0 across passes -> variance 0.25 per class
    np.testing.assert_allclose(labeling.uncertainty(out).numpy(), [0.5, 0.5])


def test_mc_uncertainty_deterministic_given_seed_and_restores_state():
    keras.utils.set_random_seed(0)
    model = models.cleverhans_cnn(10)
    images = np.random.default_rng(0).integers(0, 256, (50, 28, 28, 1), dtype=np.uint8)
    states = [v.numpy().copy() for v in model.non_trainable_variables]
    a = labeling.mc_uncertainty(model, images, passes=5, seed=3, batch_size=16)
    b = labeling.mc_uncertainty(model, images, passes=5, seed=3, batch_size=16)
    c = labeling.mc_uncertainty(model, images, passes=5, seed=4, batch_size=16)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (50,) and (a > 0).all() and not np.array_equal(a, c)
    for v, before in zip(model.non_trainable_variables, states):
        np.testing.assert_array_equal(v.numpy(), before)


def test_mc_uncertainty_zero_without_dropout():
    keras.utils.set_random_seed(0)
    model = models.cleverhans_cnn(10, input_dropout=0.0, hidden_dropout=0.0)
    images = np.random.default_rng(0).random((8, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(labeling.mc_uncertainty(model, images, passes=3), 0.0, atol=1e-10)


def test_mc_uncertainty_rejects_one_pass():
    with pytest.raises(ValueError, match="passes=1"):
        labeling.mc_uncertainty(None, np.zeros((1, 28, 28, 1)), passes=1)


def test_outlier_labels_exact():
    sigma = np.array([0.0, 1.0, 2.0, 4.0, 8.0])
    labels = np.array([0, 1, 2, 0, 1])
    k = labeling.outlier_labels(labels, sigma, 4.0, alpha=0.9, num_classes=3)
    assert k.shape == (5, 4)
    np.testing.assert_allclose(k.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(k[:, 3], [0, 0.225, 0.45, 0.9, 0.9], rtol=1e-6)  # 8 > max: capped
    np.testing.assert_allclose(k[np.arange(5), labels], [1, 0.775, 0.55, 0.1, 0.1], rtol=1e-6)
    others = k.copy()
    others[np.arange(5), labels] = 0
    others[:, 3] = 0
    assert (others == 0).all()


def test_alpha_zero_gives_one_hot():
    k = labeling.outlier_labels([2, 0], [0.3, 0.9], 0.9, alpha=0.0, num_classes=3)
    np.testing.assert_array_equal(k, [[0, 0, 1, 0], [1, 0, 0, 0]])


@pytest.mark.parametrize("kwargs,message", [({"alpha": 1.5}, "alpha=1.5"),
                                            ({"alpha": -0.1}, "alpha=-0.1")])
def test_bad_alpha(kwargs, message):
    with pytest.raises(ValueError, match=message):
        labeling.outlier_labels([0], [1.0], 1.0, num_classes=2, **kwargs)


def test_distillation_labels_are_softmax_over_temperature():
    logits = np.array([[10.0, 0.0, -10.0], [1.0, 2.0, 3.0]], np.float32)
    got = labeling.distillation_labels(logits, 100.0)
    expected = np.exp(logits / 100.0) / np.exp(logits / 100.0).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[0, 0] < 0.4  # T = 100 makes the labels nearly uniform
    with pytest.raises(ValueError, match="temperature=0"):
        labeling.distillation_labels(logits, 0)


def test_sigma_statistics():
    stats = labeling.sigma_statistics([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (stats["min"], stats["median"], stats["max"], stats["count"]) == (1.0, 3.0, 5.0, 5)


def test_bfloat16_sigma_close_to_float32_sigma():
    """bfloat16 passes draw their dropout masks in bfloat16, so for one seed the two
    precisions sample different masks: sigma agrees statistically, not bitwise.
    Tolerance (N = 50 passes, 32 images): mean sigma within 5 %, median per-image
    relative difference below 15 % (float32 with another seed differs by ~4 %)."""
    keras.utils.set_random_seed(0)
    teacher = models.cleverhans_cnn(10)
    images = np.random.default_rng(1).integers(0, 256, (32, 28, 28, 1), dtype=np.uint8)
    fp32 = labeling.mc_uncertainty(teacher, images, passes=50, seed=3)
    bf16 = labeling.mc_uncertainty(teacher, images, passes=50, seed=3, precision="mixed_bfloat16")
    again = labeling.mc_uncertainty(teacher, images, passes=50, seed=3, precision="mixed_bfloat16")
    assert bf16.dtype == np.float32 and (bf16 > 0).all()
    np.testing.assert_array_equal(bf16, again)  # still deterministic given the seed
    assert abs(bf16.mean() / fp32.mean() - 1) < 0.05
    assert np.median(np.abs(bf16 - fp32) / fp32) < 0.15
    assert models.model_precision(teacher) == "float32"  # labelled through a copy


def test_mc_uncertainty_rejects_unknown_precision():
    with pytest.raises(ValueError, match="precision='float16'"):
        labeling.mc_uncertainty(models.cleverhans_cnn(10), np.zeros((2, 28, 28, 1)), passes=2,
                                precision="float16")
