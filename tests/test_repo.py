"""The README's set-up commands are the ones CI runs."""

import os
import re

from conftest import REPO


def _readme_commands():
    text = open(os.path.join(REPO, "README.md")).read()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_ci_runs_the_readme_install_and_test_commands():
    install, test, main_command = _readme_commands()[:3]
    ci_lines = [line.strip() for line in open(os.path.join(REPO, ".ci", "run"))]
    assert install.startswith("pip install") and f"python -m {install}" in ci_lines
    assert "pytest" in test and test in ci_lines
    assert main_command.startswith("bin/")
    assert os.access(os.path.join(REPO, main_command.split()[0]), os.X_OK)
