"""keras_edd.evaluate end to end: the shipped undefended model on official MNIST test digits.

Slow, and skipped without ../shared/data/mnist (never the bundled training sample: the
paper models were trained on those digits).
"""

import numpy as np
import pytest

import keras_edd

EPS = 0.1
N = 50


@pytest.mark.slow
def test_standard_evaluation_of_the_undefended_model(shared_mnist):
    from keras_edd import pretrained
    from keras_edd.data import load_idx_folder
    try:
        pretrained.model_path("paper:undefended")
    except pretrained.PretrainedError as exc:
        pytest.skip(f"shipped collection unavailable: {exc}")
    mnist = load_idx_folder("mnist", shared_mnist)
    x, y = mnist.x_test[:N], mnist.y_test[:N]
    model = keras_edd.load_pretrained("paper:undefended")
    standard = keras_edd.evaluate(model, x, y, eps=EPS, progress=False)
    alone = keras_edd.evaluate(model, x, y, eps=EPS, attacks=["apgd_ce"], progress=False)
    # AutoAttack's four standard attacks, in its order, none skipped.
    assert standard.attacks == ("apgd_ce", "apgd_t", "fab_t", "square")
    assert not standard.attacks_skipped
    assert standard.clean_accuracy.k >= N - 3  # 98.65 % on the whole test set
    # The ensemble is at least as strong as its first attack, which it runs identically.
    assert standard.robust_accuracy.k <= alone.robust_accuracy.k
    assert standard.robust_accuracy_by_attack["apgd_ce"] == alone.robust_accuracy
    ks = [rate.k for rate in standard.robust_accuracy_by_attack.values()]
    assert ks == sorted(ks, reverse=True) and ks[-1] == standard.robust_accuracy.k
    assert standard.robust.sum() == standard.robust_accuracy.k
    assert not standard.robust[~standard.clean_correct].any()
    broken = standard.clean_correct & ~standard.robust
    assert broken.any() and np.all(standard.perturbation_norm[broken] <= EPS + 1e-5)
    predicted = np.asarray(model(standard.x_adv[broken], training=False)).argmax(axis=1)
    assert np.all(predicted != y[broken])
    assert sum(standard.norm_violations.values()) == 0
    low, high = standard.robust_accuracy.interval
    assert low <= standard.robust_accuracy.value <= high


@pytest.mark.slow
def test_robustness_curve_agrees_with_evaluate_on_the_undefended_model(shared_mnist):
    """FAB-T runs the same trajectory per digit with and without early stopping, so every
    digit evaluate's fab_t breaks at eps has eps* <= eps on the curve; the curve at the
    grid point eps is then at most evaluate's robust accuracy there."""
    from keras_edd import pretrained
    from keras_edd.data import load_idx_folder
    try:
        pretrained.model_path("paper:undefended")
    except pretrained.PretrainedError as exc:
        pytest.skip(f"shipped collection unavailable: {exc}")
    mnist = load_idx_folder("mnist", shared_mnist)
    x, y = mnist.x_test[:20], mnist.y_test[:20]
    model = keras_edd.load_pretrained("paper:undefended")
    curve = keras_edd.robustness_curve(model, x, y, eps_grid=[0.0, EPS], attacks=["fab_t"],
                                       progress=False)
    fixed = keras_edd.evaluate(model, x, y, eps=EPS, attacks=["fab_t"], progress=False)
    assert curve.robust_accuracy[0] == fixed.clean_accuracy
    at_eps = curve.eps_star > EPS * (1 + 1e-6) + 1e-5
    assert not np.any(at_eps & ~fixed.robust)  # broken by evaluate: broken on the curve
    assert curve.robust_accuracy[1].k == at_eps.sum() <= fixed.robust_accuracy.k
    assert 0 < curve.median_eps < np.inf
    broken = np.isfinite(curve.eps_star) & (curve.eps_star > 0)
    predicted = np.asarray(model(curve.x_adv[broken], training=False)).argmax(axis=1)
    assert np.all(predicted != y[broken])
