"""Rates on hand-made predictions, attack settings, model loading, evaluate_models."""

import dataclasses

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import keras_linear

from keras_edd import attack_registry, data, files, formatting, models
from keras_edd.attack_registry import AttackConfig
from keras_edd.config import EvalConfig
from keras_edd.defense import training
from keras_edd.evaluation import crafting, engine, metrics, scoring
from keras_edd.attack_settings import (ApgdSettings, ApgdTargetedSettings,
                                                  CwSettings, JsmaSettings, PgdSettings,
                                                  SquareSettings)
from keras_edd.runs import reproduce


# ----------------------------------------------------------------------------- rates


def test_outcome_rates_hand_computed_with_outlier_class():
    labels = [0, 2, 1, 2, 3, 3]
    predictions = [0, 10, 1, 5, 10, 3]  # recovered: 0, 2, 5; detected: 1, 4; other: 3
    rates = metrics.outcome_rates(predictions, labels, outlier_class=10)
    assert rates["count"] == 6
    np.testing.assert_allclose([rates["recovered"], rates["detected"], rates["misclassified"]],
                               [3 / 6, 2 / 6, 1 / 6])


def test_outcome_rates_without_outlier_class_never_detect():
    labels = np.array([0, 1, 2, 3])
    predictions = np.array([0, 9, 2, 1])
    rates = metrics.outcome_rates(predictions, labels)
    assert rates["detected"] == 0.0
    np.testing.assert_allclose([rates["recovered"], rates["misclassified"]], [0.5, 0.5])


def test_attack_rates_filter_on_clean_correct_inputs():
    labels = np.array([0, 1, 2, 3, 4])
    clean = np.array([0, 1, 7, 3, 10])       # inputs 2 and 4 are wrong when clean
    adversarial = np.array([0, 10, 2, 5, 4])  # 0 recovered, 1 detected, 3 misclassified
    rates = metrics.attack_rates(adversarial, clean, labels, outlier_class=10)
    filtered, unfiltered = rates["filtered"], rates["unfiltered"]
    assert filtered["count"] == 3 and unfiltered["count"] == 5
    np.testing.assert_allclose(
        [filtered["recovered"], filtered["detected"], filtered["misclassified"]], [1 / 3] * 3)
    # Unfiltered also counts inputs 2 and 4, which the attack "recovered".
    np.testing.assert_allclose(
        [unfiltered["recovered"], unfiltered["detected"], unfiltered["misclassified"]],
        [3 / 5, 1 / 5, 1 / 5])
    assert metrics.success_rate(filtered) == pytest.approx(2 / 3)


def test_no_correct_input_gives_none_not_nan():
    rates = metrics.attack_rates([1, 1], [1, 1], [0, 0])
    assert rates["filtered"] == {"count": 0, "recovered": None, "detected": None,
                                 "misclassified": None}
    assert metrics.success_rate(rates["filtered"]) is None
    assert rates["unfiltered"]["misclassified"] == 1.0


def test_clean_rates_report_false_alarms():
    clean = metrics.clean_rates([0, 10, 1, 10], [0, 1, 1, 2], outlier_class=10)
    assert clean["accuracy"] == 0.5 and clean["detected"] == 0.5 and clean["count"] == 4


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        metrics.outcome_rates([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="mask has 1 entries"):
        metrics.outcome_rates([0, 1], [0, 1], mask=[True])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5), st.integers(0, 5)),
                min_size=1, max_size=40),
       st.booleans())
def test_rates_sum_to_one_and_match_counts(rows, with_outlier):
    labels, clean, adversarial = (np.array(column) for column in zip(*rows))
    outlier = 5 if with_outlier else None
    if not with_outlier:  # a model without an outlier class never predicts index 5
        clean, adversarial = np.minimum(clean, 4), np.minimum(adversarial, 4)
    rates = metrics.attack_rates(adversarial, clean, labels, outlier_class=outlier)
    correct = clean == labels
    assert rates["filtered"]["count"] == correct.sum()
    for subset, mask in (("filtered", correct), ("unfiltered", np.ones_like(correct))):
        r = rates[subset]
        if r["count"] == 0:
            assert r["recovered"] is None
            continue
        assert r["recovered"] + r["detected"] + r["misclassified"] == pytest.approx(1.0)
        assert r["recovered"] == pytest.approx(np.mean(adversarial[mask] == labels[mask]))
        expected_detected = np.mean(adversarial[mask] == 5) if with_outlier else 0.0
        assert r["detected"] == pytest.approx(expected_detected)


# ------------------------------------------------------------------------ attack params


def test_attack_params_use_the_config_and_substitute_the_budget():
    config = AttackConfig(settings={"pgd": PgdSettings(eps=0.2, eps_iter=0.01, nb_iter=40)})
    params = attack_registry.attack_params
    assert params("fgsm", config) == {"eps": 0.2}
    assert params("fgsm", config, 0.5) == {"eps": 0.5}
    pgd = params("pgd", config, 0.4)
    assert pgd["eps"] == 0.4 and pgd["eps_iter"] == pytest.approx(0.02)  # step scales with eps
    assert list(pgd) == ["eps", "eps_iter", "nb_iter", "nb_restarts", "rand_init", "loss"]
    cw = params("cw", config, 3.0)
    assert cw["confidence"] == 3.0 and cw["optimizer"] == "adadelta"
    assert cw["learning_rate"] == 10.0  # None: the attack's default for AdaDelta
    assert attack_registry.budget_of("cw", cw) == ("kappa", 3.0)
    assert attack_registry.budget_of("jsma", params("jsma", config)) == ("gamma", 0.07)
    with pytest.raises(ValueError, match="attack='deepfool'"):
        params("deepfool", config)


