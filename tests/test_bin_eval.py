"""bin/eval_whitebox, bin/eval_blackbox, bin/reproduce end to end.

Bad flags and bad model files give one-line errors (exit 2) and write nothing;
a tiny reproduce run writes results.json / results.csv / PNGs / TensorBoard /
report.md whose numbers agree, and the evaluation binaries run on its models.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, assert_one_line_error, event_hparams, run_binary
from keras_edd import files

BIN = {name: os.path.join(REPO, "bin", name) for name in ("eval_whitebox", "eval_blackbox",
                                                          "reproduce")}


def run(binary, *args):
    return run_binary(binary, *args)


@pytest.fixture
def model_file(tmp_path):
    """A file that exists and ends in .keras (flag validation only looks at that)."""
    path = tmp_path / "m.keras"
    path.write_bytes(b"not checked before TensorFlow")
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("binary,args,fragment", [
    ("eval_whitebox", [], "model: give a .keras model file"),
    ("eval_whitebox", ["--model=x.h5"], "model='x.h5': must be a .keras model file"),
    ("eval_whitebox", ["--model=missing.keras"], "model='missing.keras': no such file"),
    ("eval_whitebox", ["--model={model}", "--attacks=fgsm,boom"], "unknown attack 'boom'"),
    ("eval_whitebox", ["--model={model}", "--num_examples=0"], "num_examples=0"),
    ("eval_whitebox", ["--model={model}", "--fgsm_eps=2"], "fgsm_eps=2.0"),
    ("eval_whitebox", ["--model={model}", "--jsma_gamma=0"], "jsma_gamma=0.0"),
    ("eval_whitebox", ["--model={model}", "--cw_optimizer=sgd"], "cw_optimizer='sgd'"),
    ("eval_whitebox", ["--model={model}", "--cw_early_exit=never"], "cw_early_exit='never'"),
    ("eval_whitebox", ["--model={model}", "--pgd_loss=hinge"], "pgd_loss='hinge'"),
    ("eval_whitebox", ["--model={model}", "--sweep_eps=0.1,abc"],
     "sweep_eps: 'abc' is not a number"),
    ("eval_whitebox", ["--model={model}", "--dataset=svhn"], "dataset='svhn'"),
    ("eval_whitebox", ["--model={model}", "extra"], "unexpected arguments"),
    ("eval_blackbox", ["--target={model}"], "surrogate: give at least one"),
    ("eval_blackbox", ["--target={model}", "--surrogate=U=nope.keras"],
     "surrogate U='nope.keras': no such file"),
    ("eval_blackbox", ["--target={model}", "--surrogate=U={model},U={model}"], "repeated name"),
    ("eval_blackbox", ["--target={model}", "--surrogate=J={model}"],
     "surrogate name 'J' is reserved for the Jacobian-augmented substitute"),
    ("eval_blackbox", ["--target={model}", "--surrogate=J", "--substitute_tau=-1"],
     "substitute_tau=-1"),
    ("eval_blackbox", ["--target={model}", "--surrogate=J", "--substitute_lam=0"],
     "substitute_lam=0.0"),
    ("eval_blackbox", ["--target={model}", "--surrogate=J", "--substitute_initial=0"],
     "substitute_initial=0"),
    ("reproduce", ["--substitute_rounds=-1"], "substitute_rounds=-1"),
    ("reproduce", ["--substitute_epochs_per_round=0"], "substitute_epochs_per_round=0"),
    ("reproduce", ["--substitute_batch_size=0"], "substitute_batch_size=0"),
    # S_0 (the last 30 of the 200 test inputs under --quick) would overlap the attacked ones.
    ("reproduce", ["--quick", "--num_examples=190"],
     "num_examples=190 attacked test inputs plus substitute_initial=30 inputs of S_0 exceed "
     "the 200 test inputs"),
    ("reproduce", ["--epochs=0"], "epochs=0"),
    ("reproduce", ["--alpha=1.5"], "alpha=1.5"),
    ("reproduce", ["--distillation_temperature=0"], "distillation_temperature=0.0"),
    ("reproduce", ["--standard_eps=0"], "standard_eps=0.0: allowed range is (0.0, 1.0]"),
    ("reproduce", ["--curve_num_examples=0"], "curve_num_examples=0"),
    ("reproduce", ["--quick", "--num_examples_cw=-1"], "num_examples_cw=-1"),
    ("reproduce", ["--run_name=../escape"], "run_name='../escape'"),
    ("reproduce", ["--preset=fast"], "preset='fast': allowed values are quick, paper"),
    ("reproduce", ["--quick", "--preset=paper"], "--quick and --preset=paper: choose one"),
])
def test_bad_flags_one_line_error_nothing_written(tmp_path, model_file, binary, args, fragment):
    out = tmp_path / "out"
    args = [a.replace("{model}", model_file) for a in args]
    result = run(binary, f"--output_dir={out}", *args)
    assert_one_line_error(result, fragment)
    assert not out.exists()


def _flag_names(binary_path):
    result = subprocess.run([sys.executable, binary_path, "--helpfull"], capture_output=True,
                            text=True, timeout=120)
    return set(re.findall(r"^  --(?:\[no\])?(\w+)", result.stdout, re.M))


@pytest.mark.slow
def test_flag_names_of_every_binary_are_kept():
    """The flags come from keras_edd.cli and the attack registry; old names still work."""
    attack_flags = {"fgsm_eps", "pgd_eps", "pgd_eps_iter", "pgd_nb_iter", "pgd_restarts",
                    "pgd_loss", "jsma_theta", "jsma_gamma", "jsma_target_mode", "cw_confidence",
                    "cw_optimizer", "cw_learning_rate", "cw_binary_search_steps",
                    "cw_max_iterations", "cw_initial_const", "attack_batch_size", "attack_seed",
                    "num_examples_jsma", "num_examples_cw", "quick", "preset", "sweep_kappa",
                    "cw_adam_confidence", "cw_adam_optimizer", "cw_adam_learning_rate",
                    "num_examples_cw_adam", "square_eps", "square_max_queries", "square_p_init",
                    "num_examples_square"}
    data_flags = {"dataset", "data_dir", "train_limit", "test_limit"}
    model_flags = {"epochs", "batch_size", "optimizer", "learning_rate", "seed", "alpha",
                   "temperature", "mc_passes", "penalty_weight", "teacher_epochs"}
    output_flags = {"output_dir", "run_name", "progress"}
    substitute_flags = {"substitute_initial", "substitute_rounds", "substitute_lam",
                        "substitute_tau", "substitute_epochs_per_round", "substitute_batch_size"}
    names = {b: _flag_names(path) for b, path in BIN.items()}
    names["train"] = _flag_names(os.path.join(REPO, "bin", "train"))
    for binary in ("eval_whitebox", "eval_blackbox", "reproduce"):
        assert attack_flags | data_flags | output_flags <= names[binary], binary
    assert substitute_flags <= names["eval_blackbox"]
    assert substitute_flags | {"jacobian_substitute"} <= names["reproduce"]
    assert not (substitute_flags & names["eval_whitebox"])
    assert model_flags | {"distillation_temperature", "model_dir"} <= names["reproduce"]
    # Only bin/reproduce has models beyond the paper's Figure 1 to cap.
    assert "num_examples_extra" in names["reproduce"]
    standard_flags = {"standard", "standard_eps", "standard_num_examples", "curve_num_examples"}
    assert standard_flags <= names["reproduce"]
    assert not standard_flags & (names["eval_whitebox"] | names["eval_blackbox"])
    assert "num_examples_extra" not in names["eval_whitebox"] | names["eval_blackbox"]
    assert model_flags | data_flags | output_flags | {"defense", "teacher"} <= names["train"]
    assert not (attack_flags & names["train"])  # bin/train takes no evaluation flags
    assert "pgd_rand_init" not in names["reproduce"]  # fixed settings are not flags


@pytest.mark.slow
def test_attack_flags_flow_into_the_attack_params():
    """--square_eps and --cw_adam_confidence reach the settings the attacks are called with,
    and --quick sets its cheaper values for the new rows."""
    code = (
        "import sys, json\n"
        "from absl import flags\n"
        "from keras_edd.cli import configs, flag_groups\n"
        "from keras_edd import attack_registry\n"
        "from keras_edd.runs.run_config import WhiteboxConfig\n"
        "flag_groups.define_flags(WhiteboxConfig)\n"
        "flags.FLAGS(sys.argv)\n"
        "config = configs.build(WhiteboxConfig).evaluation.validate()\n"
        "params = {a: attack_registry.attack_params(a, config.attack) for a in "
        "('square', 'cw_adam')}\n"
        "print(json.dumps({'params': params, 'caps': [config.examples_for('square'), "
        "config.examples_for('cw_adam')]}))\n")
    env = dict(os.environ, PYTHONPATH=REPO)

    def parsed(*args):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                                text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    out = parsed("--square_eps=0.3", "--square_max_queries=77", "--cw_adam_confidence=3")
    assert out["params"]["square"] == {"eps": 0.3, "max_queries": 77, "p_init": 0.8}
    assert out["params"]["cw_adam"]["confidence"] == 3.0
    assert out["params"]["cw_adam"]["optimizer"] == "adam"
    assert out["params"]["cw_adam"]["learning_rate"] == 0.01  # Carlini's default
    quick = parsed("--quick")
    assert quick["params"]["square"]["max_queries"] == 300
    assert quick["params"]["cw_adam"]["max_iterations"] == 100
    assert quick["caps"] == [30, 10]


@pytest.fixture(scope="module")
def wrong_models(tmp_path_factory):
    """A corrupt .keras file and a valid model with 5 outputs."""
    import keras
    folder = tmp_path_factory.mktemp("models")
    corrupt = folder / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    inputs = keras.Input((28, 28, 1))
    five = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(inputs)))
    files.save_model(five, str(folder / "five.keras"))
    return {"corrupt": str(corrupt), "five": str(folder / "five.keras")}


@pytest.mark.slow
@pytest.mark.parametrize("which,fragment", [
    ("corrupt", "not a .keras archive"),
    ("five", "has 5 outputs; dataset 'mnist_sample' has n=10 classes"),
])
def test_bad_model_file_named_in_one_line_error(tmp_path, wrong_models, which, fragment):
    out = tmp_path / "out"
    result = run("eval_whitebox", f"--model={wrong_models[which]}", "--dataset=mnist_sample",
                 "--test_limit=10", f"--output_dir={out}", "--noprogress")
    assert_one_line_error(result, fragment)
    assert wrong_models[which] in result.stderr
    assert not out.exists()


# ---------------------------------------------------------------------- end to end

# PGD shares FGSM's code path here; it is covered in-process by test_evaluation.py.
TINY = ["--quick", "--attacks=fgsm,jsma,cw", "--train_limit=1000", "--test_limit=40",
        "--epochs=2", "--teacher_epochs=2", "--mc_passes=2", "--batch_size=64",
        "--num_examples=16", "--num_examples_jsma=4", "--num_examples_cw=4",
        "--num_examples_extra=2", "--cw_max_iterations=10", "--cw_binary_search_steps=1", "--pgd_nb_iter=3",
        "--sweep_attacks=fgsm", "--sweep_eps=0.1,0.5", "--sweep_num_examples=8",
        "--check_examples=16", "--substitute_initial=8", "--substitute_rounds=1",
        "--substitute_epochs_per_round=1", "--standard_num_examples=6",
        "--curve_num_examples=4", "--noprogress"]
TARGETS = ("undefended", "extended", "distillation", "adversarial")


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    result = run("reproduce", *TINY, f"--output_dir={out}", "--run_name=tiny")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def _csv_rows(path):
    from keras_edd.reporting import results_files
    return results_files.read_csv(path)


def _assert_rates_consistent(results, run_dir):
    """Rates sum to 1, the CSV holds exactly the JSON's numbers, PNGs are images."""
    import matplotlib.image
    from keras_edd.reporting import results_files
    checked = 0
    for e in results["evaluations"]:
        for subset in ("filtered", "unfiltered"):
            r = e[subset]
            if r["count"]:
                assert r["recovered"] + r["detected"] + r["misclassified"] == pytest.approx(1.0)
                checked += 1
        assert e["filtered"]["count"] <= e["unfiltered"]["count"] == e["num_examples"]
        if results["models"][e["target"]]["outlier_class"] is None:
            assert e["unfiltered"]["detected"] == 0.0
    assert checked > 0

    def text(value):
        return "" if value is None else (repr(value) if isinstance(value, float) else str(value))

    from_csv = sorted(tuple(r[k] for k in results_files.CSV_COLUMNS)
                      for r in _csv_rows(run_dir / "results.csv"))
    from_json = sorted(tuple(text(r[k]) for k in results_files.CSV_COLUMNS)
                       for r in results_files.result_rows(results))
    assert from_csv == from_json and len(from_csv) > 0
    for name in results["files"]:
        if name.endswith(".png"):
            image = matplotlib.image.imread(run_dir / name)
            assert image.ndim == 3 and min(image.shape[:2]) > 50


