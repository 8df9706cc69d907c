"""Crafts kept across runs (keras_edd.evaluation.attack_cache), progress bars, per-row chunks."""

import dataclasses
import os

import keras
import numpy as np
import pytest

from keras_edd import data, models, progress
from keras_edd.config import EvalConfig
from keras_edd import attack_registry, attack_settings
from keras_edd.attack_registry import AttackConfig
from keras_edd.evaluation import attack_cache, crafting, engine
from keras_edd import files


def _cnn_free_model(seed=0, outputs=10):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(outputs)(hidden))


@pytest.fixture(scope="module")
def small_data():
    return data.load_dataset("mnist_sample", train_limit=100, test_limit=40)


def _spec(name, model):
    spec = models.ModelSpec(name, model, f"{name}.keras", 10, None)
    spec.describe = lambda: {"path": spec.path, "outputs": 10, "outlier_class": None}
    return spec


# ------------------------------------------------------------------------ progress


def test_progress_follows_tqdm_disable_none_semantics():
    assert progress.tqdm_disable(True) is None  # tqdm decides: off when not a terminal
    assert progress.tqdm_disable(False) is True
    with progress.bar(total=3, desc="x", progress=False) as bar:
        assert bar.disable
    # Under pytest stderr is captured, not a terminal: progress=True stays silent.
    with progress.bar(total=3, desc="x", progress=True) as bar:
        assert bar.disable


# ------------------------------------------------------------------------ the key


def test_fingerprint_is_stable_across_reloads_and_follows_the_weights(tmp_path):
    model = _cnn_free_model()
    first, second = str(tmp_path / "a.keras"), str(tmp_path / "b.keras")
    files.save_model(model, first)
    files.save_model(model, second)  # the same weights saved again (other config ids)
    prints = {attack_cache.model_fingerprint(models.load_model(path))
              for path in (first, first, second)}
    assert prints == {attack_cache.model_fingerprint(model)}
    changed = _cnn_free_model()
    changed.set_weights([w + (i == 0) * 1e-3 for i, w in enumerate(model.get_weights())])
    assert attack_cache.model_fingerprint(changed) != attack_cache.model_fingerprint(model)
    assert attack_cache.model_fingerprint(lambda x: x) is None


def test_key_changes_with_everything_that_determines_a_craft():
    base = dict(model="m", attack="pgd", function="f", params={"eps": 0.2, "nb_iter": 40},
                variant="plain", outlier_class=None, chunk=100, seed=0)

    def digest(**changes):
        args = dict(base, **changes)
        return attack_cache.key_digest(attack_cache.craft_key(
            args.pop("model"), args.pop("attack"), args.pop("function"), args.pop("params"),
            **args))

    reference = digest()
    assert digest() == reference
    assert digest(params={"nb_iter": 40, "eps": 0.2}) == reference  # order does not matter
    others = [digest(model="m2"), digest(attack="fgsm"), digest(function="g"),
              digest(params={"eps": 0.3, "nb_iter": 40}),
              digest(params={"eps": 0.2, "nb_iter": 41}), digest(variant="adaptive"),
              digest(outlier_class=10), digest(chunk=50), digest(seed=1)]
    assert len({reference, *others}) == len(others) + 1


# ------------------------------------------------------------------------ the cache


def test_prefix_of_a_longer_craft_equals_a_fresh_craft(small_data):
    """PGD draws its random start per chunk (seed + first index): a prefix of whole
    chunks is exactly the craft of fewer inputs."""
    model = _cnn_free_model()
    x = data.to_float(small_data.x_test[:40])
    params = attack_registry.attack_params("pgd", AttackConfig(), 0.3)
    params["nb_iter"] = 5
    long = crafting.run_attack(model, "pgd", x, params, batch_size=10, seed=3)
    fresh = crafting.run_attack(model, "pgd", x[:20], params, batch_size=10, seed=3)
    cache = attack_cache.CraftCache()
    key = attack_cache.craft_key(cache.model_id(model), "pgd", "f", params, variant="plain",
                                 outlier_class=None, chunk=10, seed=3)
    cache.put(key, x, 40, long, 4.0, {})
    reused = cache.get(key, x, 20)
    assert reused.origin == "prefix" and reused.seconds == pytest.approx(2.0)
    np.testing.assert_array_equal(reused.x_adv, fresh)
    assert cache.get(key, x, 15) is None  # 15 inputs end inside a chunk: not reusable
    assert cache.get(key, x, 40).origin == "memory"