def test_registry_settings_are_the_functions_keywords():
    """Every settings field is a keyword of its attack function, so a row needs no glue."""
    import inspect
    for name, row in attack_registry.ATTACKS.items():
        keywords = inspect.signature(row.fn).parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in keywords.values())
        fields = [f.name for f in dataclasses.fields(row.settings)]
        for field in fields:
            assert field in keywords or accepts_any, (name, field)
        assert row.budget in fields, name
    assert [row.takes_seed for row in attack_registry.ATTACKS.values()] == [
        False, True, True, False, False, True, True, True, True, True]


def test_cw_adam_and_square_rows():
    config = AttackConfig()
    params = attack_registry.attack_params
    adadelta, adam = params("cw", config), params("cw_adam", config)
    assert adam["optimizer"] == "adam" and adam["learning_rate"] == 0.01  # Carlini's
    assert adadelta["optimizer"] == "adadelta" and adadelta["learning_rate"] == 10.0
    for key in ("confidence", "binary_search_steps", "max_iterations", "initial_const"):
        assert adam[key] == adadelta[key], key  # kappa 7, 5 x 1000: only the optimiser differs
    assert params("square", config) == {"eps": 0.2, "max_queries": 5000, "p_init": 0.8}
    assert params("square", config, 0.4)["eps"] == 0.4
    assert attack_registry.budget_of("square", params("square", config)) == ("eps", 0.2)
    assert {"cw_adam", "square"} <= set(attack_registry.DEFAULT_NAMES)  # bin/reproduce runs them
    assert [n for n, row in attack_registry.ATTACKS.items() if row.gradient_free] == ["square"]
    saved = config.to_dict()
    assert saved["square_max_queries"] == 5000 and saved["cw_adam_optimizer"] == "adam"
    with pytest.raises(ValueError, match="square_p_init=0.0"):
        AttackConfig(settings={"square": SquareSettings(p_init=0.0)}).validate()


def test_attack_succeeded_is_each_attacks_own_criterion():
    # Three inputs, 4 logits, outlier class 3. Clean: y = 0 for all (Z_0 largest real logit).
    clean = np.array([[5.0, 0.0, 0.0, 0.0]] * 3)
    adv = np.array([[0.0, 8.0, 0.0, 0.0],    # margin 8 over y
                    [0.0, 5.0, 0.0, 0.0],    # margin 5
                    [0.0, 1.0, 0.0, 9.0]])   # outlier on top: margin vs y is 9, adaptive -8
    succeeded = scoring.attack_succeeded
    # CW reports its own success (margin >= kappa found during the search).
    cw = {"confidence": 7.0}
    for name in ("cw", "cw_adam"):
        np.testing.assert_array_equal(
            succeeded(name, cw, adv, clean, details={"success": np.array([True, False, False])}),
            [True, False, False])
        with pytest.raises(ValueError, match="no details"):
            succeeded(name, cw, adv, clean)
    np.testing.assert_array_equal(succeeded("fgsm", {"eps": 0.2}, adv, clean),
                                  [True, True, True])
    np.testing.assert_array_equal(succeeded("square", {"eps": 0.2}, adv, clean, outlier_class=3),
                                  [True, True, False])
    # Adaptive labels: y is the best real class even where the outlier logit is larger.
    clean_outlier_top = np.array([[1.0, 0.0, 0.0, 9.0]])
    assert not succeeded("pgd", {}, np.array([[2.0, 1.0, 0.0, 0.0]]), clean_outlier_top,
                         outlier_class=3)[0]
    # JSMA reports its own success (target reached).
    np.testing.assert_array_equal(
        succeeded("jsma", {}, adv, clean, details={"success": np.array([1, 0, 1])}),
        [True, False, True])
    with pytest.raises(ValueError, match="no details"):
        succeeded("jsma", {}, adv, clean)


def test_craft_collects_the_details_jsma_returns():
    model = keras_linear(10, (28, 28, 1))
    x = np.random.default_rng(0).uniform(size=(5, 28, 28, 1)).astype(np.float32)
    details = {}
    params = attack_registry.attack_params("jsma", AttackConfig())
    x_adv = crafting.run_attack(model, "jsma", x, params, batch_size=2, details=details)
    assert x_adv.shape == x.shape
    assert details["success"].shape == (5,) and details["target"].shape == (5,)
    logits = np.asarray(model(x_adv))
    np.testing.assert_array_equal(details["success"], logits.argmax(1) == details["target"])


def _hand_entry(target, attack, variant, success, setting="whitebox", count=1000):
    """A scored entry whose filtered rates have this success over `count` inputs."""
    filtered = {"count": count, "recovered": None if success is None else 1.0 - success}
    return {"setting": setting, "target": target, "attack": attack, "variant": variant,
            "success": success, "filtered": filtered}


