"""results.json's `standard` and `robustness_curves` sections: schema, migration, report.md,
the README's `standard` block, the figure. Synthetic results; no TensorFlow model."""

import json
import os

import pytest

from keras_edd import files, stats
from keras_edd.formatting import percent
from keras_edd.reporting import readme_tables, robustness_tables
from keras_edd.reporting.markdown import markdown_report
from keras_edd.results_schema import SCHEMA_VERSION, Results, migrate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = os.path.join(REPO, "results", "paper", "results.json")
ATTACKS = ("apgd_ce", "apgd_t", "fab_t", "square")


def _rate(k, n):
    return stats.Rate(k, n).to_dict()


def _standard(model, robust_after, n=50, clean=48, outlier_class=None, thresholds=()):
    """A RobustnessResult.to_dict() with robust counts `robust_after` (one per attack)."""
    return {"model": model, "norm": "linf", "eps": 0.3, "n": n, "attacks": list(ATTACKS),
            "attacks_skipped": [], "settings": {}, "outlier_class": outlier_class,
            "clean_accuracy": _rate(clean, n), "robust_accuracy": _rate(robust_after[-1], n),
            "robust_accuracy_by_attack": {a: _rate(k, n) for a, k in zip(ATTACKS, robust_after)},
            "clean_correct": [True] * n, "robust": [False] * n, "broken_by": [None] * n,
            "perturbation_norm": [0.0] * n, "norm_violations": {}, "checks": {},
            "thresholds": list(thresholds), "warnings": [], "seed": 0, "seconds": 1.5}


def _threshold(fpr, clean, correct, error, n=50):
    return {"target_false_detection": fpr, "tau": 1.25, "false_detection": _rate(2, n),
            "clean_accuracy": _rate(clean, n),
            "robust_accuracy_detection_correct": _rate(correct, n),
            "robust_accuracy_rejection_error": _rate(error, n)}


def _curve(model, robust, n=20, median=0.15, outlier_class=None):
    """A RobustnessCurve.to_dict() on the grid 0, 0.015, ..., 0.6 (0.3 is point 20)."""
    grid = [0.3 * i / 20 for i in range(41)]
    return {"model": model, "norm": "linf", "attacks": ["fab", "fab_t"], "settings": {},
            "outlier_class": outlier_class, "n": n, "clean_accuracy": _rate(robust[0], n),
            "curve": [{"eps": eps, **_rate(robust[min(i, len(robust) - 1)], n)}
                      for i, eps in enumerate(grid)],
            "median_eps": median, "eps_star": [median] * n, "found_by": ["fab"] * n,
            "checks": {}, "warnings": [], "seed": 0, "seconds": 2.0}


def _model(role, outlier_class=None):
    clean = {"count": 50, "accuracy": 0.96, "detected": 0.0, "misclassified": 0.04}
    return {"role": role, "outputs": 10 if outlier_class is None else 11,
            "outlier_class": outlier_class, "clean_test_set": clean, "clean_attacked": clean,
            "checks": {"zero_gradient_fraction": 0.0, "probabilities": False,
                       "stochastic": False}}


def _results(with_sections=True):
    models = {"undefended": _model("target"), "extended": _model("target", 10),
              "distillation": _model("target"), "surrogate_U": _model("surrogate"),
              "surrogate_D": _model("surrogate", 10)}
    data = {"kind": "reproduce", "models": models, "evaluations": [], "num_examples": {"fgsm": 50},
            "settings": {"preset": "paper"}, "dataset": {"name": "mnist"}}
    if with_sections:
        data["standard"] = {
            "undefended": _standard("u.keras", (10, 5, 4, 0)),
            "extended": _standard("e.keras", (30, 28, 28, 27), outlier_class=10, thresholds=[
                _threshold(0.01, 47, 25, 20), _threshold(0.05, 45, 33, 12)])}
        data["robustness_curves"] = {
            "extended": _curve("e.keras", [19] * 20 + [14], median=None, outlier_class=10),
            "undefended": _curve("u.keras", [18] * 5 + [9] * 15 + [0], median=0.1)}
    return data


def _cell(k, n):
    low, high = stats.wilson_interval(k, n)
    return f"{percent(k / n)} [{percent(low)}, {percent(high)}]"


def test_sections_round_trip_and_rates_are_derived_from_counts():
    data = _results()
    data["standard"]["undefended"]["robust_accuracy"]["value"] = 0.99  # derived: ignored
    typed = Results.from_dict(data)
    assert typed.standard["extended"].robust_accuracy == stats.Rate(27, 50)
    assert typed.standard["extended"].threshold(0.05).robust_accuracy_rejection_error.k == 12
    assert typed.standard["undefended"].threshold(0.05) is None
    assert typed.robustness_curves["extended"].median_eps == float("inf")
    assert typed.robustness_curves["undefended"].at(0.3) == stats.Rate(0, 20)
    assert typed.robustness_curves["undefended"].at(0.31) is None
    written = typed.to_dict()
    assert written["schema_version"] == SCHEMA_VERSION == 3
    assert written["standard"]["undefended"]["robust_accuracy"]["value"] == 0.0
    assert written["robustness_curves"]["extended"]["median_eps"] is None
    assert written["standard"]["extended"]["perturbation_norm"] == [0.0] * 50  # kept as is
    assert Results.from_dict(written).to_dict() == written