@pytest.mark.slow
def test_files_are_reloaded_checked_and_keep_details(tmp_path, small_data):
    model = _cnn_free_model()
    x = data.to_float(small_data.x_test[:8])
    params = attack_registry.attack_params("jsma", AttackConfig())
    details = {}
    x_adv = crafting.run_attack(model, "jsma", x, params, batch_size=4, details=details)
    assert details["success"].shape == (8,) and details["target"].shape == (8,)
    folder = str(tmp_path / "attacks")
    cache = attack_cache.CraftCache(folder)
    key = attack_cache.craft_key(cache.model_id(model), "jsma", "f", params, variant="plain",
                                 outlier_class=None, chunk=4, seed=0)
    cache.put(key, x, 8, x_adv, 1.5, details)
    assert len(os.listdir(folder)) == 1
    again = attack_cache.CraftCache(folder)  # a new run: nothing in memory
    loaded = again.get(key, x, 8)
    assert loaded.origin == "loaded" and loaded.seconds == 1.5
    np.testing.assert_array_equal(loaded.x_adv, x_adv)
    np.testing.assert_array_equal(loaded.details["success"], details["success"])
    assert again.get(key, x, 4).origin == "prefix"
    # Other inputs under the same key (another dataset) are not taken for these.
    assert attack_cache.CraftCache(folder).get(key, 1.0 - x, 8) is None


def test_chunk_size_of_a_row_sets_the_calls_and_the_progress(monkeypatch, small_data):
    row = dataclasses.replace(attack_registry.get("fgsm"), chunk_size=7)
    monkeypatch.setitem(attack_registry.ATTACKS, "fgsm", row)
    x = data.to_float(small_data.x_test[:20])
    done = []
    crafting.run_attack(_cnn_free_model(), "fgsm", x, {"eps": 0.1}, batch_size=100,
                          on_chunk=done.append)
    assert done == [7, 7, 6] and attack_registry.chunk_size("fgsm", 100) == 7


@pytest.mark.slow
def test_a_rerun_loads_every_craft_and_gives_the_same_results(tmp_path, small_data):
    target = _spec("target", _cnn_free_model())
    surrogate = _spec("surrogate", _cnn_free_model(seed=1))
    config = EvalConfig(attacks=("fgsm", "pgd"), num_examples=20, sweep_attacks=("fgsm",),
                        sweep_eps=(0.1, 0.2), sweep_num_examples=10, check_examples=10,
                        attack=AttackConfig(batch_size=10))
    folder = str(tmp_path / "attacks")
    first, _ = engine.evaluate_models(small_data, [target], [surrogate], config,
                                          cache_dir=folder)
    # fgsm and pgd on each model; the eps=0.2 sweep point is the main FGSM craft's prefix.
    assert first["crafts"] == {"computed": 5, "loaded": 0, "prefix": 1, "memory": 0}
    again, _ = engine.evaluate_models(small_data, [target], [surrogate], config,
                                          cache_dir=folder)
    assert again["crafts"] == {"computed": 0, "loaded": 5, "prefix": 1, "memory": 0}
    for key in ("evaluations", "sweeps", "models", "warnings"):
        assert again[key] == first[key], key  # attack_seconds too: the recorded ones
    stages = again["stage_seconds"]
    assert stages["attacks"]["seconds_here"] == 0.0
    assert stages["attacks"]["seconds_total"] == pytest.approx(
        first["stage_seconds"]["attacks"]["seconds_here"])
    assert stages["whitebox"]["seconds_total"] >= stages["whitebox"]["seconds_here"]


def test_a_new_settings_field_reaches_the_attack_and_the_key(monkeypatch, small_data):
    """A field added to a row's settings (e.g. CW's early_exit) is passed to the function
    as a keyword and is part of the craft key, with no change to the engine."""
    seen = []

    def fake_cw(model, x, *, outlier_class=None, **kwargs):
        seen.append(kwargs["early_exit"])
        return x

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Settings(attack_settings.CwSettings):
        early_exit: str = "sample"

    row = dataclasses.replace(attack_registry.get("cw"), settings=Settings())
    row.__dict__["fn"] = fake_cw  # what the cached `fn` would import
    monkeypatch.setitem(attack_registry.ATTACKS, "cw", row)
    config = AttackConfig(settings={"cw": Settings(early_exit="batch")})
    params = attack_registry.attack_params("cw", config)
    assert params["early_exit"] == "batch"
    crafting.run_attack(None, "cw", data.to_float(small_data.x_test[:3]), params)
    assert seen == ["batch"]
    keys = {attack_cache.key_digest(attack_cache.craft_key(
        "m", "cw", row.function, attack_registry.attack_params("cw", AttackConfig(
            settings={"cw": Settings(early_exit=mode)})), variant="plain", outlier_class=None,
        chunk=512, seed=0)) for mode in ("sample", "batch")}
    assert len(keys) == 2
