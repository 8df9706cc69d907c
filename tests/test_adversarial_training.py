import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import keras_linear
from keras_edd import config, models
from keras_edd.defense import adversarial_training as at
from keras_edd.defense import training


def _seed(a, b=0):
    return tf.constant([a, b], tf.int64)




def _sign_model():
    """Two logits (sum x, -sum x): the loss of class 1 increases with every pixel."""
    model = keras_linear(2, seed=0)
    model.layers[-1].set_weights([np.tile([[1.0, -1.0]], (4, 1)).astype(np.float32),
                                  np.zeros(2, np.float32)])
    return model


@pytest.mark.parametrize("adversary", [at.fgsm_rs(0.3), at.pgd(0.2, 0.05, 7)],
                         ids=["fgsm_rs", "pgd"])
def test_adversary_stays_in_the_eps_ball_and_the_box(adversary):
    rng = np.random.default_rng(0)
    x = rng.choice([0.0, 0.1, 0.5, 0.95, 1.0], size=(64, 2, 2, 1)).astype(np.float32)
    target = training.one_hot(rng.integers(0, 3, 64), 3)
    x_adv = adversary(keras_linear(3, seed=0), tf.constant(x), tf.constant(target), _seed(1)).numpy()
    assert np.abs(x_adv - x).max() <= adversary.eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.abs(x_adv - x).max() > 0.5 * adversary.eps  # it did move


def test_fgsm_rs_random_start_is_uniform_in_the_eps_ball():
    eps = 0.3
    x = tf.fill([20000, 2, 2, 1], 0.5)
    delta = (at.random_start(x, eps, _seed(4)) - x).numpy().ravel()
    assert delta.min() >= -eps and delta.max() <= eps
    assert delta.mean() == pytest.approx(0.0, abs=0.005)
    assert delta.var() == pytest.approx(eps ** 2 / 3, rel=0.02)  # variance of U(-eps, eps)
    counts, _ = np.histogram(delta, bins=10, range=(-eps, eps))
    np.testing.assert_allclose(counts / len(delta), 0.1, atol=0.01)
    # Stateless: same key, same start; another step, another start.
    np.testing.assert_array_equal((at.random_start(x, eps, _seed(4)) - x).numpy().ravel(), delta)
    assert not np.array_equal((at.random_start(x, eps, _seed(4, 1)) - x).numpy().ravel(), delta)


def test_fgsm_rs_step_is_1_25_eps_before_projection():
    eps = 0.2
    adversary = at.fgsm_rs(eps)
    assert adversary.step == pytest.approx(1.25 * eps)
    x = tf.fill([500, 2, 2, 1], 0.5)
    target = tf.constant(training.one_hot(np.ones(500, int), 2))
    noise = (at.random_start(x, eps, _seed(7)) - x).numpy()
    delta = (adversary(_sign_model(), x, target, _seed(7)) - x).numpy()
    # The gradient sign is +1 everywhere: delta = clip(noise + 1.25 eps, -eps, eps).
    np.testing.assert_allclose(delta, np.clip(noise + 1.25 * eps, -eps, eps), atol=1e-6)
    unclipped = noise + 1.25 * eps < eps  # starts below -0.25 eps keep the whole step
    assert unclipped.sum() > 100
    np.testing.assert_allclose(delta[unclipped] - noise[unclipped], 1.25 * eps, atol=1e-6)


def test_pgd_adversary_increases_the_loss():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 256)
    x = np.clip(0.5 + 0.2 * (y[:, None] - 1) + 0.1 * rng.normal(size=(256, 4)), 0, 1)
    x = x.reshape(256, 2, 2, 1).astype(np.float32)
    target = training.one_hot(y, 3)
    model = keras_linear(3, seed=0)
    training.fit(model, x, target, epochs=10, batch_size=64, learning_rate=0.05, progress=False,
                 log_epochs=False)

    def loss(images):
        return float(tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
            target, model(images, training=False))))
    x_adv = at.pgd(0.1, 0.02, 10)(model, tf.constant(x), tf.constant(target), _seed(0))
    x_fgsm = at.fgsm_rs(0.1)(model, tf.constant(x), tf.constant(target), _seed(0))
    assert loss(x_adv) > loss(x_fgsm) > loss(x) + 0.1


