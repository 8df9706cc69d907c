"""Carlini-Wagner L2: success with margin kappa, binary search, state, outlier class,
per-sample abort-early with refilled slots (early_exit="sample") versus the batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import LinearModel
from keras_edd.attacks import carlini_wagner_l2, fgsm, pgd
from keras_edd.attacks.cw_optimizers import adadelta_update, adam_update

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def easy():
    weights = np.kron(4.0 * np.eye(NUM_CLASSES) - 1.0, np.ones((3, 1)))
    weights += np.random.default_rng(0).normal(scale=0.2, size=weights.shape)
    return LinearModel(weights, np.zeros(NUM_CLASSES))


def images(n, seed=0):
    return np.random.default_rng(seed).uniform(0.2, 0.8, (n, 3, 4)).astype(np.float32)


def margins(model, x_adv, labels, targeted=False):
    logits = model(tf.convert_to_tensor(x_adv)).numpy()
    own = logits[np.arange(len(labels)), labels]
    others = logits.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return own - others.max(1) if targeted else others.max(1) - own


FAST = dict(learning_rate=0.1, max_iterations=60, binary_search_steps=4, initial_const=1.0)


@pytest.mark.parametrize("early_exit", ["sample", "batch"])
@pytest.mark.parametrize("optimizer,lr", [("adam", 0.1), ("adadelta", 10.0)])
def test_untargeted_success_with_margin_kappa(easy, optimizer, lr, early_exit):
    x = images(8)
    labels = np.argmax(easy(x).numpy(), axis=1)
    kwargs = dict(FAST, optimizer=optimizer, learning_rate=lr, confidence=2.0,
                  early_exit=early_exit)
    x_adv = carlini_wagner_l2(easy, x, **kwargs).numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    margin = margins(easy, x_adv, labels)
    success = margin > 0
    assert success.mean() >= 0.75
    assert np.all(margin[success] >= 2.0 - 1e-4)
    np.testing.assert_array_equal(x_adv[~success], x[~success])  # failures return x
    # Twice in a row in one process: fresh variables and optimizer per call.
    again = carlini_wagner_l2(easy, x, **kwargs).numpy()
    np.testing.assert_allclose(again, x_adv, atol=1e-5)


def test_targeted_reaches_target(easy):
    x = images(8, seed=1)
    targets = (np.argmax(easy(x).numpy(), axis=1) + 2) % NUM_CLASSES
    x_adv = carlini_wagner_l2(easy, x, y=targets, targeted=True, confidence=1.0, **FAST)
    margin = margins(easy, x_adv, targets, targeted=True)
    assert np.all(margin >= 1.0 - 1e-4)


# The two binary-search tests run the same two searches (1 and 6 steps, 100 iterations, no
# abort-early, 8 inputs) with other constants: c_0 and lr are tensors, so the second test
# reuses the first one's traces.
SEARCH_STEPS = dict(max_iterations=100, abort_early=False)


def test_binary_search_lowers_l2_versus_fixed_large_const(easy):
    x = images(8, seed=2)
    fixed = carlini_wagner_l2(easy, x, learning_rate=0.05, binary_search_steps=1,
                              initial_const=100.0, **SEARCH_STEPS)
    searched = carlini_wagner_l2(easy, x, learning_rate=0.05, binary_search_steps=6,
                                 initial_const=100.0, **SEARCH_STEPS)
    labels = np.argmax(easy(x).numpy(), axis=1)
    assert np.all(margins(easy, fixed, labels) > 0)
    assert np.all(margins(easy, searched, labels) > 0)
    l2 = lambda x_adv: np.sqrt(((np.asarray(x_adv) - x) ** 2).sum(axis=(1, 2)))
    assert np.all(l2(searched) <= l2(fixed) + 1e-6)
    assert l2(searched).mean() < 0.8 * l2(fixed).mean()


@pytest.fixture(scope="module")
def outlier_model():
    """Class 0 at x = 0.5; the outlier logit (3) is the nearest "other" class.

    Z_0 = 0, Z_out = 4 (x_0 - 0.5) - 0.5 (wins once x_0 > 0.625),
    Z_1 = 4 (x_1 - 0.5) - 1.0 (wins once x_1 > 0.75), Z_2 = -10.
    """
    weights = np.zeros((4, 4), np.float32)
    weights[0, 3] = 4.0
    weights[1, 1] = 4.0
    bias = np.array([0.0, -3.0, -10.0, -2.5], np.float32)
    return LinearModel(weights, bias)


def test_adaptive_margin_avoids_the_outlier_class(outlier_model):
    x = np.full((3, 2, 2), 0.5, np.float32)
    kwargs = dict(learning_rate=0.05, max_iterations=200, binary_search_steps=5,
                  initial_const=1.0, confidence=0.5)
    plain = carlini_wagner_l2(outlier_model, x, **kwargs)
    adaptive = carlini_wagner_l2(outlier_model, x, outlier_class=3, **kwargs)
    np.testing.assert_array_equal(np.argmax(outlier_model(plain).numpy(), 1), [3, 3, 3])
    np.testing.assert_array_equal(np.argmax(outlier_model(adaptive).numpy(), 1), [1, 1, 1])
    # FGSM and PGD: plain cross-entropy raises Z_out and Z_1 alike and ends in the
    # outlier class; the adaptive losses (both kinds) end in class 1.
    plain_pgd = pgd(outlier_model, x, eps=0.45, eps_iter=0.05, nb_iter=20, seed=0)
    np.testing.assert_array_equal(
        np.argmax(outlier_model(fgsm(outlier_model, x, eps=0.45)).numpy(), 1), [3, 3, 3])
    np.testing.assert_array_equal(np.argmax(outlier_model(
        fgsm(outlier_model, x, eps=0.45, outlier_class=3)).numpy(), 1), [1, 1, 1])
    np.testing.assert_array_equal(np.argmax(outlier_model(plain_pgd).numpy(), 1), [3, 3, 3])
    for loss in ("ce", "cw"):
        adaptive_pgd = pgd(outlier_model, x, eps=0.45, eps_iter=0.05, nb_iter=20, seed=0,
                           outlier_class=3, loss=loss)
        np.testing.assert_array_equal(
            np.argmax(outlier_model(adaptive_pgd).numpy(), 1), [1, 1, 1], err_msg=loss)


def test_binary_search_raises_a_too_small_const(easy):
    x = images(8, seed=3)
    labels = np.argmax(easy(x).numpy(), axis=1)
    kwargs = dict(SEARCH_STEPS, learning_rate=0.1, initial_const=1e-4, confidence=1.0)
    stuck = carlini_wagner_l2(easy, x, binary_search_steps=1, **kwargs)
    searched = carlini_wagner_l2(easy, x, binary_search_steps=6, **kwargs)
    assert np.all(margins(easy, stuck, labels) <= 0)  # c = 1e-4: the L2 term wins
    assert np.all(margins(easy, searched, labels) >= 1.0 - 1e-4)  # c grew 10x per failure


# --------------------------------------------------------------------------
# early_exit: per-sample abort-early with refilled slots versus the batch.

SEARCH = dict(confidence=2.0, max_iterations=50, binary_search_steps=4, initial_const=0.1)
OPTIMIZERS = [("adam", 0.1), ("adadelta", 10.0)]


def l2_norms(x_adv, x):
    return np.sqrt(((np.asarray(x_adv, np.float64) - x) ** 2).sum(axis=(1, 2)))


@pytest.mark.parametrize("optimizer,lr,expected", [
    # Numbers of the batch-level implementation before early_exit existed.
    ("adam", 0.1, [0.216273, 0.284155, 0.253073, 0.229832, 0.254313]),
    ("adadelta", 10.0, [0.213666, 0.279217, 0.247228, 0.228450, 0.241092]),
])
def test_batch_early_exit_reproduces_earlier_numbers(easy, optimizer, lr, expected):
    x = images(5, seed=4)
    result = carlini_wagner_l2(easy, x, optimizer=optimizer, learning_rate=lr,
                               early_exit="batch", return_details=True, **SEARCH)
    np.testing.assert_allclose(l2_norms(result.x_adv, x), expected, atol=2e-5)
    # The whole batch shares one iteration count per binary-search step.
    assert np.all(result.iterations == result.iterations[:1])


@pytest.mark.slow
@pytest.mark.parametrize("optimizer,lr", OPTIMIZERS)
def test_sample_early_exit_is_each_input_on_its_own(easy, optimizer, lr):
    """Same result for any batch_size (slot refilling) as each input run alone,
    and, alone, as the batch-level code path (one input = its own batch)."""
    x = images(5, seed=4)
    kwargs = dict(SEARCH, optimizer=optimizer, learning_rate=lr, return_details=True)
    together = carlini_wagner_l2(easy, x, **kwargs)
    for batch_size in (1, 2, 3):
        refilled = carlini_wagner_l2(easy, x, batch_size=batch_size, **kwargs)
        np.testing.assert_allclose(refilled.x_adv, together.x_adv, atol=1e-5)
        np.testing.assert_array_equal(refilled.iterations, together.iterations)
    for i in range(len(x)):
        alone = carlini_wagner_l2(easy, x[i:i + 1], **kwargs)
        old_alone = carlini_wagner_l2(easy, x[i:i + 1], early_exit="batch", **kwargs)
        for single in (alone, old_alone):
            np.testing.assert_allclose(single.x_adv[0], together.x_adv[i], atol=1e-5)
            np.testing.assert_array_equal(single.iterations[0], together.iterations[i])
            np.testing.assert_allclose(single.l2[0], together.l2[i], rtol=1e-5)
    # Each input stops on its own; the batch waits for its slowest input.
    batch = carlini_wagner_l2(easy, x, early_exit="batch", **kwargs)
    assert together.iterations.sum() < batch.iterations.sum()


@pytest.mark.parametrize("early_exit", ["sample", "batch"])
def test_details_describe_the_result(easy, early_exit):
    x = images(6, seed=5)
    labels = np.argmax(easy(x).numpy(), axis=1)
    result = carlini_wagner_l2(easy, x, learning_rate=0.1, max_iterations=40,
                               binary_search_steps=1, initial_const=0.05, confidence=3.0,
                               early_exit=early_exit, batch_size=4, return_details=True)
    x_adv = result.x_adv.numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert 0 < result.success.sum() < len(x)  # one step at c = 0.05: some fail
    np.testing.assert_array_equal(result.success, margins(easy, x_adv, labels) >= 3.0 - 1e-4)
    np.testing.assert_allclose(result.l2[result.success],
                               l2_norms(x_adv, x)[result.success], rtol=1e-4)
    assert np.all(np.isinf(result.l2[~result.success]))
    np.testing.assert_array_equal(x_adv[~result.success], x[~result.success])
    assert result.iterations.shape == (6, 1)
    assert result.iterations.min() >= 1 and result.iterations.max() <= 40


@pytest.mark.parametrize("early_exit", ["sample", "batch"])
def test_without_abort_early_every_step_runs_max_iterations(easy, early_exit):
    result = carlini_wagner_l2(easy, images(3), learning_rate=0.1, max_iterations=17,
                               binary_search_steps=2, abort_early=False,
                               early_exit=early_exit, batch_size=2, return_details=True)
    np.testing.assert_array_equal(result.iterations, np.full((3, 2), 17))


def test_per_sample_abort_early_stops_a_stuck_input(easy):
    """Z = relu(x - 0.5) W: an input with every pixel at 0.2 has zero gradient,
    so its loss is constant and abort-early stops each of its steps at the
    first check after iteration 0 (iteration max_iterations // 10 + 1); a
    movable input in the same batch keeps its own counts."""
    weights = np.asarray(easy.weights)

    def model(x):
        return tf.nn.relu(tf.reshape(x, [tf.shape(x)[0], -1]) - 0.5) @ weights

    x = np.stack([np.full((3, 4), 0.2, np.float32), images(1, seed=6)[0] * 0 + 0.7])
    labels = np.array([0, 1])
    kwargs = dict(y=labels, learning_rate=0.1, max_iterations=50, binary_search_steps=3,
                  initial_const=0.1, confidence=1.0, return_details=True)
    sample = carlini_wagner_l2(model, x, **kwargs)
    batch = carlini_wagner_l2(model, x, early_exit="batch", **kwargs)
    np.testing.assert_array_equal(sample.iterations[0], [6, 6, 6])
    assert not sample.success[0] and sample.success[1]
    np.testing.assert_array_equal(batch.iterations[0], batch.iterations[1])
    assert batch.iterations[0].sum() > 18


def _keras_reference(optimizer, grads, learning_rate):
    w = keras.Variable(np.zeros(grads.shape[1:], np.float32))
    if optimizer == "adam":
        opt = keras.optimizers.Adam(learning_rate=learning_rate)
    else:
        opt = keras.optimizers.Adadelta(learning_rate=learning_rate, rho=0.95, epsilon=1e-6)
    for grad in grads:
        opt.apply([tf.constant(grad)], [w])
    return w.numpy()


@pytest.mark.parametrize("optimizer,lr", OPTIMIZERS)
def test_per_slot_optimizer_updates_equal_keras(optimizer, lr):
    """Restart-free runs of the per-slot update rules equal Keras' optimizers."""
    grads = np.random.default_rng(7).normal(size=(25, 2, 5)).astype(np.float32)
    w = tf.zeros([2, 5])
    state_1, state_2 = tf.zeros_like(w), tf.zeros_like(w)
    for step, grad in enumerate(grads, start=1):
        if optimizer == "adam":
            w, state_1, state_2 = adam_update(w, grad, state_1, state_2,
                                              tf.fill([2], step), lr)
        else:
            w, state_1, state_2 = adadelta_update(w, grad, state_1, state_2, lr)
    np.testing.assert_allclose(w.numpy(), _keras_reference(optimizer, grads, lr),
                               rtol=1e-5, atol=1e-6)


def test_bad_early_exit_and_batch_size_raise(easy):
    with pytest.raises(ValueError, match="early_exit='slowest'"):
        carlini_wagner_l2(easy, images(2), early_exit="slowest")
    with pytest.raises(ValueError, match="batch_size=0"):
        carlini_wagner_l2(easy, images(2), batch_size=0)


@pytest.mark.parametrize("early_exit", ["sample", "batch"])
def test_progress_counts_every_input_once(easy, early_exit):
    # Inputs of different difficulty finish at different iterations: with refilled
    # slots the callback fires during the call, in several parts, summing to len(x).
    x = images(7, seed=3)
    reports = []
    with_progress = carlini_wagner_l2(easy, x, learning_rate=0.1, max_iterations=30,
                                      binary_search_steps=2, early_exit=early_exit,
                                      batch_size=3, progress=reports.append)
    assert sum(reports) == len(x) and all(r > 0 for r in reports)
    if early_exit == "batch":
        assert reports == [len(x)]  # once, after the search: it cannot change the result
        return
    assert len(reports) > 1
    # The compiled loop reports through tf.py_function: the result is the same without it
    # (the same trace: the callback is not part of it).
    without = carlini_wagner_l2(easy, x, learning_rate=0.1, max_iterations=30,
                                binary_search_steps=2, early_exit=early_exit, batch_size=3)
    np.testing.assert_array_equal(with_progress.numpy(), without.numpy())


def test_progress_of_concurrent_calls_reaches_each_own_callback(easy):
    """The callback is passed with its call: two calls running at once, from two threads,
    each hear of their own inputs only (no shared slot to overwrite)."""
    import threading
    # The settings of test_progress_counts_every_input_once: "a" reuses its trace.
    sizes, reports = {"a": 7, "b": 3}, {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def attack(key):
        barrier.wait()
        carlini_wagner_l2(easy, images(sizes[key], seed=4), learning_rate=0.1,
                          max_iterations=30, binary_search_steps=2, batch_size=3,
                          progress=reports[key].append)

    threads = [threading.Thread(target=attack, args=(key,)) for key in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {key: sum(values) for key, values in reports.items()} == sizes
