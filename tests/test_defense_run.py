"""The defenses end to end through bin/train, on tiny subsets of the bundled sample."""

import json
import os

import numpy as np
import pytest

from conftest import REPO, event_hparams, run_binary
from keras_edd import config, models
from keras_edd.runs import run_config

TRAIN = os.path.join(REPO, "bin", "train")


def run(*args):
    return run_binary("train", "--noprogress", *args)


@pytest.mark.slow
@pytest.mark.parametrize("args,fragment", [
    (["--alpha=1.5"], "alpha=1.5"),
    (["--temperature=0"], "temperature=0"),
    (["--mc_passes=1"], "mc_passes=1"),
    (["--penalty_weight=-1"], "penalty_weight=-1"),
    (["--defense=magic"], "defense='magic'"),
    (["--teacher=foo.h5"], "teacher='foo.h5'"),
    (["--defense=none", "--teacher=t.keras"], "teacher_path is set"),
    (["--defense=adversarial", "--teacher=t.keras"], "teacher_path is set"),
    (["--defense=adversarial", "--adv_train_attack=fgsm"], "adv_train_attack='fgsm'"),
    (["--defense=adversarial", "--adv_train_eps=0"], "adv_train_eps=0.0"),
    (["--defense=adversarial", "--adv_train_step=-0.1"], "adv_train_step=-0.1"),
    (["--defense=adversarial", "--adv_train_steps=0"], "adv_train_steps=0"),
])
def test_bad_defense_flags(tmp_path, args, fragment):
    result = run(f"--output_dir={tmp_path / 'out'}", *args)
    assert result.returncode == 2
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_missing_or_corrupt_teacher_named(tmp_path):
    bad = tmp_path / "teacher.keras"
    bad.write_bytes(b"not a zip")
    for path in (bad, tmp_path / "absent.keras"):
        result = run(f"--output_dir={tmp_path / 'out'}", f"--teacher={path}",
                     "--dataset=mnist_sample")
        assert result.returncode == 2 and str(path) in result.stderr, result.stderr
        assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_extended_end_to_end_uses_outlier_class(tmp_path):
    out = tmp_path / "out"
    result = run("--dataset=mnist_sample", "--train_limit=512", "--test_limit=200",
                 "--alpha=0.9", "--temperature=4", "--epochs=4", "--teacher_epochs=2",
                 "--mc_passes=4", "--batch_size=64", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr
    run_dir = out / "mnist_sample-extended-a0.9-T4-e4-s0"
    results = json.loads((run_dir / "results.json").read_text())
    distilled = models.load_model(str(run_dir / "distilled.keras"))
    teacher = models.load_model(str(run_dir / "teacher.keras"))
    assert distilled.output_shape == (None, 11) and teacher.output_shape == (None, 10)
    sigma = np.load(run_dir / "labels" / "sigma_train.npy")
    assert sigma.shape == (512,) and results["sigma"]["sigma_max"] == pytest.approx(sigma.max())
    assert results["sigma"]["train"]["median"] == pytest.approx(np.median(sigma), rel=1e-6)
    assert 0 < results["outlier_mass_fraction"] < 0.9
    # The distilled model sends some inputs to the outlier class: on the training
    # inputs with the largest sigma, its outlier probability is highest.
    from keras_edd.data import load_dataset
    ds = load_dataset("mnist_sample", train_limit=512)
    logits = models.predict_logits(distilled, ds.x_train)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    order = np.argsort(sigma)
    assert probs[order[-50:], 10].mean() > probs[order[:50], 10].mean()
    assert (logits.argmax(1) == 10).any()
    assert results["models"]["distilled"]["clean_detected"] == pytest.approx(
        models.evaluate_clean(distilled, ds.x_test[:200], ds.y_test[:200], outlier_class=10)["detected"])


@pytest.mark.slow
def test_distillation_baseline_and_teacher_reuse(tmp_path):
    out = tmp_path / "out"
    common = ["--dataset=mnist_sample", "--train_limit=256", "--test_limit=100", "--epochs=1",
              "--teacher_epochs=1", "--batch_size=64", f"--output_dir={out}"]
    result = run("--defense=distillation", *common)
    assert result.returncode == 0, result.stderr
    run_dir = out / "mnist_sample-distillation-T100-e1-s0"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["temperature"] == 100.0
    assert results["models"]["teacher"]["train_temperature"] == 100.0
    soft = np.load(run_dir / "labels" / "distillation_labels.npy")
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-5)
    assert models.load_model(str(run_dir / "distilled.keras")).output_shape == (None, 10)
    # Reuse that teacher for an extended run: no teacher training, no teacher.keras copy.
    reuse = run("--defense=extended", f"--teacher={run_dir / 'teacher.keras'}",
                "--run_name=reuse", "--mc_passes=2", *common)
    assert reuse.returncode == 0, reuse.stderr
    reused = json.loads((out / "reuse" / "results.json").read_text())
    assert reused["models"]["teacher"]["reused"] is True
    assert not (out / "reuse" / "teacher.keras").exists()