def test_adversary_crafts_with_dropout_off():
    keras.utils.set_random_seed(0)
    model = models.cleverhans_cnn(10, input_dropout=0.5, hidden_dropout=0.5)
    x = tf.random.stateless_uniform([4, 28, 28, 1], seed=[1, 2])
    target = tf.constant(training.one_hot(np.arange(4), 10))
    adversary = at.pgd(0.3, 0.05, 2)
    np.testing.assert_array_equal(adversary(model, x, target, _seed(5)).numpy(),
                                  adversary(model, x, target, _seed(5)).numpy())


@pytest.mark.slow
def test_one_adversarial_step_trains_on_the_adversarial_batch():
    """fit(adversary=a) == fit on a's x_adv, crafted with the loop's key [seed, step]."""
    rng = np.random.default_rng(1)
    x = rng.random((8, 2, 2, 1)).astype(np.float32)
    targets = training.one_hot(rng.integers(0, 3, 8), 3)
    adversary = at.fgsm_rs(0.1)
    seed = 11
    order = training.epoch_order(8, 8, seed, 0)[0]
    x_adv = adversary(keras_linear(3, seed=0), tf.constant(x[order]), tf.constant(targets[order]),
                      _seed(seed, 0)).numpy()
    a, b = keras_linear(3, seed=0), keras_linear(3, seed=0)
    training.fit(a, x, targets, epochs=1, batch_size=8, learning_rate=0.01, seed=seed,
                 adversary=adversary, progress=False, log_epochs=False)
    training.fit(b, x_adv, targets[order], epochs=1, batch_size=8, learning_rate=0.01,
                 seed=seed, progress=False, log_epochs=False)
    for va, vb, v0 in zip(a.weights, b.weights, keras_linear(3, seed=0).weights):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-5, atol=1e-7)
        assert not np.allclose(va.numpy(), v0.numpy())


