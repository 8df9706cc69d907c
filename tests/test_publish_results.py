"""tools/publish_results.py: a finished run's results, report and figures, nothing else."""

import json
import os

import pytest

from conftest import load_tool
from keras_edd.reporting import readme_tables


def _tool():
    return load_tool("publish_results")


def _run(tmp_path, files, name="run", preset="paper", dataset="mnist", contents=None):
    run = tmp_path / name
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(
        {"files": files, "x": 1, "settings": {"preset": preset},
         "dataset": {"name": dataset, "train_size": 9, "test_size": 3}}))
    for f in files:
        if f != "results.json" and "/" not in f:
            (run / f).write_text(contents or f)
    return run


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
    names = _tool().publish(str(run), str(out), log=lambda line: None)
    assert sorted(names) == sorted(files[:5])
    assert sorted(os.listdir(out)) == sorted(files[:5] + [".published.json"])
    assert json.loads((out / "results.json").read_text())["x"] == 1
    assert (out / "report.md").read_text() == "report.md"


def test_publish_never_deletes_files_it_did_not_write(tmp_path, monkeypatch):
    """DEST=. from the repository root deleted README.md: a folder without the marker
    is refused whole, and a republication removes only its own earlier files."""
    run = _run(tmp_path, ["results.json", "roc.png", "roc.pdf"])
    here = tmp_path / "repo"
    here.mkdir()
    (here / "README.md").write_text("mine")
    monkeypatch.chdir(here)
    with pytest.raises(SystemExit, match=r"not a results folder made by .*no \.published"):
        _tool().publish(str(run), ".", log=lambda line: None)
    assert sorted(os.listdir(here)) == ["README.md"]
    out = tmp_path / "out"
    _tool().publish(str(run), str(out), log=lambda line: None)
    (out / "notes.md").write_text("mine")  # the user's own file, beside the publication
    fewer = _run(tmp_path, ["results.json", "roc.png"], name="run2")
    said = []
    _tool().publish(str(fewer), str(out), log=said.append)
    assert sorted(os.listdir(out)) == [".published.json", "notes.md", "results.json", "roc.png"]
    assert "replaced roc.png" in said and any(s.startswith("removed roc.pdf") for s in said)


def test_publish_refuses_a_run_of_another_preset_unless_forced(tmp_path):
    out = tmp_path / "results" / "paper"
    _tool().publish(str(_run(tmp_path, ["results.json", "a.png"], contents="paper")), str(out),
                    log=lambda line: None)
    quick = _run(tmp_path, ["results.json", "a.png"], name="quick", preset="quick",
                 dataset="mnist_sample", contents="quick")
    with pytest.raises(SystemExit, match=r"another experiment \(dataset 'mnist' -> "
                       r"'mnist_sample', preset 'paper' -> 'quick'\).*--force_other_settings"):
        _tool().publish(str(quick), str(out), log=lambda line: None)
    assert (out / "a.png").read_text() == "paper"
    said = []
    _tool().publish(str(quick), str(out), force_other_settings=True, log=said.append)
    assert (out / "a.png").read_text() == "quick" and "--force_other_settings" in said[0]


@pytest.mark.parametrize("case", ["missing run", "results.json a folder", "corrupt",
                                  "empty", "a list"])
def test_publish_bad_inputs_exit_with_one_line(tmp_path, case):
    run = tmp_path / "run"
    if case != "missing run":
        run.mkdir()
    results = run / "results.json"
    if case == "results.json a folder":
        results.mkdir()
    elif case in ("corrupt", "empty", "a list"):
        results.write_text({"corrupt": "{\"files\": [", "empty": "", "a list": "[]"}[case])
    with pytest.raises(SystemExit) as raised:
        _tool().publish(str(run), str(tmp_path / "out"), log=lambda line: None)
    message = str(raised.value.code)
    assert "\n" not in message and str(run) in message
    expected = {"missing run": "no such folder", "results.json a folder": "is not a file",
                "corrupt": "not valid JSON", "empty": "not valid JSON",
                "a list": "not a JSON object"}[case]
    assert expected in message
    assert not (tmp_path / "out").exists()


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
    tables = readme_tables
    results = {"num_examples": {"fgsm": 3}, "models": {}, "evaluations": [],
               "worst_case": [], "at_fixed_fpr": {"targets": {}}}
    blocks = {"figure-1": "NEW TABLE", "worst-case": "W"}
    text = (f"intro\n{tables.begin_marker('figure-1')}\nold\nrows\n"
            f"{tables.end_marker('figure-1')}\noutro\n")
    updated = tables.update_readme(text, results, blocks=blocks)
    assert updated == (f"intro\n{tables.begin_marker('figure-1')}\nNEW TABLE\n"
                       f"{tables.end_marker('figure-1')}\noutro\n")
    assert tables.update_readme(updated, results, blocks=blocks) == updated


READABLE = {"kind": "reproduce", "num_examples": {"fgsm": 3}, "models": {}, "evaluations": [],
            "worst_case": [], "at_fixed_fpr": {"targets": {}},
            "settings": {"preset": "paper"}, "dataset": {"name": "mnist"}}