def test_results_without_the_sections_migrate_and_say_not_computed():
    data = _results(with_sections=False)
    typed = Results.from_dict(data)
    assert typed.standard == {} and typed.robustness_curves == {}
    migrated = migrate(data)
    assert migrated["schema_version"] == SCHEMA_VERSION
    assert "standard" not in migrated and "robustness_curves" not in migrated
    assert "standard" not in readme_tables.readme_blocks(data)
    assert robustness_tables.standard_table(typed) == robustness_tables.NOT_COMPUTED
    assert "standard evaluation" not in markdown_report(data)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["standard"]["extended"]["robust_accuracy"].pop("k"),
     "standard.extended.robust_accuracy: lacks the field 'k'"),
    (lambda d: d["standard"]["extended"]["robust_accuracy"].update(k=51),
     "standard.extended.robust_accuracy: k=51: allowed range is"),
    (lambda d: d["robustness_curves"]["undefended"].pop("curve"),
     "robustness_curves.undefended: lacks the field 'curve'"),
])
def test_a_broken_section_is_a_one_line_error_naming_it(edit, message):
    data = _results()
    edit(data)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        Results.from_dict(data)


def test_readme_block_has_a_row_per_target_with_cumulative_and_fixed_fpr_accuracy():
    block = readme_tables.readme_blocks(_results())["standard"]
    lines = block.splitlines()
    assert lines[0].split(" | ")[4:8] == [f"after {a}" for a in ATTACKS]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines[2:]}
    assert list(rows) == ["undefended", "extended"]  # the paper's order
    undefended, extended = rows["undefended"], rows["extended"]
    assert undefended[1] == "L∞ ε = 0.3, n = 50, plain"
    assert undefended[2:4] == [_cell(48, 50), _cell(0, 50)]
    assert undefended[4:8] == [_cell(k, 50) for k in (10, 5, 4, 0)]
    assert undefended[8] == " |"  # no outlier class: no detector column
    assert extended[1].endswith("adaptive") and extended[3] == _cell(27, 50)
    assert extended[8] == f"{_cell(33, 50)} / {_cell(12, 50)} (clean {_cell(45, 50)}) |"
    text = f"a\n{readme_tables.begin_marker('standard')}\nold\n{readme_tables.end_marker('standard')}\n"
    assert f"\n{block}\n" in readme_tables.update_readme(text, _results())


def test_report_has_the_section_and_a_summary_line_per_target():
    report = markdown_report(_results())
    summary = report.split("## Setting")[0]
    assert (f"- undefended: robust accuracy {_cell(0, 50).replace(' [', ' % [')}, clean "
            f"{_cell(48, 50).replace(' [', ' % [')} (L∞ ε = 0.3, n = 50)." in summary)
    assert f"- extended: robust accuracy {_cell(27, 50).replace(' [', ' % [')}" in summary
    assert "at 5 % clean false detection" in summary
    assert "## AutoAttack's standard evaluation" in report
    assert readme_tables.readme_blocks(_results())["standard"] in report
    curves = report.split("## Robustness curves (robustness.png)")[1]
    assert "- undefended: median ε* 0.1; n = 20" in curves
    assert f"robust accuracy at ε = 0.3: {_cell(0, 20).replace(' [', ' % [')}" in curves
    assert "- extended: median ε* beyond every attack found" in curves
    assert curves.index("- undefended") < curves.index("- extended")


def test_the_figure_has_one_curve_per_target(tmp_path, monkeypatch):
    """write_report hands robustness.png one curve per target, in the paper's order.

    The figure itself (drawn PNG and PDF) is tests/test_robustness_curve.py's; here the
    plot and the TensorBoard files (tests/test_reporting.py) are recorded, not written."""
    from keras_edd.reporting import results_files
    plotted = []

    def record(curves, path_png, *, labels, note):
        plotted.append((os.path.basename(path_png), [c.model for c in curves], labels, note))
        return True
    monkeypatch.setattr(results_files, "plot_robustness_curves", record)
    monkeypatch.setattr(results_files.tensorboard, "write_evaluation", lambda *a: None)
    written = results_files.write_report(str(tmp_path), _results())
    assert plotted == [("robustness.png", ["u.keras", "e.keras"], ["undefended", "extended"],
                        None)]
    assert {"robustness.png", "robustness.pdf"} <= set(written["files"])
    assert json.loads((tmp_path / "results.json").read_text())["standard"]["extended"]["n"] == 50


def test_readme_standard_block_is_the_published_runs():
    """Once results/paper carries the standard evaluation, README.md shows its block."""
    data = files.read_json(PAPER)
    if "standard" not in data:
        pytest.skip("results/paper has no standard evaluation yet (republish it)")
    block = readme_tables.readme_blocks(data)["standard"]
    text = open(os.path.join(REPO, "README.md")).read()
    begin, end = readme_tables.begin_marker("standard"), readme_tables.end_marker("standard")
    assert f"{begin}\n{block}\n{end}" in text