def test_gradient_free_masking_flag_on_hand_made_entries():
    entries = [_hand_entry("distillation", "pgd", "plain", 0.02),
               _hand_entry("distillation", "cw_adam", "plain", 0.96),
               _hand_entry("distillation", "cw", "plain", 0.5),
               _hand_entry("distillation", "square", "plain", 1.0),
               # One-step FGSM and JSMA (an L0 budget) may well be weaker: never flagged.
               _hand_entry("distillation", "fgsm", "plain", 0.02),
               _hand_entry("distillation", "jsma", "plain", 0.02),
               _hand_entry("extended", "pgd", "plain", 0.3),     # Square fails here too
               _hand_entry("extended", "square", "plain", 0.9),
               _hand_entry("extended", "pgd", "adaptive", 0.1),  # no Square on this variant
               _hand_entry("distillation", "pgd", "plain", 0.0, setting="blackbox"),
               _hand_entry("undefended", "pgd", "plain", None)]
    warnings = scoring.gradient_free_masking(entries, 0.95)
    assert len(warnings) == 2
    assert warnings[0].startswith("distillation: gradient masking: pgd (plain) fails where "
                                  "the gradient-free Square attack succeeds")
    assert "cw (plain)" in warnings[1]
    assert scoring.gradient_free_masking(entries, 0.01) == []  # everything "succeeds"


def test_gradient_free_masking_needs_enough_inputs_and_a_clear_failure():
    few = [_hand_entry("t", "pgd", "plain", 0.2, count=9),
           _hand_entry("t", "square", "plain", 1.0, count=9)]
    assert scoring.gradient_free_masking(few, 0.95, min_inputs=10) == []
    assert len(scoring.gradient_free_masking(few, 0.95, min_inputs=9)) == 1
    # 16 of 17 (94.1 %) is below 95 % but its upper bound is not: no flag.
    close = [_hand_entry("t", "pgd", "plain", 16 / 17, count=17),
             _hand_entry("t", "square", "plain", 1.0, count=17)]
    assert scoring.gradient_free_masking(close, 0.95, min_inputs=10) == []


def test_apgd_is_a_reference_for_the_masking_flags():
    entries = [_hand_entry("distillation", "pgd", "plain", 0.1),
               _hand_entry("distillation", "apgd_ce", "plain", 0.2),
               _hand_entry("distillation", "apgd_t", "plain", 1.0),
               _hand_entry("extended", "pgd", "adaptive", 0.1),
               _hand_entry("extended", "apgd_t", "plain", 1.0)]  # another variant
    warnings = scoring.gradient_free_masking(entries, 0.95)
    assert warnings == [
        "distillation: gradient masking: pgd (plain) fails where the stronger gradient attack "
        "apgd_t succeeds (10.0% of 1000 vs 100.0%, threshold 95%)",
        "distillation: gradient masking: apgd_ce (plain) fails where the stronger gradient "
        "attack apgd_t succeeds (20.0% of 1000 vs 100.0%, threshold 95%)"]
    assert {n for n, row in attack_registry.ATTACKS.items() if row.flags_masking} == {
        "square", "apgd_ce", "apgd_t", "apgd_dlr", "fab_t"}


def test_apgd_rows():
    config = AttackConfig()
    params = attack_registry.attack_params
    assert params("apgd_ce", config) == {"eps": 0.2, "norm": "linf", "nb_iter": 100,
                                         "nb_restarts": 1, "nb_targets": 9, "loss": "ce"}
    assert params("apgd_t", config, 0.3)["loss"] == "dlr_targeted"
    assert params("apgd_t", config, 0.3)["eps"] == 0.3
    assert params("apgd_dlr", config)["loss"] == "dlr"
    assert {"apgd_ce", "apgd_t"} <= set(attack_registry.DEFAULT_NAMES)
    assert "apgd_dlr" not in attack_registry.DEFAULT_NAMES
    saved = config.to_dict()
    # Only APGD-T's target count is a setting; the loss belongs to the row.
    assert saved["apgd_t_nb_targets"] == 9 and "apgd_ce_nb_targets" not in saved
    assert not any(key.endswith("_loss") and key.startswith("apgd") for key in saved)
    with pytest.raises(ValueError, match="apgd_t_norm='l1'"):
        AttackConfig(settings={"apgd_t": ApgdTargetedSettings(
            norm="l1")}).validate()
    with pytest.raises(ValueError, match="apgd_ce_eps=1.5"):
        AttackConfig(settings={"apgd_ce": ApgdSettings(eps=1.5)}).validate()
    AttackConfig(settings={"apgd_ce": ApgdSettings(eps=1.5, norm="l2")}
                 ).validate()  # an L2 radius may exceed 1


def test_success_upper_bound_hand_computed():
    def rates(successes, n):
        return {"count": n, "recovered": None if n == 0 else 1 - successes / n}
    # Wilson, one-sided 95 % (z = 1.645), computed by hand.
    assert metrics.success_upper_bound(rates(50, 100)) == pytest.approx(0.58116, abs=1e-4)
    assert metrics.success_upper_bound(rates(16, 17)) == pytest.approx(0.9866, abs=1e-3)
    assert metrics.success_upper_bound(rates(0, 0)) is None
    assert metrics.success_upper_bound(rates(30, 30)) == 1.0
    # More inputs, same rate: a tighter bound.
    bounds = [metrics.success_upper_bound(rates(9 * k, 10 * k)) for k in (1, 10, 100)]
    assert 1.0 >= bounds[0] > bounds[1] > bounds[2] > 0.9