@pytest.mark.slow
def test_reproduce_writes_a_consistent_report(reproduced):
    out, result = reproduced
    run_dir = out / "tiny"
    results = json.loads((run_dir / "results.json").read_text())
    for name in ("results.csv", "report.md", "whitebox.png", "blackbox.png", "sweeps.png",
                 "flags.json"):
        assert (run_dir / name).is_file(), name
    assert os.listdir(run_dir / "logs" / "evaluation")
    assert set(results["training"]) == {"undefended", "extended", "distillation", "adversarial",
                                        "surrogate_U", "surrogate_D"}
    assert results["training"]["adversarial"]["defense"] == "adversarial"
    assert results["models"]["adversarial"]["outlier_class"] is None
    # D is distilled from U's model, with its own seed.
    d_settings = results["training"]["surrogate_D"]["settings"]
    assert d_settings["defense"]["teacher_path"].endswith(
        os.path.join(results["training"]["surrogate_U"]["run_name"], "model.keras"))
    assert {r["seed"] for r in results["training"].values()} == {0, 1, 2}
    assert results["models"]["extended"]["outlier_class"] == 10
    assert results["models"]["undefended"]["outlier_class"] is None
    entries = {(e["setting"], e["source"], e["target"], e["attack"], e["variant"])
               for e in results["evaluations"]}
    for attack in ("fgsm", "jsma", "cw"):
        assert ("whitebox", "extended", "extended", attack, "adaptive") in entries
        assert ("whitebox", "distillation", "distillation", attack, "plain") in entries
        assert ("whitebox", "adversarial", "adversarial", attack, "plain") in entries
        assert ("blackbox", "surrogate_U", "adversarial", attack, "plain") in entries
        assert ("blackbox", "surrogate_U", "extended", attack, "plain") in entries
        assert ("blackbox", "surrogate_D", "extended", attack, "adaptive") in entries
    assert ("whitebox", "undefended", "undefended", "fgsm", "adaptive") not in entries
    # One surrogate J per target, trained against it (seed + 3) and scored on it alone.
    targets = TARGETS
    assert {e[1:3] for e in entries if e[1].startswith("J_")} == {
        (f"J_{t}", t) for t in targets}
    assert ("blackbox", "J_extended", "extended", "fgsm", "adaptive") in entries
    for target in targets:
        j = results["models"][f"J_{target}"]
        assert j["role"] == "surrogate" and j["kind"] == "jacobian_substitute"
        assert j["oracle"] == j["only_target"] == target
        assert j["initial_test_indices"] == list(range(32, 40))  # the last 8 of 40
        assert j["oracle_queries"] == j["set_sizes"][-1] <= 16
        assert 0.0 <= j["agreement_attacked"] <= 1.0 and j["agreement_test_count"] == 32
        assert results["seeds"][f"J_{target}"] == 3
    assert results["models"]["J_extended"]["outputs"] == 11
    assert results["models"]["J_undefended"]["outlier_answers"] is None
    assert "## Surrogate J" in (run_dir / "report.md").read_text()
    # tools/readme_tables.py prints the README's tables from this results.json.
    tables = subprocess.run([sys.executable, os.path.join(REPO, "tools", "readme_tables.py"),
                             str(run_dir / "results.json")], capture_output=True, text=True,
                            timeout=60)
    assert tables.returncode == 0, tables.stderr
    adaptive_fgsm = next(e for e in results["evaluations"] if e["setting"] == "whitebox" and
                         e["target"] == "extended" and e["attack"] == "fgsm" and
                         e["variant"] == "adaptive")["filtered"]
    row = next(line for line in tables.stdout.splitlines()
               if line.startswith("| extended | itself, adaptive (white-box) |"))
    # The tiny f^d may classify none of the 16 attacked digits correctly: its cell is n/a.
    cell = " / ".join(  # columns: target, source, fgsm, jsma, cw
        f"{100 * adaptive_fgsm[k]:.1f}" if adaptive_fgsm["count"] else "n/a"
        for k in ("recovered", "detected", "misclassified"))
    if adaptive_fgsm["count"]:  # with the misclassified rate's 95 % Wilson interval
        low, high = adaptive_fgsm["wilson95"]["misclassified"]
        cell += f" [{100 * low:.1f}, {100 * high:.1f}]"
    assert row.split(" | ")[2] == cell
    for title in ("Figure 1", "CW optimiser split", "Detection", "Adversarial-training target",
                  "Surrogate J", "Stage seconds", "Worst case per digit",
                  "Accuracy at a fixed clean false-detection rate"):
        assert f"#### {title}" in tables.stdout
    # The "any attack" rows: per target white-box, per surrogate and from any surrogate.
    worst = {(w["target"], w["setting"], w["source"]) for w in results["worst_case"]}
    assert {("extended", "whitebox", "extended"), ("extended", "blackbox", "surrogate_U"),
            ("extended", "blackbox", "surrogate_D"), ("extended", "blackbox", "J_extended"),
            ("extended", "blackbox", "any")} <= worst
    assert "| extended | black-box, any surrogate |" in tables.stdout
    fixed = results["at_fixed_fpr"]["targets"]
    assert fixed["extended"]["outlier_class"] == 10 and fixed["undefended"]["outlier_class"] is None
    assert results["num_examples"] == {"fgsm": 16, "jsma": 4, "cw": 4,
                                       "extra_models": {"fgsm": 16, "jsma": 2, "cw": 2}}
    # Models beyond the paper's Figure 1 (adversarial target, J) get --num_examples_extra
    # inputs for the slow attacks; the paper's models keep theirs.
    extra = {name for name, m in results["models"].items() if m.get("extra")}
    assert extra == {"adversarial"} | {f"J_{t}" for t in targets}
    for e in results["evaluations"]:
        slow = e["attack"] != "fgsm"
        want = {"fgsm": 16, "jsma": 4, "cw": 4}[e["attack"]]
        assert e["num_examples"] == (2 if slow and e["source"] in extra else want), e
    assert {s["attack"] for s in results["sweeps"]} == {"fgsm"}
    # --quick chose the dataset; the limits given explicitly override its own.
    assert results["dataset"]["name"] == "mnist_sample"
    assert results["dataset"]["train_size"] == 1000 and results["dataset"]["test_size"] == 40
    assert results["settings"]["evaluation"]["attack"]["cw_max_iterations"] == 10
    assert set(results["versions"]) >= {"tensorflow", "keras", "numpy"}
    assert results["wall_seconds"] > 0 and results["stage_seconds"]["training"]["seconds_total"] > 0
    _assert_rates_consistent(results, run_dir)
    # TINY is a --quick run: marked illustrative; every figure also as a PDF.
    assert results["settings"]["preset"] == "quick"
    assert (run_dir / "report.md").read_text().startswith("> **ILLUSTRATIVE RESULTS ONLY.**")
    for figure in ("whitebox", "blackbox", "sweeps", "roc"):
        assert (run_dir / f"{figure}.pdf").stat().st_size > 1000, figure
        assert f"{figure}.pdf" in results["files"]
    from tensorboard.backend.event_processing import event_accumulator
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir / "logs" / "evaluation"), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    tags = accumulator.Tags()["tensors"]
    assert "report" in tags and "images/extended/fgsm_adaptive" in tags
    assert "predicted labels" in accumulator.SummaryMetadata(
        "images/extended/fgsm_adaptive").summary_description
    # Every training run carries its hparams and final numbers for TensorBoard's dashboard.
    for role, trained in results["training"].items():
        hparams, scalars = event_hparams(os.path.join(trained["run_dir"], "logs"))
        assert hparams["defense"] == trained["defense"] and hparams["seed"] == trained["seed"]
        assert scalars["final/clean_accuracy"][1] == pytest.approx(
            trained["clean_test_accuracy"]), role
        if trained["defense"] == "extended":
            assert hparams["alpha"] == pytest.approx(0.9) and hparams["mc_passes"] == 2
    # The stdout summary repeats the JSON numbers.
    first = next(e for e in results["evaluations"] if e["filtered"]["count"])
    assert f"recovered {first['filtered']['recovered']:.3f}" in result.stdout
    _assert_standard_sections(results, run_dir)
    # ... and prints the standard evaluation's summary of each target.
    assert result.stdout.count("robust (all attacks)") == len(TARGETS)


