"""bin/eval_whitebox --attacks=standard: keras_edd.evaluate's standard list in a run.

The printed summary is rendered from RobustnessResult.to_dict() (so a finished run,
reopened from its results.json, prints the same table); the binary writes the result
under results.json's "standard" key and prints robust accuracy with its interval.
"""

import json

import numpy as np
import pytest

from conftest import assert_one_line_error, run_binary
from keras_edd import files, results_schema
from keras_edd.cli import program
from keras_edd.robustness.rates import Rate
from keras_edd.robustness.result import RobustnessResult, ThresholdResult, summary_text


def hand_made_result(outlier_class=None):
    n = 8
    robust = np.array([True, True, True, False, False, False, False, False])
    thresholds = () if outlier_class is None else (ThresholdResult(
        target_false_detection=0.05, tau=1.25, false_detection=Rate(0, n),
        clean_accuracy=Rate(6, n), robust_accuracy_detection_correct=Rate(3, n),
        robust_accuracy_rejection_error=Rate(2, n)),)
    return RobustnessResult(
        model="paper:extended", norm="linf", eps=0.3, attacks=("apgd_ce", "apgd_t"),
        attacks_skipped=(("square", "square needs images"),), settings={}, n=n,
        outlier_class=outlier_class, clean_accuracy=Rate(7, n), robust_accuracy=Rate(3, n),
        robust_accuracy_by_attack={"apgd_ce": Rate(4, n), "apgd_t": Rate(3, n)},
        clean_correct=np.arange(n) < 7, robust=robust,
        broken_by=(None,) * 3 + ("apgd_ce", "apgd_t", "apgd_t", "apgd_t", "clean"),
        x_adv=np.zeros((n, 2)), perturbation_norm=np.zeros(n), norm_violations={"apgd_ce": 1},
        thresholds=thresholds, checks={}, warnings=(), seed=0, seconds=1.0)


@pytest.mark.parametrize("outlier_class", [None, 10])
def test_summary_is_rendered_from_the_saved_dict(outlier_class):
    result = hand_made_result(outlier_class)
    saved = json.loads(result.to_json())  # what results.json holds
    text = summary_text(saved)
    assert text == result.summary()
    lines = text.splitlines()
    assert lines[0] == "paper:extended: linf eps=0.3, n=8" + (
        ", outlier class 10" if outlier_class is not None else "")
    # Robust accuracy with its 95 % Wilson interval and counts, after each attack too.
    assert lines[4] == f"robust (all attacks)  {Rate(3, 8)}" == \
        "robust (all attacks)  37.50% [13.68%, 69.43%] (3/8)"
    assert lines[1].startswith("clean accuracy") and lines[1].endswith(str(Rate(7, 8)))
    assert lines[2].endswith(str(Rate(4, 8))) and "after apgd_ce" in lines[2]
    assert "not run: square needs images" in text
    assert "norm violations (counted as failures): {'apgd_ce': 1}" in text
    assert ("false detection 0.05 (tau=1.25" in text) == (outlier_class is not None)


def test_print_summary_of_a_standard_run(capsys):
    table = hand_made_result().summary()
    program.print_summary({"standard": {"target": {}}, "run_dir": "/runs/w",
                           "files": ["results.json"]}, [table])
    out = capsys.readouterr().out
    assert out == f"{table}\nresults: /runs/w/results.json\n"
    program.print_summary({"evaluations": [], "run_dir": "/runs/e",
                           "files": ["results.json", "report.md"]})
    assert capsys.readouterr().out == "report: /runs/e/report.md\n"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two MNIST-shaped linear models: 10 logits, and 11 (outlier class 10)."""
    import keras
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    keras.utils.set_random_seed(0)
    for outputs in (10, 11):
        inputs = keras.Input((28, 28, 1))
        model = keras.Model(inputs, keras.layers.Dense(outputs)(keras.layers.Flatten()(inputs)))
        paths[outputs] = str(folder / f"linear{outputs}.keras")
        files.save_model(model, paths[outputs])
    return paths


STANDARD = ["--dataset=mnist_sample", "--test_limit=12", "--attacks=standard",
            "--num_examples=6", "--apgd_ce_eps=0.05", "--attack_batch_size=6", "--noprogress"]


@pytest.mark.slow
@pytest.mark.parametrize("outputs", [10, 11])
def test_eval_whitebox_standard_writes_and_prints_robust_accuracy(tmp_path, tiny_models,
                                                                  outputs):
    out = tmp_path / "out"
    result = run_binary("eval_whitebox", f"--model={tiny_models[outputs]}", *STANDARD,
                        f"--output_dir={out}", "--run_name=std")
    assert result.returncode == 0, result.stderr[-3000:]
    saved = files.read_json(str(out / "std" / "results.json"))
    entry = saved["standard"]["target"]
    assert entry["attacks"] == ["apgd_ce", "apgd_t", "fab_t", "square"]
    assert entry["eps"] == 0.05 and entry["norm"] == "linf" and entry["n"] == 6
    assert entry["outlier_class"] == (10 if outputs == 11 else None)
    assert len(entry["thresholds"]) == (2 if outputs == 11 else 0)
    assert entry["model"] == tiny_models[outputs]
    assert sum(entry["robust"]) == entry["robust_accuracy"]["k"]
    assert saved["settings"]["standard"] is True and saved["kind"] == "whitebox"
    # Written by the one results writer: the schema's version, and it reads back typed.
    assert saved["schema_version"] == results_schema.SCHEMA_VERSION
    typed = results_schema.read_results(str(out / "std" / "results.json"))
    assert typed.standard["target"].robust_accuracy.k == entry["robust_accuracy"]["k"]
    # The run records the settings it used: apgd_ce's (eps, norm), no sweeps.
    assert saved["settings"]["evaluation"]["attacks"] == ["apgd_ce"]
    assert saved["settings"]["evaluation"]["sweeps"] is False
    # The printed table is the saved result's, with robust accuracy and its interval.
    robust = Rate(entry["robust_accuracy"]["k"], 6)
    assert f"robust (all attacks)  {robust}" in result.stdout
    assert summary_text(entry) in result.stdout
    assert f"results: {out / 'std'}/results.json" in result.stdout
    assert sorted(p.name for p in (out / "std").iterdir() if p.is_file()) == [
        "flags.json", "results.json"]
    # Run again: the finished run is reopened, not recomputed, and prints the same.
    again = run_binary("eval_whitebox", f"--model={tiny_models[outputs]}", *STANDARD,
                       f"--output_dir={out}", "--run_name=std")
    assert again.returncode == 0 and summary_text(entry) in again.stdout


@pytest.mark.slow
@pytest.mark.parametrize("binary, args, fragment", [
    ("eval_whitebox", ["--attacks=fgsm,standard"],
     "attacks=fgsm,standard: 'standard' (AutoAttack's list) runs alone"),
    ("eval_whitebox", ["--attacks=standard", "--distribution=mirrored"],
     "attacks=standard runs on one device: drop --distribution=mirrored"),
    ("eval_blackbox", ["--attacks=standard", "--surrogate=U={model}"],
     "unknown attack 'standard'"),
])
def test_standard_flag_errors(tmp_path, tiny_models, binary, args, fragment):
    model_flag = "--model" if binary == "eval_whitebox" else "--target"
    args = [a.replace("{model}", tiny_models[10]) for a in args]
    result = run_binary(binary, f"{model_flag}={tiny_models[10]}", *args,
                        f"--output_dir={tmp_path / 'out'}")
    assert_one_line_error(result, fragment, program=f"bin/{binary}")
    assert not (tmp_path / "out").exists()
