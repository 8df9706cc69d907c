"""docs/api.md runs: every python block, in order, in one namespace, from the repository root.

A block whose first line is `# needs: ../shared/data/mnist` runs only when that folder exists.
"""

import os
import re
import warnings

import pytest

from conftest import REPO, SHARED_MNIST

DOC = os.path.join(REPO, "docs", "api.md")


def python_blocks():
    with open(DOC, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_readme_snippet_is_short():
    snippet = python_blocks()[0]
    assert "keras_edd.evaluate(" in snippet and len(snippet.strip().splitlines()) <= 10


def test_the_readme_shows_the_snippet_that_runs_here():
    """The README's snippet is docs/api.md's first block, which the test below executes."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme_blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert python_blocks()[0] in readme_blocks


@pytest.mark.slow
def test_every_python_block_of_docs_api_runs(monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 6
    monkeypatch.chdir(REPO)
    namespace = {"__name__": "docs_api"}
    # The README snippet uses the stand-ins the next block defines: run that one first.
    order = [1, 0] + list(range(2, len(blocks)))
    ran = 0
    for index in order:
        block = blocks[index]
        if block.startswith("# needs: ../shared/data/mnist") and not os.path.isdir(SHARED_MNIST):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(block, f"docs/api.md block {index}", "exec"), namespace)
        ran += 1
    assert ran >= len(blocks) - 1
    assert 0.0 <= namespace["robust_accuracy"] <= 1.0