def _assert_standard_sections(results, run_dir):
    """AutoAttack's standard evaluation and a robustness curve per target: in results.json,
    report.md, robustness.png, the README's standard block; each saved in the run folder."""
    standard, curves = results["standard"], results["robustness_curves"]
    assert set(standard) == set(curves) == set(TARGETS)
    for target in TARGETS:
        e, c = standard[target], curves[target]
        outlier = results["models"][target]["outlier_class"]
        assert e["n"] == 6 and e["eps"] == 0.3 and e["norm"] == "linf" and c["n"] == 4
        assert e["attacks"] == ["apgd_ce", "apgd_t", "fab_t", "square"]
        assert e["outlier_class"] == c["outlier_class"] == outlier
        assert e["model"] == results["training"][target]["deployed_model"]
        assert sum(e["robust"]) == e["robust_accuracy"]["k"] <= e["clean_accuracy"]["k"]
        cumulative = [e["robust_accuracy_by_attack"][a]["k"] for a in e["attacks"]]
        assert cumulative == sorted(cumulative, reverse=True)
        assert cumulative[-1] == e["robust_accuracy"]["k"]
        # Extended: the thresholds at 1 % and 5 % clean false detection.
        assert [t["target_false_detection"] for t in e["thresholds"]] == \
            ([0.01, 0.05] if outlier is not None else [])
        grid = [p["eps"] for p in c["curve"]]
        assert grid[0] == 0.0 and 0.3 in grid and grid[-1] == pytest.approx(0.6)
        ks = [p["k"] for p in c["curve"]]
        assert ks == sorted(ks, reverse=True) and ks[0] == c["clean_accuracy"]["k"]
        for stage in ("standard", "robustness_curves"):
            saved = json.loads((run_dir / stage / f"{target}.json").read_text())
            assert saved["result"]["seconds"] == results[stage][target]["seconds"]
            assert results["stage_seconds"][stage]["targets"][target]["reused"] is False
    assert {"robustness.png", "robustness.pdf"} <= set(results["files"])
    report = (run_dir / "report.md").read_text()
    summary = report.split("## Setting")[0]
    for target in TARGETS:
        assert f"- {target}: robust accuracy " in summary
    assert "## AutoAttack's standard evaluation" in report
    assert "## Robustness curves (robustness.png)" in report
    from keras_edd.reporting import readme_tables
    block = readme_tables.readme_blocks(results)["standard"]
    assert block in report and len(block.splitlines()) == 2 + len(TARGETS)