def test_config_defaults_follow_the_paper():
    d = config.DefenseConfig()
    assert (d.defense, d.alpha, d.resolved_temperature, d.mc_passes) == ("extended", 0.9, 4.0, 20)
    assert config.DefenseConfig(defense="distillation").resolved_temperature == 100.0


def test_precision_is_saved_only_when_not_float32():
    # Runs made before the precision setting existed stored no such key: a float32
    # run must keep matching them, a bf16 run must not.
    fp32 = run_config.RunConfig(train=config.TrainConfig())
    bf16 = run_config.RunConfig(train=config.TrainConfig(precision="mixed_bfloat16"))
    assert "precision" not in fp32.to_dict()["train"]
    assert bf16.to_dict()["train"]["precision"] == "mixed_bfloat16"
    assert fp32.resolved_run_name("mnist") == "mnist-extended-a0.9-T4-e6-s0"
    assert bf16.resolved_run_name("mnist") == "mnist-extended-a0.9-T4-e6-s0-bf16"
    with pytest.raises(ValueError, match="precision='float16'"):
        config.TrainConfig(precision="float16").validate()


@pytest.mark.slow
def test_extended_in_bfloat16_saves_float32_models(tmp_path):
    out = tmp_path / "out"
    result = run("--dataset=mnist_sample", "--train_limit=256", "--test_limit=100",
                 "--epochs=1", "--teacher_epochs=1", "--mc_passes=2", "--batch_size=64",
                 "--precision=mixed_bfloat16", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr
    run_dir = out / "mnist_sample-extended-a0.9-T4-e1-s0-bf16"
    flags_saved = json.loads((run_dir / "flags.json").read_text())
    assert flags_saved["train"]["precision"] == "mixed_bfloat16"
    for name in ("teacher.keras", "distilled.keras"):
        saved = json.loads(__import__("zipfile").ZipFile(run_dir / name).read("config.json"))
        dtypes = {layer["config"]["dtype"]["config"]["name"]
                  for layer in saved["config"]["layers"] if layer["class_name"] != "InputLayer"}
        assert dtypes == {"float32"}, (name, dtypes)
    # The reported numbers are those of the saved float32 model.
    results = json.loads((run_dir / "results.json").read_text())
    from keras_edd.data import load_dataset
    ds = load_dataset("mnist_sample", test_limit=100)
    clean = models.evaluate_clean(models.load_model(str(run_dir / "distilled.keras")), ds.x_test,
                              ds.y_test, outlier_class=10)
    assert results["clean_test_accuracy"] == clean["accuracy"]
    assert results["clean_test_detected"] == clean["detected"]
    assert results["sigma"]["sigma_max"] > 0


@pytest.mark.slow
def test_adversarial_training_end_to_end(tmp_path):
    out = tmp_path / "out"
    result = run("--defense=adversarial", "--adv_train_attack=fgsm_rs", "--adv_train_eps=0.3",
                 "--dataset=mnist_sample", "--train_limit=256", "--test_limit=100",
                 "--epochs=2", "--batch_size=64", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr
    run_dir = out / "mnist_sample-adversarial-fgsm_rs-eps0.3-e2-s0"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["defense"] == "adversarial" and results["deployed_model"] == "model.keras"
    assert results["adversarial_training"] == {"attack": "fgsm_rs", "eps": 0.3,
                                               "step": pytest.approx(0.375),
                                               "schedule": "cyclic", "keep_best": True}
    history = results["models"]["model"]["history"]
    assert len(history["eval/pgd_accuracy"]) == 2
    # The deployed model is the epoch of highest held-out PGD accuracy (the first of equals).
    pgd = history["eval/pgd_accuracy"]
    assert history["kept_epoch"] == history["epoch"][pgd.index(max(pgd))]
    assert (run_dir / "checkpoints" / "model" / "best.weights.h5").is_file()
    assert all(0.0 <= a <= 1.0 for a in history["eval/pgd_accuracy"])
    assert models.load_model(str(run_dir / "model.keras")).output_shape == (None, 10)


def test_adversarial_settings_saved_only_for_changed_values():
    default = config.DefenseConfig(defense="adversarial")
    assert not {"adv_train_attack", "adv_train_eps", "adv_train_step",
                "adv_train_steps"} & set(config.DefenseConfig().to_dict())
    assert default.resolved_adv_train_step == pytest.approx(0.375)
    pgd = config.DefenseConfig(defense="adversarial", adv_train_attack="pgd")
    assert pgd.to_dict()["adv_train_attack"] == "pgd" and pgd.resolved_adv_train_step == 0.01


@pytest.mark.parametrize("defense,expected", [
    ("none", {}),
    ("distillation", {"temperature": 100.0, "teacher_epochs": 6}),
    ("extended", {"temperature": 4.0, "teacher_epochs": 6, "alpha": 0.9, "mc_passes": 20,
                  "penalty_weight": 1e-3}),
    ("adversarial", {"adv_train_attack": "fgsm_rs", "adv_train_eps": 0.3}),
])
def test_run_hparams_name_what_each_defense_uses(defense, expected):
    from keras_edd.runs import train_run
    rc = run_config.RunConfig(defense=config.DefenseConfig(defense=defense),
                              train=config.TrainConfig(epochs=3, seed=2))
    assert train_run.run_hparams(rc) == {"defense": defense, "epochs": 3, "seed": 2,
                                         "dataset": "mnist", "batch_size": 128, **expected}


@pytest.mark.slow
def test_training_run_logs_hparams_with_its_final_metrics(tmp_path):
    """In process, tiny: TensorBoard's hparams dashboard can compare runs by alpha, T,
    lambda, N, epochs, defense and seed, with the run's final numbers beside them."""
    from keras_edd.runs import train_run
    rc = run_config.RunConfig(
        data=config.DataConfig(dataset="mnist_sample", train_limit=128, test_limit=50),
        train=config.TrainConfig(epochs=1, batch_size=64, seed=3),
        defense=config.DefenseConfig(alpha=0.8, temperature=2.0, mc_passes=2,
                                     penalty_weight=0.01, teacher_epochs=1),
        output_dir=str(tmp_path), progress=False)
    results = train_run.train_run(rc)
    logs = os.path.join(results["run_dir"], "logs")
    hparams, scalars = event_hparams(logs)
    assert hparams == {"defense": "extended", "epochs": 1.0, "seed": 3.0,
                       "dataset": "mnist_sample", "batch_size": 64.0, "temperature": 2.0,
                       "teacher_epochs": 1.0, "alpha": pytest.approx(0.8), "mc_passes": 2.0,
                       "penalty_weight": pytest.approx(0.01)}
    assert scalars["final/clean_accuracy"] == (1, pytest.approx(results["clean_test_accuracy"]))
    assert scalars["final/clean_detected"] == (1, pytest.approx(results["clean_test_detected"]))
    assert "final/outlier_mass_fraction" in scalars and "final/training_seconds" in scalars
    # The per-epoch scalars stay in each model's folder, inside the hparams session.
    assert {name for name in os.listdir(logs) if os.path.isdir(os.path.join(logs, name))} \
        == {"distilled", "labeling", "teacher"}
