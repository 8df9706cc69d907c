"""results/paper/: the committed paper-settings run, and the README tables made from it.

The README's Figure-1 table sits between two markers and must be exactly what
tools/readme_tables.py prints from results/paper/results.json, so the table cannot
drift from the run. The committed files agree with each other.
"""

import csv
import importlib.util
import json
import os
import re

import pytest

from conftest import REPO

RESULTS = os.path.join(REPO, "results", "paper")
README = os.path.join(REPO, "README.md")
BEGIN = "<!-- figure-1: python tools/readme_tables.py results/paper/results.json -->"
END = "<!-- end figure-1 -->"

pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(RESULTS, "results.json")),
                                reason="no committed paper run in results/paper/")


def _tables():
    spec = importlib.util.spec_from_file_location(
        "readme_tables", os.path.join(REPO, "tools", "readme_tables.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _results():
    with open(os.path.join(RESULTS, "results.json")) as f:
        return json.load(f)


def test_readme_figure_1_table_is_the_runs():
    tables = _tables()
    text = open(README).read()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "README lacks the table markers"
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    results = _results()
    expected = (tables.counts_line(results) + "\n\n"
                + tables.rate_table(results, tables.FIGURE_1_ATTACKS)).strip()
    assert block == expected


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
    for role, card in manifest["models"].items():
        assert results["models"][role]["sha256"] == card["sha256"], role