@pytest.mark.slow
def test_reproduce_reuses_finished_standard_results(reproduced):
    """A run killed after the standard stages does not compute them again, and a run that
    finished before they existed gets only them added, every other number kept."""
    import shutil
    out, _ = reproduced
    first = json.loads((out / "tiny" / "results.json").read_text())
    for name in ("killed", "older"):
        shutil.copytree(out / "tiny", out / name)
        if name == "killed":
            os.remove(out / name / "results.json")
        else:  # finished before schema 3: no sections
            older = {k: v for k, v in first.items() if k not in ("standard", "robustness_curves")}
            (out / name / "results.json").write_text(json.dumps(older))
        result = run("reproduce", *TINY, f"--output_dir={out}", f"--run_name={name}")
        assert result.returncode == 0, result.stderr[-3000:]
        again = json.loads((out / name / "results.json").read_text())
        # A copied folder names itself, not the folder it was copied from.
        assert again["run_dir"] == str(out / name)
        assert f"report: {out / name}/report.md" in result.stdout
        for stage in ("standard", "robustness_curves"):
            assert all(t["reused"] for t in again["stage_seconds"][stage]["targets"].values())
            assert again["stage_seconds"][stage]["seconds_total"] == pytest.approx(
                first["stage_seconds"][stage]["seconds_total"])
            for target in TARGETS:
                assert again[stage][target] == first[stage][target], (name, stage, target)
        assert [e["filtered"] for e in again["evaluations"]] == \
            [e["filtered"] for e in first["evaluations"]]
        assert "## AutoAttack's standard evaluation" in (out / name / "report.md").read_text()
        assert (out / name / "robustness.png").is_file()


