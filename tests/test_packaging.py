"""A wheel carries the shipped paper collection; without one, the error says how to get it."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO
from keras_edd import pretrained
from keras_edd.pretrained import PretrainedError


def test_missing_collection_error_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.PRETRAINED_DIR_ENV, str(tmp_path))
    from keras_edd import load_pretrained
    with pytest.raises(PretrainedError) as info:
        load_pretrained("paper:extended")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "paper" / "MANIFEST.json") in message
    assert "pip install <clone>" in message and pretrained.PRETRAINED_DIR_ENV in message


def _source_copy(target):
    """The tracked files of the repository (plus setup.py, MANIFEST.in), so the build
    writes its build/ and egg-info into a scratch folder, never into the repository."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in [n for n in listed if n] + ["setup.py", "MANIFEST.in"]:
        source = os.path.join(REPO, name)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
            shutil.copyfile(source, os.path.join(target, name))


@pytest.mark.slow
def test_wheel_carries_the_paper_collection(tmp_path):
    if shutil.which("git") is None or not os.path.isdir(os.path.join(REPO, ".git")) and not \
            os.path.isfile(os.path.join(REPO, ".git")):
        pytest.skip("not a git checkout")
    manifest_path = os.path.join(REPO, "saved_models", "paper", "MANIFEST.json")
    if not os.path.isfile(manifest_path):
        pytest.skip("saved_models/paper is not in this checkout")
    source, out = tmp_path / "src", tmp_path / "wheel"
    _source_copy(str(source))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(out), str(source)], capture_output=True, text=True)
    if build.returncode != 0:
        reason = (build.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot build a wheel here (offline without setuptools?): {reason}")
    (wheel,) = out.glob("keras_edd-*.whl")
    with open(manifest_path) as f:
        files = [entry["file"] for entry in json.load(f)["models"].values()]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for name in ["MANIFEST.json", *files]:
        assert f"keras_edd/saved_models/paper/{name}" in names
    # Installed from the wheel alone (no clone beside it), the name resolves inside the
    # package and its sha256 matches the manifest.
    code = ("import keras_edd.pretrained as p; print(p.model_path('paper:extended'))")
    env = {k: v for k, v in os.environ.items() if k != pretrained.PRETRAINED_DIR_ENV}
    env["PYTHONPATH"] = str(tmp_path / "site")
    found = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert found == str(tmp_path / "site" / "keras_edd" / "saved_models" / "paper" /
                        "extended.keras")
