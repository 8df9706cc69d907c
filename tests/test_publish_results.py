"""tools/publish_results.py: a finished run's results, report and figures, nothing else."""

import importlib.util
import json
import os

import pytest

from conftest import REPO


def _tool():
    spec = importlib.util.spec_from_file_location(
        "publish_results", os.path.join(REPO, "tools", "publish_results.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