@pytest.mark.slow
def test_reproduce_reuses_trained_models(reproduced):
    out, _ = reproduced
    first = json.loads((out / "tiny" / "results.json").read_text())
    model = first["training"]["extended"]["deployed_model"]
    mtime = os.path.getmtime(model)
    result = run("reproduce", *TINY, f"--output_dir={out}", "--run_name=again",
                 "--attacks=fgsm", "--nosweeps", "--noadaptive", "--nostandard")
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads((out / "again" / "results.json").read_text())
    assert "standard" not in again and "robustness_curves" not in again
    assert all(t["reused"] for t in again["training"].values())
    assert os.path.getmtime(model) == mtime
    for role in again["training"]:
        assert (again["models"][role]["clean_test_set"]["accuracy"]
                == first["models"][role]["clean_test_set"]["accuracy"])
    # Same white-box FGSM on the same model and inputs: same numbers.
    key = lambda e: (e["setting"], e["source"], e["target"], e["attack"], e["variant"])
    before = {key(e): e["filtered"] for e in first["evaluations"]}
    for e in again["evaluations"]:
        assert e["filtered"] == before[key(e)]


@pytest.mark.slow
def test_eval_binaries_on_the_reproduced_models(reproduced, tmp_path):
    out, _ = reproduced
    training = json.loads((out / "tiny" / "results.json").read_text())["training"]
    extended = training["extended"]["deployed_model"]
    common = ["--dataset=mnist_sample", "--test_limit=40", "--attacks=fgsm", "--num_examples=12",
              "--check_examples=12", "--noprogress", f"--output_dir={tmp_path}"]
    white = run("eval_whitebox", f"--model={extended}", "--sweep_eps=0.5",
                "--sweep_num_examples=12", "--preset=paper", "--sweep_attacks=fgsm", *common)
    assert white.returncode == 0, white.stderr[-3000:]
    run_dir = tmp_path / f"whitebox-{os.path.basename(os.path.dirname(extended))}-distilled"
    results = json.loads((run_dir / "results.json").read_text())
    assert [(e["attack"], e["variant"]) for e in results["evaluations"]] == [
        ("fgsm", "plain"), ("fgsm", "adaptive")]
    assert results["models"]["target"]["sha256"] and results["sweeps"]
    # --preset=paper is recorded; the settings are those of the attacks that ran (FGSM).
    assert results["settings"]["preset"] == "paper"
    assert results["settings"]["evaluation"]["attack"]["fgsm_eps"] == 0.2
    assert not any(key.startswith("cw") for key in results["settings"]["evaluation"]["attack"])
    assert "num_examples_cw" not in results["settings"]["evaluation"]
    assert results["settings"]["evaluation"]["num_examples"] == 12
    assert "num_examples_extra" not in results["settings"]["evaluation"]  # reproduce only
    _assert_rates_consistent(results, run_dir)

    black = run("eval_blackbox", f"--target={extended}",
                f"--surrogate=U={training['surrogate_U']['deployed_model']}",
                f"--surrogate=D={training['surrogate_D']['deployed_model']}", "--run_name=bb",
                *common)
    assert black.returncode == 0, black.stderr[-3000:]
    results = json.loads((tmp_path / "bb" / "results.json").read_text())
    assert {(e["source"], e["variant"]) for e in results["evaluations"]} == {
        ("U", "plain"), ("D", "plain"), ("D", "adaptive")}
    assert all(e["setting"] == "blackbox" and e["target"] == "target"
               for e in results["evaluations"])
    assert not results["sweeps"] and (tmp_path / "bb" / "blackbox.png").is_file()
    _assert_rates_consistent(results, tmp_path / "bb")