def _readme(tmp_path, tables):
    readme = tmp_path / "README.md"
    text = (f"intro\n{tables.begin_marker('worst-case', 'r.json')}\nold\n"
            f"{tables.end_marker('worst-case')}\n")
    readme.write_text(text)
    return readme, text


@pytest.mark.parametrize("content", ["{}", json.dumps({"kind": "whitebox", "evaluations": []}),
                                     json.dumps({**READABLE, "models": {"x": 1},
                                                 "worst_case": [{"target": 1}]}),
                                     "{\"models\": ", "", "[1]"])
def test_readme_tables_leave_the_readme_whole_on_unusable_results(tmp_path, monkeypatch,
                                                                    content):
    """README.md was opened for writing before the tables were computed: 0 bytes."""
    tables = load_tool("readme_tables")
    monkeypatch.chdir(tmp_path)
    readme, text = _readme(tmp_path, tables)
    (tmp_path / "r.json").write_text(content)
    with pytest.raises(SystemExit) as raised:
        tables.main("r.json", str(readme))
    message = str(raised.value.code)
    assert message.startswith("tools/readme_tables.py: error: 'r.json'") and "\n" not in message
    assert readme.read_text() == text
    assert sorted(os.listdir(tmp_path)) == ["README.md", "r.json"]


@pytest.mark.parametrize("where", ["missing", "folder"])
def test_readme_tables_missing_or_folder_exit_with_one_line(tmp_path, where):
    tables = load_tool("readme_tables")
    path = tmp_path / "results.json"
    if where == "folder":
        path.mkdir()
    with pytest.raises(SystemExit, match={"missing": "no such file",
                                          "folder": "is a folder"}[where]):
        tables.main(str(path))


def test_readme_tables_refuse_a_quick_run_unless_forced(tmp_path, monkeypatch):
    tables = load_tool("readme_tables")
    monkeypatch.chdir(tmp_path)
    readme, text = _readme(tmp_path, tables)
    quick = {**READABLE, "settings": {"preset": "quick"}, "dataset": {"name": "mnist_sample"}}
    (tmp_path / "r.json").write_text(json.dumps(quick))
    with pytest.raises(SystemExit, match="preset 'quick' on dataset 'mnist_sample'.*"
                                         "--force_other_settings"):
        tables.main("r.json", str(readme))
    assert readme.read_text() == text
    monkeypatch.setattr(readme_tables, "readme_blocks", lambda r: {"worst-case": "NEW TABLE"})
    tables.main("r.json", str(readme), force_other_settings=True)
    assert readme.read_text() == text.replace("\nold\n", "\nNEW TABLE\n")


def test_readme_tables_tool_is_only_a_command_line():
    """One renderer: the tool calls keras_edd.reporting.readme_tables and draws no table."""
    tool = load_tool("readme_tables")
    own = [name for name, value in vars(tool).items() if callable(value)
           and getattr(value, "__module__", None) == tool.__name__]
    assert sorted(own) == ["fail", "main", "read_results", "rendered"]


def test_rerender_rewrites_the_text_outputs_from_results_json_only(tmp_path):
    from keras_edd.results_schema import SCHEMA_VERSION
    files = ["results.json", "results.csv", "report.md", "whitebox.png"]
    run = _run(tmp_path, files)
    legacy = json.loads((run / "results.json").read_text())
    legacy.update(kind="whitebox", models={}, num_examples={"fgsm": 4}, evaluations=[{
        "setting": "whitebox", "source": "f", "target": "f", "attack": "fgsm",
        "variant": "plain", "parameter": "eps", "value": 0.2, "num_examples": 4,
        "params": {"eps": 0.2}, "norms": {"mean_l2": 1.5}, "attack_seconds": 0.5,
        "success": 0.75, **{subset: {"count": 4, "recovered": 0.25, "detected": 0.0,
                                     "misclassified": 0.75, "attack_failed": 0.25}
                            for subset in ("filtered", "unfiltered")}}])
    (run / "results.json").write_text(json.dumps(legacy))
    out = tmp_path / "out"
    _tool().publish(str(run), str(out), log=lambda line: None)
    said = []
    assert _tool().rerender(str(out), log=said.append) == files[:3]
    stored = json.loads((out / "results.json").read_text())
    assert stored["schema_version"] == SCHEMA_VERSION and stored["x"] == 1
    assert stored["evaluations"][0]["filtered"]["misclassified"] == 0.75  # nothing recomputed
    assert "| f | f | fgsm | plain |" in (out / "report.md").read_text()
    assert "misclassified_low" in (out / "results.csv").read_text().splitlines()[0]
    assert (out / "whitebox.png").read_text() == "whitebox.png"  # figures untouched
    assert said == [f"rewrote {name}" for name in files[:3]]
    with pytest.raises(SystemExit, match=r"not a folder published by .*no \.published"):
        _tool().rerender(str(tmp_path / "empty"))
