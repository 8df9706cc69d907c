"""results/paper/: the committed paper-settings run, and the README tables made from it.

The README's generated tables (Figure 1, the stronger attacks, the worst case, the
accuracy at a fixed false-detection rate) sit between markers and must be exactly what
keras_edd.reporting.readme_tables (tools/readme_tables.py) makes from
results/paper/results.json, so they cannot drift
from the run. The committed files agree with each other.
"""

import csv
import json
import os
import re

import pytest

from conftest import REPO
from keras_edd.reporting import markdown, readme_tables, results_files

RESULTS = os.path.join(REPO, "results", "paper")
README = os.path.join(REPO, "README.md")

pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(RESULTS, "results.json")),
                                reason="no committed paper run in results/paper/")


def _results():
    with open(os.path.join(RESULTS, "results.json")) as f:
        return json.load(f)


def test_readme_tables_are_the_runs():
    tables = readme_tables
    text = open(README).read()
    results = _results()
    for name, body in tables.readme_blocks(results).items():
        begin, end = tables.begin_marker(name), tables.end_marker(name)
        assert text.count(begin) == 1 and text.count(end) == 1, f"README lacks the {name} markers"
        block = text.split(begin, 1)[1].split(end, 1)[0].strip()
        assert block == body.strip(), name
    assert tables.update_readme(text, results) == text  # the tool would change nothing


def test_committed_files_agree():
    results = _results()
    names = set(os.listdir(RESULTS))
    assert {"results.json", "results.csv", "report.md"} <= names
    for name in results["files"]:
        if name.endswith((".png", ".pdf")):
            assert name in names, name
            assert name.replace(".png", ".pdf") in names if name.endswith(".png") else True
    # No crafts, logs or models in the committed run.
    assert not names & {"attacks", "logs", "substitutes", "flags.json"}
    assert not [n for n in names if n.endswith((".npz", ".keras"))]
    with open(os.path.join(RESULTS, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= len(results["evaluations"]) > 0
    # Every figure-1 cell of the README's reading is a number in results.json.
    assert results["settings"]["preset"] == "paper"
    assert results["settings"]["evaluation"]["num_examples"] == 1000
    report = open(os.path.join(RESULTS, "report.md")).read()
    assert re.search(r"extended", report)


def test_models_are_the_shipped_ones():
    from keras_edd import pretrained
    results = _results()
    manifest = pretrained.read_manifest("paper")
    trained_here = [role for role in results["models"] if not role.startswith("J_")]
    assert trained_here and set(trained_here) <= set(manifest["models"])
    for role in trained_here:  # the collection also holds f and f^d at other seeds
        assert results["models"][role]["sha256"] == manifest["models"][role]["sha256"], role


def test_committed_report_and_csv_are_rendered_from_results_json():
    """report.md and results.csv are what the library renders from results.json (nothing
    recomputed: tools/publish_results.py --rerender), with the summary first and no raw
    Python dicts."""
    results = _results()
    report = open(os.path.join(RESULTS, "report.md")).read()
    assert report == markdown.markdown_report(results)
    assert "{'" not in report
    lines = report.splitlines()
    summary = lines[lines.index("## Summary"):lines.index("## Setting")]
    assert len(summary) <= 40 and any(line.startswith("**Verdict:**") for line in summary)
    with open(os.path.join(RESULTS, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    expected = results_files.result_rows(results)
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        assert row == {k: "" if v is None else repr(v) if isinstance(v, float) else str(v)
                       for k, v in want.items()}