@pytest.mark.slow
def test_eval_blackbox_trains_surrogate_J_against_the_target(reproduced, tmp_path):
    out, _ = reproduced
    training = json.loads((out / "tiny" / "results.json").read_text())["training"]
    command = ["--target=" + training["extended"]["deployed_model"],
               f"--surrogate=U={training['surrogate_U']['deployed_model']},J",
               "--dataset=mnist_sample", "--test_limit=40", "--attacks=fgsm", "--num_examples=12",
               "--check_examples=12", "--substitute_initial=10", "--substitute_rounds=2",
               "--substitute_epochs_per_round=1", "--substitute_tau=1", "--noprogress",
               f"--output_dir={tmp_path}", "--run_name=bbj"]
    result = run("eval_blackbox", *command)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "bbj"
    results = json.loads((run_dir / "results.json").read_text())
    j = results["models"]["J"]
    assert (j["role"], j["kind"], j["oracle"], j["only_target"]) == (
        "surrogate", "jacobian_substitute", "target", "target")
    # S_0 = the last 10 of the 40 test inputs: never among the 12 attacked.
    assert j["initial_test_indices"] == list(range(30, 40))
    assert j["outputs"] == 11 and j["outlier_answers"] is not None
    assert j["oracle_queries"] == j["set_sizes"][-1] and j["set_sizes"][0] == 10
    assert len(j["per_round"]) == 3 and [e.get("step") for e in j["per_round"]] == [
        0.1, -0.1, None]  # tau = 1: the sign flips every round
    assert j["settings"]["seed"] == results["seeds"]["J"] == 0  # the attack seed
    assert 0.0 <= j["agreement_attacked"] <= 1.0 and 0.0 <= j["agreement_test"] <= 1.0
    assert j["agreement_test_count"] == 30 and j["training_seconds"] > 0 and not j["reused"]
    assert results["stage_seconds"]["substitutes"]["seconds_here"] > 0
    assert {(e["source"], e["target"], e["variant"]) for e in results["evaluations"]} == {
        ("U", "target", "plain"), ("J", "target", "plain"), ("J", "target", "adaptive")}
    folder = run_dir / "substitutes" / "J"
    assert (folder / "substitute.keras").is_file()
    report = json.loads((folder / "substitute_report.json").read_text())
    assert report["oracle_queries"] == j["oracle_queries"]
    assert "## Surrogate J" in (run_dir / "report.md").read_text()
    _assert_rates_consistent(results, run_dir)

    # Resume: a run killed before results.json reloads J instead of training it again.
    mtime = os.path.getmtime(folder / "substitute.keras")
    os.remove(run_dir / "results.json")
    again = run("eval_blackbox", *command)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["models"]["J"]["reused"] and os.path.getmtime(
        folder / "substitute.keras") == mtime
    assert resumed["crafts"]["computed"] == 0
    for key in ("agreement_attacked", "agreement_test", "oracle_queries", "sha256"):
        assert resumed["models"]["J"][key] == j[key], key
    assert _without_timings(resumed["evaluations"]) == _without_timings(results["evaluations"])