def test_masking_verdict_needs_inputs_and_an_upper_bound_below_threshold():
    config = EvalConfig(masking_min_inputs=10)

    def rates(successes, n):
        return {"count": n, "recovered": 1 - successes / n}
    assert scoring.masking_verdict([rates(1, 9), rates(2, 9)], config)[
        "masking_suspected"] is None  # 9 inputs < 10: not checked
    close = scoring.masking_verdict([rates(10, 17), rates(16, 17)], config)
    assert close["max_success"] == pytest.approx(16 / 17) and close["max_success_count"] == 17
    assert close["masking_suspected"] is False  # upper bound 98.7 % >= 95 %
    clear = scoring.masking_verdict([rates(5, 13), rates(3, 13)], config)
    assert clear["masking_suspected"] is True and clear["max_success_upper"] < 0.95
    assert scoring.masking_verdict([{"count": 0, "recovered": None}], config)[
        "masking_suspected"] is None
    with pytest.raises(ValueError, match="masking_min_inputs=0"):
        EvalConfig(masking_min_inputs=0).validate()



def test_attack_config_is_saved_under_the_flag_names():
    saved = AttackConfig(settings={"pgd": PgdSettings(nb_restarts=3)}).to_dict()
    assert saved["pgd_restarts"] == 3 and "pgd_rand_init" not in saved
    assert saved["cw_learning_rate"] is None and saved["batch_size"] == 100
    caps = EvalConfig(max_examples={"jsma": None}).to_dict()
    assert caps["num_examples_jsma"] is None and caps["num_examples_cw"] == 100


def test_eval_config_caps_and_validation():
    config = EvalConfig(num_examples=50, max_examples={"jsma": 10, "cw": None})
    assert [config.examples_for(a) for a in ("fgsm", "jsma", "cw")] == [50, 10, 50]
    assert EvalConfig(num_examples=5, max_examples={"jsma": 10}).examples_for("jsma") == 5
    for bad, fragment in ((dict(attacks=("fgsm", "boom")), "unknown attack 'boom'"),
                          (dict(num_examples=0), "num_examples=0"),
                          (dict(sweep_eps=(0.1, 1.5)), "sweep_eps=1.5"),
                          (dict(attack=AttackConfig(settings={"jsma": JsmaSettings(gamma=0.0)})),
                           "jsma_gamma=0.0"),
                          (dict(attack=AttackConfig(settings={"cw": CwSettings(optimizer="sgd")})),
                           "cw_optimizer='sgd'"),
                          (dict(max_examples={"cw": 0}), "num_examples_cw=0")):
        with pytest.raises(ValueError, match=fragment):
            EvalConfig(**bad).validate()


def test_extra_cap_applies_to_slow_attacks_on_extra_models_only():
    config = EvalConfig(num_examples=1000, max_examples={"jsma": None, "cw": None},
                        extra_examples=200)
    assert [config.examples_for(a) for a in ("fgsm", "jsma", "cw", "square")] == [
        1000, 1000, 1000, 200]
    # FGSM and PGD have no cap of their own: not slow, so not capped on extra models.
    assert [config.examples_for(a, extra=True) for a in ("fgsm", "pgd", "jsma", "cw",
                                                          "cw_adam")] == [
        1000, 1000, 200, 200, 100]
    assert EvalConfig(num_examples=50, extra_examples=200).examples_for("cw", extra=True) == 50
    assert EvalConfig(extra_examples=None).examples_for("cw", extra=True) == 100
    # Saved under its flag name, and absent at its default so older flags.json still match.
    assert config.to_dict()["num_examples_extra"] == 200
    assert "num_examples_extra" not in EvalConfig().to_dict()
    with pytest.raises(ValueError, match="num_examples_extra=0"):
        EvalConfig(extra_examples=0).validate()


# ------------------------------------------------------------------------ models




@pytest.fixture(scope="module")
def small_data():
    return data.load_dataset("mnist_sample", train_limit=500, test_limit=40)


@pytest.mark.parametrize("outputs,outlier", [(10, None), (11, 10)])
def test_load_model_spec_infers_the_outlier_class(tmp_path, small_data, outputs, outlier):
    path = str(tmp_path / f"m{outputs}.keras")
    files.save_model(keras_linear(outputs, (28, 28, 1)), path)
    spec = models.load_model_spec("m", path, small_data)
    assert spec.outlier_class == outlier and spec.num_classes == 10
    assert spec.variants() == (("plain", "adaptive") if outlier else ("plain",))
    assert spec.describe()["outputs"] == outputs and len(spec.describe()["sha256"]) == 64


def test_load_model_spec_rejects_other_output_counts_naming_the_file(tmp_path, small_data):
    path = str(tmp_path / "five.keras")
    files.save_model(keras_linear(5, (28, 28, 1)), path)
    with pytest.raises(ValueError, match=r"five\.keras.*5 outputs.*expected 10 or 11"):
        models.load_model_spec("m", path, small_data)


def test_model_label_is_a_valid_run_name():
    assert models.model_label("/a/b/mnist-extended-a0.9/distilled.keras") == \
        "mnist-extended-a0.9-distilled"
    label = models.model_label("/.x y/.hidden model.keras")
    assert label == "x_y-.hidden_model"
    from keras_edd.runs.run_config import RunConfig
    RunConfig(run_name=label).validate()  # accepted as a run directory name


