"""The README's set-up commands are the ones CI runs."""

import os
import re

from conftest import REPO


def _readme_commands():
    text = open(os.path.join(REPO, "README.md")).read()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_ci_runs_the_readme_install_and_test_commands():
    """The README opens with install, the demo, the tests, then the main command."""
    install, demo, test, main_command = _readme_commands()[:4]
    ci_lines = [line.strip() for line in open(os.path.join(REPO, ".ci", "run"))]
    assert install.startswith("pip install") and f"python -m {install}" in ci_lines
    assert demo == "bin/reproduce --quick"
    assert "pytest" in test and test in ci_lines
    for command in (demo, main_command):
        assert command.startswith("bin/")
        assert os.access(os.path.join(REPO, command.split()[0]), os.X_OK)


def test_license_file_matches_setup_cfg():
    setup = open(os.path.join(REPO, "setup.cfg")).read()
    license_name = re.search(r"^license = (\S+)$", setup, re.M).group(1)
    text = open(os.path.join(REPO, "LICENSE")).read()
    assert license_name == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_citation_file_cites_the_paper_and_the_project():
    text = open(os.path.join(REPO, "CITATION.cff")).read()
    assert re.search(r"^cff-version: 1\.2\.0$", text, re.M)
    assert re.search(r"^title: .*keras_edd", text, re.M)
    preferred = text.split("preferred-citation:", 1)[1]
    assert 'title: "Extending Defensive Distillation"' in preferred
    assert "family-names: Papernot" in preferred and "family-names: McDaniel" in preferred
    assert "year: 2017" in preferred


def test_python_requires_is_true_to_the_code():
    """setup.cfg's python_requires is no lower than the newest language feature used:
    enum.StrEnum (3.11) in the settings."""
    setup = open(os.path.join(REPO, "setup.cfg")).read()
    version = re.search(r"^python_requires = >=3\.(\d+)$", setup, re.M)
    assert version, "setup.cfg: python_requires = >=3.N"
    uses_str_enum = any("enum.StrEnum" in open(os.path.join(folder, name)).read()
                        for folder, _, names in os.walk(os.path.join(REPO, "keras_edd"))
                        for name in names if name.endswith(".py"))
    assert uses_str_enum and int(version.group(1)) >= 11


def test_the_main_command_times_are_the_published_runs_stage_seconds():
    """The README's time of the main command is the sum of results/paper's stage_seconds."""
    import json
    text = " ".join(open(os.path.join(REPO, "README.md")).read().split())
    stages = json.load(open(os.path.join(REPO, "results", "paper", "results.json")))["stage_seconds"]
    phrases = {"surrogates J": "substitutes", "white-box": "whitebox", "black-box": "blackbox",
               "sweeps": "sweeps", "standard evaluation": "standard",
               "robustness curves": "robustness_curves"}
    for phrase, key in phrases.items():
        stated = f"{phrase} {round(stages[key]['seconds_total']):,} s"
        assert stated in text, stated
    assert f"{round(stages['training']['seconds_total']):,} s of training" in text
    # "attacks" is the crafting time inside the white-box and black-box stages.
    reused = sum(stages[key]["seconds_total"] for key in stages if key not in ("training", "attacks"))
    hours, minutes = divmod(round(reused / 60 / 5) * 5, 60)
    assert f"about {hours} h {minutes} min when it reuses" in text
    hours, minutes = divmod(round((reused + stages["training"]["seconds_total"]) / 60 / 5) * 5, 60)
    assert f"about {hours} h {minutes} min from scratch" in text