# ---------------------------------------------------------------------- resume

_RESUME = ["--dataset=mnist_sample", "--test_limit=100", "--attacks=fgsm,pgd",
           "--num_examples=100", "--attack_batch_size=50", "--pgd_nb_iter=400",
           "--sweep_attacks=fgsm", "--sweep_eps=0.1,0.2", "--sweep_num_examples=50",
           "--check_examples=20", "--noprogress"]


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


@pytest.mark.slow
def test_killed_evaluation_resumes_from_its_finished_crafts(tmp_path):
    """SIGKILL once a craft file exists; the same command then loads it, computes the
    rest, and ends with the numbers of an uninterrupted run."""
    import signal
    import time

    import keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Conv2D(8, 5, strides=2, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(hidden)))
    model_path = str(tmp_path / "cnn" / "model.keras")
    files.save_model(model, model_path)
    command = [sys.executable, BIN["eval_whitebox"], f"--model={model_path}", *_RESUME,
               f"--output_dir={tmp_path / 'out'}", "--run_name=killed"]
    crafts = tmp_path / "out" / "killed" / "attacks"
    # The uninterrupted reference run, alongside (the test waits for it at the end).
    whole = subprocess.Popen([*command[:-1], "--run_name=whole"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300

    def finished_crafts():  # not the atomic writer's temporary files
        return {p.name for p in crafts.iterdir()
                if p.suffix == ".npz" and not p.name.startswith(".tmp-")}
    while not (crafts.is_dir() and finished_crafts()):
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert not (tmp_path / "out" / "killed" / "results.json").exists()
    done_before = finished_crafts()

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "killed" / "results.json").read_text())
    assert results["crafts"]["loaded"] == len(done_before) >= 1
    assert results["crafts"]["computed"] == 3 - len(done_before)
    assert results["crafts"]["prefix"] == 1  # the eps=0.2 sweep point: FGSM's first 50

    _, whole_errors = whole.communicate(timeout=600)
    assert whole.returncode == 0, whole_errors[-3000:]
    reference = json.loads((tmp_path / "out" / "whole" / "results.json").read_text())
    assert reference["crafts"] == {"computed": 3, "loaded": 0, "prefix": 1, "memory": 0}
    for key in ("evaluations", "sweeps", "models", "warnings", "num_examples"):
        assert _without_timings(results[key]) == _without_timings(reference[key]), key
    stages = results["stage_seconds"]
    assert stages["attacks"]["seconds_total"] > stages["attacks"]["seconds_here"]