def _toy_problem(n, seed):
    """4x4 images, two classes. Pixel 0 is 0.5 +- 0.3 with the label's sign for 90% of
    the examples (robust at eps = 0.2, not perfectly predictive); the other 15
    pixels are 0.5 +- 0.1 with the label's sign (perfectly predictive together,
    useless against eps = 0.2). Plain training uses them all; adversarial
    training should keep pixel 0 only."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sign = 2.0 * y - 1.0
    robust = np.where(rng.random(n) < 0.9, sign, -sign)
    x = 0.5 + 0.1 * sign[:, None] + 0.02 * rng.normal(size=(n, 16))
    x[:, 0] = 0.5 + 0.3 * robust
    return np.clip(x, 0, 1).reshape(n, 4, 4, 1).astype(np.float32), y


@pytest.mark.slow
def test_adversarial_training_raises_robust_accuracy():
    x, y = _toy_problem(1024, 0)
    x_test, y_test = _toy_problem(500, 1)
    robust = {}
    for name, adversary in (("plain", None), ("fgsm_rs", at.fgsm_rs(0.2)),
                            ("pgd", at.pgd(0.2, 0.05, 10))):
        model = keras_linear(2, (4, 4, 1), seed=2)
        training.fit(model, x, training.one_hot(y, 2), epochs=10, batch_size=64,
                     learning_rate=0.05, adversary=adversary, progress=False, log_epochs=False)
        robust[name] = at.pgd_accuracy(model, x_test, y_test, eps=0.2, eps_iter=0.02, nb_iter=20)
        if name == "plain":
            assert models.evaluate_clean(model, x_test, y_test)["accuracy"] > 0.93
    assert robust["plain"] < 0.3, robust
    assert robust["fgsm_rs"] > 0.8 and robust["pgd"] > 0.8, robust  # 0.9 is the best possible


def _tiny_run(tmp_path, epochs, name):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 28, 28, 1), dtype=np.uint8)
    labels = np.arange(96) % 10
    keras.utils.set_random_seed(5)
    model = models.cleverhans_cnn(10)
    history = training.fit(model, x, training.one_hot(labels, 10), epochs=epochs, batch_size=32,
                           seed=5, checkpoint_dir=str(tmp_path / name / "ckpt"),
                           log_dir=str(tmp_path / name / "logs"), progress=False,
                           log_epochs=False, adversary=at.fgsm_rs(0.3),
                           pgd_eval=at.pgd_evaluator(x[:8], labels[:8], eps=0.3, nb_iter=3,
                                                     eps_iter=0.1))
    return model, history


@pytest.mark.slow
def test_resume_with_adversary_equals_uninterrupted_run(tmp_path):
    straight, straight_history = _tiny_run(tmp_path, 2, "straight")
    _tiny_run(tmp_path, 1, "resumed")  # "killed" after epoch 1
    resumed, history = _tiny_run(tmp_path, 2, "resumed")
    assert history["resumed_from_epoch"] == 1 and history["epoch"] == [1, 2]
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_allclose(history["train/loss"], straight_history["train/loss"], rtol=1e-6)
    assert history["eval/pgd_accuracy"] == straight_history["eval/pgd_accuracy"]
    assert len(history["eval/pgd_accuracy"]) == 2


@pytest.mark.parametrize("make, value", [
    (lambda: at.fgsm_rs(0.0), "eps=0.0"),
    (lambda: at.fgsm_rs(1.5), "eps=1.5"),
    (lambda: at.fgsm_rs(-0.1), "eps=-0.1"),
    (lambda: at.fgsm_rs(float("nan")), "eps=nan"),
    (lambda: at.fgsm_rs(0.3, step=0.0), "step=0.0"),
    (lambda: at.pgd(eps=0.0), "eps=0.0"),
    (lambda: at.pgd(eps=1.01), "eps=1.01"),
    (lambda: at.pgd(0.3, steps=0), "steps=0"),
    (lambda: at.make_adversary("fgsm", 0.3), "'fgsm'"),
    (lambda: at.pgd_evaluator(np.zeros((2, 2, 2, 1)), [0, 1], eps=2.0), "eps=2.0"),
])
def test_bad_arguments_raise(make, value):
    with pytest.raises(ValueError, match=value.replace(".", r"\.")):
        make()


def test_make_adversary_uses_the_defaults():
    assert config.ADV_TRAIN_ATTACKS == ("fgsm_rs", "pgd")
    assert at.make_adversary("fgsm_rs") == at.FgsmRs(eps=0.3, step=0.375)
    assert at.make_adversary("pgd") == at.Pgd(eps=0.3, step=0.01, steps=40)
    assert at.make_adversary("pgd", 0.1, steps=5) == at.Pgd(eps=0.1, step=0.01, steps=5)


# -------------------------------------------------- the recipe: cyclic learning rate, best epoch


def test_cyclic_learning_rate_rises_to_the_peak_at_40_percent_then_falls_to_zero():
    schedule = training.CyclicLearningRate(5e-3, 100)
    values = [float(schedule(step)) for step in (0, 20, 40, 70, 100, 120)]
    np.testing.assert_allclose(values, [0.0, 2.5e-3, 5e-3, 2.5e-3, 0.0, 0.0], atol=1e-9)
    again = training.CyclicLearningRate.from_config(schedule.get_config())
    assert float(again(30)) == pytest.approx(float(schedule(30)))


@pytest.mark.slow
def test_fit_follows_the_cyclic_schedule_step_by_step(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator
    x, y = _toy_problem(64, 0)
    model = keras_linear(2, (4, 4, 1), seed=1)
    # 2 epochs of 4 steps: 8 steps, the peak 0.1 at step 3.2.
    training.fit(model, x, training.one_hot(y, 2), epochs=2, batch_size=16, learning_rate=0.1,
                 lr_schedule="cyclic", log_dir=str(tmp_path), progress=False, log_epochs=False)
    events = event_accumulator.EventAccumulator(
        str(tmp_path), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    logged = [float(tf.make_ndarray(e.tensor_proto))
              for e in events.Tensors("train/learning_rate")]
    # After epoch 1 (4 steps): 0.1 * (8 - 4) / (8 - 3.2); after epoch 2: 0.
    np.testing.assert_allclose(logged, [0.1 * 4 / 4.8, 0.0], rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="lr_schedule='linear'"):
        training.fit(model, x, training.one_hot(y, 2), epochs=1, batch_size=16,
                     lr_schedule="linear", progress=False, log_epochs=False)
    with pytest.raises(ValueError, match="keep_best needs pgd_eval"):
        training.fit(model, x, training.one_hot(y, 2), epochs=1, batch_size=16,
                     keep_best=True, progress=False, log_epochs=False)


@pytest.mark.slow
def test_cyclic_schedule_changes_training():
    x, y = _toy_problem(64, 0)
    weights = {}
    for schedule in ("constant", "cyclic"):
        model = keras_linear(2, (4, 4, 1), seed=1)
        training.fit(model, x, training.one_hot(y, 2), epochs=2, batch_size=16,
                     learning_rate=0.1, lr_schedule=schedule, progress=False, log_epochs=False)
        weights[schedule] = model.get_weights()[0]
    assert not np.allclose(weights["constant"], weights["cyclic"])


def _counting_evaluator(scores):
    """A pgd_eval that returns the given scores in turn and records each model's weights."""
    seen = []

    def evaluate(model):
        seen.append([np.array(w) for w in model.get_weights()])
        return scores[len(seen) - 1]
    return evaluate, seen