# ------------------------------------------------------------------ evaluate_models


@pytest.fixture(scope="module")
def trained_linear(small_data):
    keras.utils.set_random_seed(0)
    model = keras_linear(10, (28, 28, 1))
    training.fit(model, small_data.x_train, training.one_hot(small_data.y_train, 10), epochs=3,
                 batch_size=50, progress=False)
    return model


def test_evaluate_models_structure_and_masking_flag(small_data, trained_linear):
    good = models.ModelSpec("linear", trained_linear, "linear.keras", 10, None)
    # Same decisions, logits x 1e4: the softmax saturates, CE gradients are exactly 0.
    masked_model = keras_linear(10, (28, 28, 1))
    masked_model.set_weights([w * 1e4 for w in trained_linear.get_weights()])
    masked = models.ModelSpec("masked", masked_model, "masked.keras", 10, None)
    surrogate = models.ModelSpec("copy", trained_linear, "copy.keras", 10, None)
    for spec in (good, masked, surrogate):  # no file behind these specs
        spec.describe = lambda spec=spec: {"path": spec.path, "outputs": 10, "outlier_class": None}
    config = EvalConfig(attacks=("fgsm", "pgd"), num_examples=30, sweep_attacks=("fgsm",),
                        sweep_eps=(0.1, 0.5), sweep_num_examples=30, check_examples=20,
                        image_examples=3)
    results, images = engine.evaluate_models(small_data, [good, masked], [surrogate], config)
    whitebox = [e for e in results["evaluations"] if e["setting"] == "whitebox"]
    assert [(e["target"], e["attack"], e["variant"]) for e in whitebox] == [
        ("linear", "fgsm", "plain"), ("linear", "pgd", "plain"),
        ("masked", "fgsm", "plain"), ("masked", "pgd", "plain")]
    # PGD (40 steps of 0.01 in the 0.2-ball) is at least as strong as FGSM on a linear model.
    assert whitebox[1]["filtered"]["recovered"] <= whitebox[0]["filtered"]["recovered"]
    assert whitebox[1]["norms"]["mean_linf"] <= 0.2 + 1e-6
    blackbox = [e for e in results["evaluations"] if e["setting"] == "blackbox"]
    assert {e["target"] for e in blackbox} == {"linear", "masked"}
    # Transferring from a copy of `linear` equals the white-box attack on it.
    self_transfer = next(e for e in blackbox if e["target"] == "linear" and e["attack"] == "fgsm")
    assert self_transfer["filtered"] == whitebox[0]["filtered"]
    # attack_failed is judged on the source already, so the source's rates omit it.
    assert self_transfer["source_rates"]["filtered"] == {
        k: v for k, v in whitebox[0]["filtered"].items() if k != "attack_failed"}
    # Same predictions, so the filter keeps the same inputs for both models.
    assert whitebox[0]["filtered"]["count"] == whitebox[2]["filtered"]["count"] > 0
    sweeps = {s["target"]: s for s in results["sweeps"]}
    assert sweeps["linear"]["max_success"] >= 0.95 and not sweeps["linear"]["masking_suspected"]
    assert sweeps["masked"]["masking_suspected"] is True
    assert results["models"]["masked"]["checks"]["zero_gradient_fraction"] > 0.5
    assert results["models"]["linear"]["checks"]["zero_gradient_fraction"] < 0.5
    assert any("masked" in w and "gradient masking" in w for w in results["warnings"])
    assert not any(w.startswith("linear") for w in results["warnings"])
    assert results["num_examples"] == {"fgsm": 30, "pgd": 30}
    assert results["models"]["copy"]["role"] == "surrogate"
    grid = images["linear/fgsm_plain"]
    clean_x, adv_x = grid["clean"], grid["adversarial"]
    assert clean_x.shape == adv_x.shape == (3, 28, 28, 1)
    np.testing.assert_allclose(np.abs(adv_x - clean_x).max(), 0.2, atol=1e-6)
    # The grid's labels are the white-box target's predictions on those very inputs.
    assert grid["model"] == "linear"
    np.testing.assert_array_equal(grid["labels"], small_data.y_test[:3])
    np.testing.assert_array_equal(grid["clean_predictions"],
                                  trained_linear.predict(clean_x, verbose=0).argmax(1))
    np.testing.assert_array_equal(grid["adversarial_predictions"],
                                  trained_linear.predict(adv_x, verbose=0).argmax(1))
    # Black-box: one grid per craft on the surrogate, labelled by the target it was scored on.
    assert images["copy/fgsm_plain"]["model"] in ("linear", "masked")