@pytest.mark.slow
def test_reproduce_reuses_a_pretrained_collection(reproduced, tmp_path):
    """tools/make_pretrained.py ships the tiny run's models; a new reproduce run with the
    same settings installs them instead of training; another alpha retrains only the
    models that depend on it."""
    out, _ = reproduced
    first = json.loads((out / "tiny" / "results.json").read_text())
    collections = tmp_path / "collections"
    made = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_pretrained.py"),
                           *TINY, f"--output_dir={out}", f"--collection_dir={collections / 'tiny'}"],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    manifest = json.loads((collections / "tiny" / "MANIFEST.json").read_text())
    assert sorted(manifest["models"]) == sorted(first["training"])
    assert manifest["command"].startswith("bin/reproduce --quick")
    for role, card in manifest["models"].items():
        assert card["sha256"] == files.sha256(collections / "tiny" / card["file"])
        assert card["sha256"] == first["models"][role]["sha256"]
        assert card["clean_test_accuracy"] == first["training"][role]["clean_test_accuracy"]
        assert card["dataset"]["train_size"] == 1000 and len(card["dataset"]["fingerprint"]) == 64
    assert manifest["models"]["extended"]["teacher"] == "undefended"
    assert manifest["models"]["extended"]["settings"]["defense"]["alpha"] == 0.9

    env = dict(os.environ, KERAS_EDD_PRETRAINED_DIR=str(collections))
    fast = ["--attacks=fgsm", "--nosweeps", "--noadaptive", "--nojacobian_substitute"]

    def reproduce(folder, *extra):
        result = subprocess.run([sys.executable, BIN["reproduce"], *TINY, *fast, *extra,
                                 f"--output_dir={tmp_path / folder}", "--pretrained=tiny"],
                                capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        run_dir = next(p for p in (tmp_path / folder).iterdir() if p.name.startswith("reproduce"))
        return json.loads((run_dir / "results.json").read_text())

    again = reproduce("same")
    for role, entry in again["training"].items():
        assert entry["pretrained"] == f"tiny:{role}" and not entry["reused"]
        assert again["models"][role]["sha256"] == manifest["models"][role]["sha256"]
        assert (again["models"][role]["clean_test_set"]["accuracy"]
                == first["models"][role]["clean_test_set"]["accuracy"])
    other = reproduce("alpha", "--alpha=0.5")
    sources = {role: entry["pretrained"] for role, entry in other["training"].items()}
    assert sources == {"undefended": "tiny:undefended", "extended": None,
                       "distillation": "tiny:distillation", "adversarial": "tiny:adversarial",
                       "surrogate_U": "tiny:surrogate_U", "surrogate_D": None}
    assert other["models"]["extended"]["sha256"] != manifest["models"]["extended"]["sha256"]

    # The evaluation binaries take the names; a damaged file is a one-line error.
    white = subprocess.run([sys.executable, BIN["eval_whitebox"], "--model=tiny:extended",
                            "--dataset=mnist_sample", "--test_limit=40", "--attacks=fgsm",
                            "--num_examples=8", "--check_examples=8", "--nosweeps",
                            "--noprogress", f"--output_dir={tmp_path / 'white'}"],
                           capture_output=True, text=True, timeout=600, env=env)
    assert white.returncode == 0, white.stderr[-3000:]
    assert (tmp_path / "white" / "whitebox-tiny-extended" / "results.json").is_file()
    with open(collections / "tiny" / "extended.keras", "ab") as f:
        f.write(b"\0")
    damaged = subprocess.run([sys.executable, BIN["eval_whitebox"], "--model=tiny:extended",
                              "--dataset=mnist_sample", f"--output_dir={tmp_path / 'damaged'}"],
                             capture_output=True, text=True, timeout=600, env=env)
    assert_one_line_error(damaged, "pretrained model tiny:extended")
    assert "sha256" in damaged.stderr and not (tmp_path / "damaged").exists()