@pytest.mark.slow
@pytest.mark.parametrize("use_dir", [False, True], ids=["memory", "checkpoint_dir"])
def test_keep_best_ends_with_the_weights_of_the_best_epoch(tmp_path, use_dir):
    x, y = _toy_problem(64, 0)
    model = keras_linear(2, (4, 4, 1), seed=1)
    evaluate, seen = _counting_evaluator([0.2, 0.7, 0.5, 0.7])
    history = training.fit(model, x, training.one_hot(y, 2), epochs=4, batch_size=16,
                           learning_rate=0.1, pgd_eval=evaluate, keep_best=True,
                           checkpoint_dir=str(tmp_path / "ckpt") if use_dir else None,
                           progress=False, log_epochs=False)
    assert history["kept_epoch"] == 2  # the first of the two 0.7s
    for kept, best in zip(model.get_weights(), seen[1]):
        np.testing.assert_array_equal(kept, best)
    assert not np.allclose(model.get_weights()[0], seen[3][0])  # not the last epoch's
    if use_dir:
        assert (tmp_path / "ckpt" / "best.weights.h5").is_file()


@pytest.mark.slow
def test_keep_best_survives_a_resume(tmp_path):
    x, y = _toy_problem(64, 0)
    ckpt = str(tmp_path / "ckpt")
    scores = [0.1, 0.9, 0.3, 0.2]

    def run(epochs, start):
        model = keras_linear(2, (4, 4, 1), seed=1)
        evaluate, seen = _counting_evaluator(scores[start:])
        history = training.fit(model, x, training.one_hot(y, 2), epochs=epochs, batch_size=16,
                               learning_rate=0.1, pgd_eval=evaluate, keep_best=True,
                               checkpoint_dir=ckpt, progress=False, log_epochs=False)
        return model, history, seen

    _, _, first = run(2, 0)  # "killed" after epoch 2, the best one
    model, history, _ = run(4, 2)  # resumed: epochs 3 and 4 are worse
    assert history["resumed_from_epoch"] == 2 and history["kept_epoch"] == 2
    for kept, best in zip(model.get_weights(), first[1]):
        np.testing.assert_array_equal(kept, best)


def test_the_recipe_is_saved_only_for_the_adversarial_defense_and_when_it_is_new():
    from keras_edd.config import DefenseConfig
    recipe = {"adv_train_schedule", "adv_train_lr_max", "adv_train_keep_best"}
    current = DefenseConfig(defense="adversarial").validate().to_dict()
    assert {k: current[k] for k in recipe} == {
        "adv_train_schedule": "cyclic", "adv_train_lr_max": 5e-3, "adv_train_keep_best": True}
    # The recipe before it existed (constant rate, last epoch) saves nothing new, so its
    # runs still match; any other defense never saves it.
    legacy = DefenseConfig(defense="adversarial", adv_train_schedule="constant",
                           adv_train_keep_best=False).to_dict()
    assert not recipe & set(legacy)
    for defense in ("none", "extended", "distillation"):
        assert not recipe & set(DefenseConfig(defense=defense).to_dict()), defense
    with pytest.raises(ValueError, match="adv_train_schedule='step'"):
        DefenseConfig(defense="adversarial", adv_train_schedule="step").validate()
    with pytest.raises(ValueError, match="adv_train_lr_max=0.0"):
        DefenseConfig(defense="adversarial", adv_train_lr_max=0.0).validate()
