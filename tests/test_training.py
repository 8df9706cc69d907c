import keras
import numpy as np
import pytest

from conftest import keras_linear
from keras_edd import files, models
from keras_edd.defense import losses, training




def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_one_adam_step_matches_hand_computation(temperature):
    rng = np.random.default_rng(1)
    x = rng.random((8, 2, 2, 1)).astype(np.float32)
    targets = _softmax(rng.normal(size=(8, 3)))
    model = keras_linear(3, seed=0)
    w0, b0 = (v.numpy().copy() for v in model.trainable_variables)
    lr = 0.01
    training.fit(model, x, targets, epochs=1, batch_size=8, optimizer="adam", learning_rate=lr,
                 temperature=temperature, progress=False)
    flat = x.reshape(8, 4)
    # d/dz of mean_i -sum_j k_ij log softmax(z_i / T)_j  =  (softmax(z/T) - k) / (T * batch)
    dz = (_softmax((flat @ w0 + b0) / temperature) - targets) / (temperature * 8)
    grads = (flat.T @ dz, dz.sum(axis=0))
    # First Adam step: m = (1-b1) g, v = (1-b2) g^2, bias-corrected step lr * m_hat / (sqrt(v_hat)+eps)
    b1, b2, eps = 0.9, 0.999, 1e-7
    for var, start, g in zip(model.trainable_variables, (w0, b0), grads):
        step = lr * np.sqrt(1 - b2) / (1 - b1) * ((1 - b1) * g) / (np.sqrt((1 - b2) * g * g) + eps)
        np.testing.assert_allclose(var.numpy(), start - step, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_logit_penalty_shrinks_logits():
    rng = np.random.default_rng(2)
    x = rng.random((64, 2, 2, 1)).astype(np.float32)
    targets = training.one_hot(rng.integers(0, 3, 64), 3)
    norms = []
    for weight in (0.0, 1.0):
        model = keras_linear(3, seed=3)
        training.fit(model, x, targets, epochs=30, batch_size=16, learning_rate=0.05,
                     temperature=4.0, penalty_weight=weight, progress=False)
        norms.append(float(np.mean(np.square(model(x).numpy()))))
    assert norms[1] < 0.5 * norms[0]


def _tiny_run(tmp_path, epochs, name="run", precision="float32", cnn=True):
    """`epochs` of the training loop with checkpoints, logs and eval data: the paper's CNN
    on 28x28 digits, or (cnn=False, for what does not depend on the model) a linear model
    on 4x4 ones."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, *((28, 28) if cnn else (4, 4)), 1), dtype=np.uint8)
    y = training.one_hot(np.arange(96) % 10, 10)
    keras.utils.set_random_seed(5)
    model = (models.cleverhans_cnn(10, precision=precision) if cnn
             else keras_linear(10, input_shape=(4, 4, 1)))
    history = training.fit(model, x, y, epochs=epochs, batch_size=32, seed=5,
                           checkpoint_dir=str(tmp_path / name / "ckpt"),
                           log_dir=str(tmp_path / name / "logs"), progress=False,
                           eval_data=(x[:20], np.arange(20) % 10))
    return model, history


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path, precision):
    straight, _ = _tiny_run(tmp_path, 3, "straight", precision)
    _tiny_run(tmp_path, 1, "resumed", precision)  # "killed" after epoch 1
    resumed, history = _tiny_run(tmp_path, 3, "resumed", precision)
    assert history["resumed_from_epoch"] == 1 and history["epoch"] == [1, 2, 3]
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # The history survives the restart: every epoch, with the uninterrupted run's values.
    _, straight_history = _tiny_run(tmp_path, 3, "straight", precision)  # finished: trains nothing
    assert straight_history["epoch"] == [1, 2, 3]
    np.testing.assert_allclose(history["train/loss"], straight_history["train/loss"], rtol=1e-6)
    assert history["training_seconds"] == pytest.approx(sum(history["epoch_seconds"]))


@pytest.mark.slow
def test_same_seed_same_weights_and_logs(tmp_path):
    a, history = _tiny_run(tmp_path, 1, "a")
    b, _ = _tiny_run(tmp_path, 1, "b")
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert history["train/loss"][0] > 0 and "eval/accuracy" in history
    assert any(name.startswith("events.out.tfevents") for name in
               __import__("os").listdir(tmp_path / "a" / "logs"))


def test_evaluate_reports_detected_rate():
    model = keras_linear(3, seed=0)
    model.layers[-1].set_weights([np.zeros((4, 3), np.float32), np.array([0, 0, 5], np.float32)])
    x = np.zeros((5, 2, 2, 1), np.float32)
    result = models.evaluate_clean(model, x, np.array([0, 1, 2, 2, 0]), outlier_class=2)
    assert result == {"accuracy": 0.4, "detected": 1.0}


def test_bad_targets_and_batch():
    model = keras_linear(3, seed=0)
    x = np.zeros((4, 2, 2, 1), np.float32)
    with pytest.raises(ValueError, match="do not match"):
        training.fit(model, x, np.zeros((4, 5), np.float32), epochs=1, batch_size=2)
    with pytest.raises(ValueError, match="batch_size=8 exceeds"):
        training.fit(model, x, np.zeros((4, 3), np.float32), epochs=1, batch_size=8)


def test_logit_statistics_by_hand():
    from keras_edd.evaluation.metrics import logit_statistics
    model = keras_linear(3, seed=0)
    model.layers[-1].set_weights([np.zeros((4, 3), np.float32), np.array([3, -1, 0], np.float32)])
    stats = logit_statistics(model, np.zeros((4, 2, 2, 1), np.float32))
    assert stats["mean_abs"] == pytest.approx(4 / 3)
    assert stats["mean_max"] == pytest.approx(3.0)
    assert stats["mean_top2_gap"] == pytest.approx(3.0)


def _digits(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 28, 28, 1), dtype=np.float32),
            training.one_hot(np.arange(n) % 10, 10))


@pytest.mark.slow
def test_one_bfloat16_step_decreases_the_float32_loss():
    x, y = _digits()
    keras.utils.set_random_seed(0)
    model = models.cleverhans_cnn(10, input_dropout=0.0, hidden_dropout=0.0,
                                  precision="mixed_bfloat16")
    before = float(losses.temperature_cross_entropy(y, model(x)))
    training.fit(model, x, y, epochs=1, batch_size=32, learning_rate=1e-3, progress=False,
                 log_epochs=False)
    after = float(losses.temperature_cross_entropy(y, model(x)))
    assert model(x).dtype == "float32"
    assert after < before - 0.01
    assert {v.dtype for v in model.trainable_variables} == {"float32"}


@pytest.mark.slow
def test_bfloat16_trained_model_loads_and_runs_in_float32(tmp_path):
    x, y = _digits(64, seed=1)
    keras.utils.set_random_seed(2)
    trained = models.cleverhans_cnn(10, precision="mixed_bfloat16")
    training.fit(trained, x, y, epochs=3, batch_size=32, progress=False, log_epochs=False)
    path = str(tmp_path / "model.keras")
    files.save_model(trained, path)
    loaded = models.load_model(path, num_outputs=10)
    assert models.model_precision(loaded) == "float32"
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    assert {v.dtype for v in loaded.variables if "seed_generator" not in v.path} == {"float32"}
    for a, b in zip(trained.trainable_variables, loaded.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    bf16_logits = models.predict_logits(trained, x[:16])
    fp32_logits = models.predict_logits(loaded, x[:16])
    assert fp32_logits.dtype == np.float32
    # Same weights, bfloat16 vs float32 arithmetic: close logits; the same class
    # wherever the bfloat16 model's top-2 margin exceeds that rounding.
    spread = np.ptp(fp32_logits)
    np.testing.assert_allclose(bf16_logits, fp32_logits, atol=0.05 * spread)
    top2 = np.sort(bf16_logits, axis=1)
    clear = top2[:, -1] - top2[:, -2] > 0.1 * spread
    assert clear.sum() >= 8
    np.testing.assert_array_equal(bf16_logits[clear].argmax(1), fp32_logits[clear].argmax(1))


def _logged_steps(log_dir):
    """(tag, step) of every summary in the event files of log_dir, with repeats."""
    import glob
    import os

    import tensorflow as tf
    found = []
    for path in glob.glob(os.path.join(str(log_dir), "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            found += [(value.tag, event.step) for value in event.summary.value]
    return found


def test_disk_full_at_a_checkpoint_is_one_line_leaves_no_temp_and_no_repeated_steps(
        tmp_path, monkeypatch):
    """A full disk during a checkpoint gave a multi-line ResourceExhaustedError, left a
    ckpt-N_temp/ folder that kept the disk full, and the resumed run logged the epoch
    to TensorBoard a second time."""
    import os

    import tensorflow as tf
    real_save = tf.train.CheckpointManager.save

    def full_disk(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == 2:
            os.makedirs(os.path.join(self.directory, "ckpt-2_temp"))
            raise tf.errors.ResourceExhaustedError(None, None, "ckpt-2_temp/part-00000; No "
                                                   "space left on device\n\tdetails")
        return real_save(self, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    folder = str(tmp_path / "run" / "ckpt")
    with pytest.raises(ValueError) as raised:
        _tiny_run(tmp_path, 3, cnn=False)
    assert str(raised.value) == (
        f"checkpoint folder {folder!r}: cannot write the checkpoint of epoch 2 "
        "(ckpt-2_temp/part-00000; No space left on device); make room and rerun the same "
        "command to resume")
    assert not os.path.exists(os.path.join(folder, "ckpt-2_temp"))
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    _, history = _tiny_run(tmp_path, 3, cnn=False)  # room made: resumed from epoch 1
    assert history["resumed_from_epoch"] == 1
    steps = _logged_steps(tmp_path / "run" / "logs")
    assert sorted(set(steps)) == sorted(steps)
    assert sorted(step for tag, step in steps if tag == "train/loss") == [1, 2, 3]