def test_extra_models_get_fewer_inputs_for_slow_attacks(small_data, trained_linear):
    """Square (slow: it has a cap) on an `extra` model, white-box or as a surrogate, uses
    extra_examples inputs; FGSM and every attack on the other models keep num_examples."""
    def spec(name, extra=False):
        s = models.ModelSpec(name, trained_linear, f"{name}.keras", 10, None, extra=extra)
        s.describe = lambda: {"path": s.path, "outputs": 10, "outlier_class": None}
        return s

    square = SquareSettings(max_queries=5)
    config = EvalConfig(attacks=("fgsm", "square"), num_examples=24,
                        max_examples={"square": None}, extra_examples=8, sweeps=False,
                        check_examples=8, image_examples=0,
                        attack=AttackConfig(settings={"square": square}))
    results, _ = engine.evaluate_models(
        small_data, [spec("paper"), spec("beyond", extra=True)], [spec("J", extra=True)],
        config)
    counts = {(e["setting"], e["source"], e["target"], e["attack"]): e["num_examples"]
              for e in results["evaluations"]}
    assert counts == {
        ("whitebox", "paper", "paper", "fgsm"): 24, ("whitebox", "paper", "paper", "square"): 24,
        ("whitebox", "beyond", "beyond", "fgsm"): 24,
        ("whitebox", "beyond", "beyond", "square"): 8,
        ("blackbox", "J", "paper", "fgsm"): 24, ("blackbox", "J", "beyond", "fgsm"): 24,
        ("blackbox", "J", "paper", "square"): 8, ("blackbox", "J", "beyond", "square"): 8}
    assert results["num_examples"] == {"fgsm": 24, "square": 24,
                                       "extra_models": {"fgsm": 24, "square": 8}}


def test_evaluate_models_rejects_duplicate_names(small_data, trained_linear):
    spec = models.ModelSpec("a", trained_linear, "a.keras", 10, None)
    with pytest.raises(ValueError, match="unique"):
        engine.evaluate_models(small_data, [spec], [dataclasses.replace(spec)], EvalConfig())


def test_a_surrogate_with_only_target_is_scored_on_that_target_alone(small_data,
                                                                       trained_linear):
    specs = {name: models.ModelSpec(name, trained_linear, f"{name}.keras", 10, None)
             for name in ("a", "b", "U")}
    specs["J_b"] = models.ModelSpec("J_b", trained_linear, "J_b.keras", 10, None,
                                    only_target="b")
    for spec in specs.values():  # no file behind these specs
        spec.describe = lambda: {"path": "x.keras", "outputs": 10, "outlier_class": None}
    config = EvalConfig(attacks=("fgsm",), num_examples=10, sweeps=False, check_examples=10)
    results, _ = engine.evaluate_models(small_data, [specs["a"], specs["b"]],
                                            [specs["U"], specs["J_b"]], config, whitebox=False)
    assert sorted((e["source"], e["target"]) for e in results["evaluations"]) == [
        ("J_b", "b"), ("U", "a"), ("U", "b")]
    # The same craft scored on "b": the restriction changes the pairing, not the numbers.
    by_pair = {(e["source"], e["target"]): e for e in results["evaluations"]}
    assert by_pair[("J_b", "b")]["filtered"] == by_pair[("U", "b")]["filtered"]
    lost = dataclasses.replace(specs["J_b"], name="J_c", only_target="c")
    with pytest.raises(ValueError, match="surrogate J_c is scored only on target 'c'"):
        engine.evaluate_models(small_data, [specs["a"]], [lost], config)


def test_jsma_targets_real_classes_on_outlier_models(small_data, monkeypatch):
    keras.utils.set_random_seed(0)
    spec = models.ModelSpec("ext", keras_linear(11, (28, 28, 1)), "ext.keras", 10, 10)
    spec.describe = lambda: {"path": "ext.keras", "outputs": 11, "outlier_class": 10}
    calls = []
    real_craft = crafting.run_attack

    def spy(model, attack, x, params, *, outlier_class=None, **kwargs):
        calls.append((attack, outlier_class))
        return real_craft(model, attack, x, params, outlier_class=outlier_class, **kwargs)

    monkeypatch.setattr(crafting, "run_attack", spy)
    config = EvalConfig(attacks=("jsma",), num_examples=4, sweeps=False, check_examples=4,
                        image_examples=0)
    results, _ = engine.evaluate_models(small_data, [spec], [], config)
    # One JSMA run, told the outlier class so its targets are real classes only.
    assert calls == [("jsma", 10)]
    rows = [e for e in results["evaluations"] if e["attack"] == "jsma"]
    assert sorted(e["variant"] for e in rows) == ["adaptive", "plain"]
    assert rows[0]["filtered"] == rows[1]["filtered"]


def _outlier_model(trained_linear):
    """11 logits: the trained linear classifier and a weak outlier logit."""
    model = keras_linear(11, (28, 28, 1))
    kernel, bias = trained_linear.get_weights()
    rng = np.random.default_rng(0)
    model.set_weights([np.concatenate([kernel, rng.normal(0, 0.02, (784, 1))], 1)
                       .astype(np.float32), np.append(bias, -1.0).astype(np.float32)])
    return model


