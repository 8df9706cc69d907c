"""examples/ runs as shipped, and the Python snippet of docs/attacks.md is a verbatim copy of it."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "attack_a_model.py")
ROW = re.compile(r"^(\w+)\s+(plain|adaptive)\s+recovered ([\d.]+)\s+detected ([\d.]+)\s+"
                 r"misclassified ([\d.]+)$")


def _example_code():
    """The example after its module docstring."""
    text = open(EXAMPLE).read()
    return text[text.index('"""', 3) + 3:].strip()


def test_docs_snippet_is_the_example_verbatim():
    docs = open(os.path.join(REPO, "docs", "attacks.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", docs, re.S)
    assert _example_code() in [b.strip() for b in blocks]


@pytest.mark.slow
def test_example_trains_and_runs_every_attack_plain_and_adaptive():
    result = subprocess.run([sys.executable, EXAMPLE], capture_output=True, text=True,
                            timeout=900, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    accuracy = float(re.match(r"clean accuracy ([\d.]+) on 20 digits", lines[0]).group(1))
    assert accuracy >= 0.6
    rows = [ROW.match(line) for line in lines[1:]]
    assert all(rows), lines
    table = {(m.group(1), m.group(2)): [float(v) for v in m.groups()[2:]] for m in rows}
    assert set(table) == {(a, v) for a in ("fgsm", "pgd", "jsma", "cw", "square")
                          for v in ("plain", "adaptive")}
    for rates in table.values():
        assert sum(rates) == pytest.approx(1.0, abs=0.015)  # printed to 2 decimals
    # JSMA aims at real classes only, so its two variants are one run.
    assert table[("jsma", "plain")] == table[("jsma", "adaptive")]
    # Avoiding the outlier class is what "adaptive" means: fewer detections overall.
    detected = {v: sum(r[1] for (a, var), r in table.items() if var == v and a != "jsma")
                for v in ("plain", "adaptive")}
    assert detected["adaptive"] < detected["plain"]
