"""tools/publish_results.py: a finished run's results, report and figures, nothing else."""

import json
import os

import pytest

from conftest import load_tool


def _tool():
    return load_tool("publish_results")


def test_publish_copies_results_report_and_figures_only(tmp_path):
    run = tmp_path / "run"
    (run / "attacks").mkdir(parents=True)
    (run / "logs" / "evaluation").mkdir(parents=True)
    files = ["results.json", "results.csv", "whitebox.png", "whitebox.pdf", "report.md",
             "logs/evaluation"]
    (run / "results.json").write_text(json.dumps({"files": files, "x": 1}))
    for name in ("results.csv", "whitebox.png", "whitebox.pdf", "report.md", "flags.json",
                 "attacks/a.npz"):
        (run / name).write_text(name)
    out = tmp_path / "results" / "paper"
    out.mkdir(parents=True)
    (out / "old.png").write_text("stale")  # from an earlier publication
    (out / "README.txt").write_text("kept")  # not a published kind of file
    names = _tool().publish(str(run), str(out))
    assert sorted(names) == sorted(files[:5])
    assert sorted(os.listdir(out)) == sorted(files[:5] + ["README.txt"])
    assert json.loads((out / "results.json").read_text())["x"] == 1
    assert (out / "report.md").read_text() == "report.md"


def test_publish_refuses_an_unfinished_run(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit, match="no results.json"):
        _tool().publish(str(tmp_path / "run"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    (tmp_path / "run" / "results.json").write_text(json.dumps({"files": ["roc.png"]}))
    with pytest.raises(SystemExit, match=r"listed files missing: \['roc.png'\]"):
        _tool().publish(str(tmp_path / "run"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_readme_tables_update_only_their_blocks():
    tables = load_tool("readme_tables")
    results = {"num_examples": {"fgsm": 3}, "models": {}, "evaluations": [],
               "worst_case": [], "at_fixed_fpr": {"targets": {}}}
    tables.readme_blocks = lambda r: {"figure-1": "NEW TABLE", "worst-case": "W"}
    text = (f"intro\n{tables.begin_marker('figure-1')}\nold\nrows\n"
            f"{tables.end_marker('figure-1')}\noutro\n")
    updated = tables.update_readme(text, results)
    assert updated == (f"intro\n{tables.begin_marker('figure-1')}\nNEW TABLE\n"
                       f"{tables.end_marker('figure-1')}\noutro\n")
    assert tables.update_readme(updated, results) == updated