def test_attack_failed_detection_and_roc_on_an_outlier_model(small_data, trained_linear,
                                                             tmp_path):
    from tensorboard.backend.event_processing import event_accumulator
    from keras_edd.reporting import markdown, results_files, tensorboard
    from keras_edd.results_schema import as_results
    spec = models.ModelSpec("ext", _outlier_model(trained_linear), "ext.keras", 10, 10)
    spec.describe = lambda: {"path": "ext.keras", "outputs": 11, "outlier_class": 10}
    config = EvalConfig(attacks=("fgsm", "square"), num_examples=20, sweeps=False,
                        check_examples=5, image_examples=0,
                        attack=AttackConfig(settings={
                            "square": SquareSettings(max_queries=30)}))
    results, images = engine.evaluate_models(small_data, [spec], [], config)
    rows = {(e["attack"], e["variant"]): e for e in results["evaluations"]}
    for (attack, variant), e in rows.items():
        f = e["filtered"]
        # White-box on inputs the target gets right: the attack failed exactly where the
        # decision stayed on y (plain), or on y or the outlier class (adaptive).
        expected = f["recovered"] + (f["detected"] if variant == "adaptive" else 0.0)
        assert f["attack_failed"] == pytest.approx(expected), (attack, variant)
        assert e["unfiltered"]["attack_failed"] is not None
    assert 0 < rows[("square", "plain")]["filtered"]["attack_failed"] < 1  # 30 queries
    detection_results = results["detection"]
    assert list(detection_results["targets"]) == ["ext"]
    entries = detection_results["entries"]
    assert {(e["attack"], e["variant"]) for e in entries} == set(rows)
    for e in entries:
        assert e["count"] == rows[(e["attack"], e["variant"])]["filtered"]["count"]
        for score in ("softmax", "margin"):
            assert 0.0 <= e[score]["auroc"] <= 1.0
            assert set(e[score]["at_fpr"]) == {"0.01", "0.05"}
            assert e[score]["roc"]["fpr"][0] == 0.0 and e[score]["roc"]["tpr"][-1] == 1.0
    at = detection_results["targets"]["ext"]["scores"]["margin"]["at_threshold"]
    # Margin 0 is the model's own decision: clean accuracy there is the plain accuracy.
    assert at["argmax (margin 0)"]["clean_accuracy"] == pytest.approx(
        results["models"]["ext"]["clean_attacked"]["accuracy"])
    # The text outputs and TensorBoard of these results; write_report's figures (roc.png
    # from a detection section) are drawn once, in tests/test_reporting.py.
    typed = as_results(results)
    attack_rows = [r for r in results_files.result_rows(typed)
                   if r["kind"] == "attack" and r["subset"] == "filtered"]
    assert attack_rows and all(r["attack_failed"] is not None for r in attack_rows)
    report = markdown.markdown_report(typed)
    assert "## Detection by the outlier class" in report and "TPR @ 1 % FPR" in report
    tensorboard.write_evaluation(str(tmp_path), results, images, report)
    accumulator = event_accumulator.EventAccumulator(
        str(tmp_path), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    assert "ext/whitebox/fgsm-plain/detection_softmax/pr_curves" in accumulator.Tags()["tensors"]


@pytest.mark.slow
def test_worst_case_and_fixed_false_detection_on_an_outlier_model(small_data, trained_linear,
                                                                  tmp_path):
    from keras_edd.reporting import results_files as reporting
    spec = models.ModelSpec("ext", _outlier_model(trained_linear), "ext.keras", 10, 10)
    spec.describe = lambda: {"path": "ext.keras", "outputs": 11, "outlier_class": 10}
    short = {"apgd_ce": ApgdSettings(nb_iter=10),
             "apgd_t": ApgdTargetedSettings(nb_iter=10, nb_targets=2)}
    config = EvalConfig(attacks=("fgsm", "apgd_ce", "apgd_t"), num_examples=20,
                        max_examples={"apgd_t": 12}, sweeps=False, check_examples=5,
                        image_examples=0, attack=AttackConfig(settings=short))
    results, images = engine.evaluate_models(small_data, [spec], [], config)
    entries = [e for e in results["evaluations"] if e["setting"] == "whitebox"]
    assert len(entries) == 6  # three attacks, plain and adaptive
    (worst,) = results["worst_case"]
    assert (worst["setting"], worst["target"], worst["attack"]) == ("whitebox", "ext", "any")
    assert worst["attacks_per_input"] == {"min": 4, "max": 6}
    assert worst["all_attacks"]["num_examples"] == 12 and worst["num_examples"] == 20
    for e in entries:  # the worst case is never better for the defender than one attack
        if e["num_examples"] == 20:
            assert worst["filtered"]["misclassified"] >= e["filtered"]["misclassified"]
            assert worst["filtered"]["recovered"] <= e["filtered"]["recovered"]
    # APGD-T on a linear model breaks (almost) every digit it attacks.
    apgd_t = next(e for e in entries if e["attack"] == "apgd_t" and e["variant"] == "adaptive")
    assert apgd_t["success"] >= 0.9 and apgd_t["norms"]["mean_linf"] <= 0.2 + 1e-6
    fixed = results["at_fixed_fpr"]["targets"]["ext"]
    test_set = results["models"]["ext"]["clean_test_set"]
    assert fixed["thresholds"]["argmax"]["clean_accuracy"] == pytest.approx(test_set["accuracy"])
    assert fixed["thresholds"]["argmax"]["false_detection"] == pytest.approx(
        test_set["detected"])
    for label in ("0.05", "0.01"):
        assert fixed["thresholds"][label]["false_detection"] <= float(label)
    rows = {(r["attack"], r["variant"]): r for r in fixed["rows"]}
    assert set(rows) == {(e["attack"], e["variant"]) for e in entries} | {("any", "any")}
    for label in ("0.05", "0.01", "argmax"):
        any_row = rows[("any", "any")]["at"][label]
        assert any_row["rejection_error"] <= any_row["detection_correct"]
        for key, r in rows.items():
            if r["num_examples"] == 20:
                assert any_row["detection_correct"] <= r["at"][label]["detection_correct"]
    reporting.write_report(str(tmp_path), results, images)
    report = (tmp_path / "report.md").read_text()
    assert "## Worst case per digit (any attack)" in report
    assert "## Accuracy at a fixed clean false-detection rate" in report
    kinds = {r["kind"] for r in reporting.read_csv(tmp_path / "results.csv")}
    assert {"worst_case", "at_fixed_fpr", "at_fixed_fpr_clean"} <= kinds
    worst_csv = [r for r in reporting.read_csv(tmp_path / "results.csv")
                 if r["kind"] == "worst_case" and r["subset"] == "filtered"]
    assert [float(worst_csv[0]["misclassified"])] == [worst["filtered"]["misclassified"]]
    assert (tmp_path / "whitebox.png").stat().st_size > 1000


# ------------------------------------------------------------------------ reproduce


def _settings(run_config):
    return {k: v for k, v in run_config.to_dict().items()
            if k not in ("output_dir", "run_name", "progress")}


def test_reproduce_targets_match_bin_train_defaults_so_runs_are_reused():
    from keras_edd.config import DataConfig, DefenseConfig, TrainConfig
    from keras_edd.runs.run_config import ReproduceConfig, RunConfig
    data_config = DataConfig(dataset="mnist", data_dir="../shared/data/mnist")
    configs = reproduce.reproduce_run_configs(
        ReproduceConfig(data=data_config, output_dir="out"), "mnist")
    # What bin/train builds from `--data_dir=../shared/data/mnist [--defense=...]`:
    # f with `--defense=none --epochs=6`, f^d with `--teacher=<f>`.
    f_path = "out/mnist-none-e6-s0/model.keras"
    for role, defense, epochs in (
            ("undefended", DefenseConfig(defense="none"), 6),
            ("extended", DefenseConfig(teacher_path=f_path), 50),
            ("distillation", DefenseConfig(defense="distillation"), 50),
            ("adversarial", DefenseConfig(defense="adversarial"), 6)):
        by_train = RunConfig(data=data_config, train=TrainConfig(epochs=epochs), defense=defense)
        assert _settings(configs[role]) == _settings(by_train), role
        assert configs[role].resolved_run_name("mnist") == by_train.resolved_run_name("mnist")
        assert configs[role].output_dir == "out"
    u, d = configs["surrogate_U"], configs["surrogate_D"]
    assert (u.train.seed, d.train.seed) == (1, 2)
    assert u.resolved_run_name("mnist") == "surrogate_U-mnist-none-e6-s1"
    assert d.defense.teacher_path == "out/surrogate_U-mnist-none-e6-s1/model.keras"
    assert d.defense.defense == "extended" and d.defense.alpha == 0.9
    # A non-default baseline temperature is passed on (and names the run).
    other = reproduce.reproduce_run_configs(
        ReproduceConfig(distillation_temperature=50.0, model_dir="models"), "mnist")
    assert other["distillation"].defense.resolved_temperature == 50.0
    assert other["distillation"].output_dir == "models"


def test_default_temperature_is_stored_so_spellings_match():
    from keras_edd.config import DefenseConfig
    assert DefenseConfig() == DefenseConfig(temperature=4.0)
    assert (DefenseConfig(defense="distillation")
            == DefenseConfig(defense="distillation", temperature=100.0))
    assert DefenseConfig(defense="none").temperature == 1.0


def test_configs_take_keyword_arguments_only():
    from keras_edd.config import DefenseConfig
    with pytest.raises(TypeError):
        DefenseConfig("extended", 0.9, 4.0)  # alpha and T are both floats: no silent swap


def test_each_attack_line_is_printed_when_it_finishes(small_data, capsys, monkeypatch):
    """The per-attack result lines were printed only at the end of a run: a user tailing
    the log saw nothing for minutes. Each is printed (flushed) once its entry is scored,
    before the next attack is crafted."""
    spec = models.ModelSpec("m", keras_linear(10, (28, 28, 1), seed=0), "m.keras", 10, None)
    spec.describe = lambda: {"path": "m.keras", "outputs": 10, "outlier_class": None}
    seen_before_craft = []
    real_craft = crafting.run_attack

    def spy(model, attack, *args, **kwargs):
        seen_before_craft.append((attack, capsys.readouterr().out))
        return real_craft(model, attack, *args, **kwargs)

    monkeypatch.setattr(crafting, "run_attack", spy)
    config = EvalConfig(attacks=("fgsm", "pgd"), num_examples=4, sweeps=False,
                        check_examples=4, image_examples=0)
    results, _ = engine.evaluate_models(small_data, [spec], [], config, progress=True)
    fgsm = next(e for e in results["evaluations"] if e["attack"] == "fgsm")
    assert [a for a, _ in seen_before_craft] == ["fgsm", "pgd"]
    assert formatting.result_line(fgsm) in seen_before_craft[1][1]
    assert formatting.result_line(fgsm).startswith("whitebox m fgsm (plain): recovered ")


def test_binaries_print_line_by_line_into_a_pipe(tmp_path):
    """stdout was block-buffered when redirected: run_main makes it line-buffered."""
    import os
    import subprocess
    import sys
    script = ("import time\nfrom keras_edd.cli import program\n"
              "program.run_main('x', lambda argv: (print('first line'), time.sleep(60)))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        import select
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready and process.stdout.readline() == "first line\n"
    finally:
        process.kill()
        process.wait()
