"""keras_edd.pretrained: names, the manifest, sha256-checked loading, reuse matching.

A hand-made collection of one tiny model; the end-to-end path (tools/make_pretrained.py,
bin/reproduce reusing a collection, the binaries taking names) is in test_bin_eval.py.
The shipped paper collection, when present, is checked against its own manifest.
"""

import json
import os
import re

import numpy as np
import pytest

from conftest import REPO
from keras_edd import files, presets, pretrained
from keras_edd.models import load_pretrained
from keras_edd.pretrained import PretrainedError
from keras_edd.runs import run_dirs

SETTINGS = {"data": {"dataset": "mnist", "data_dir": "/somewhere", "train_limit": None,
                     "test_limit": None},
            "defense": {"defense": "extended", "alpha": 0.9, "teacher_path": "/x/model.keras"},
            "train": {"epochs": 50, "precision": "mixed_bfloat16", "seed": 0},
            "output_dir": "/out", "progress": True, "run_name": None}


@pytest.fixture
def collection(tmp_path):
    import keras
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="logits")])
    folder = tmp_path / "toy"
    folder.mkdir()
    model.save(folder / "extended.keras")
    card = {"file": "extended.keras", "sha256": files.sha256(folder / "extended.keras"),
            "teacher": "undefended", "settings": pretrained.comparable_settings(
                SETTINGS, "undefended"),
            "dataset": {"fingerprint": "f" * 64}, "precision": "mixed_bfloat16",
            "training_results": {"deployed_model": "distilled.keras", "settings": SETTINGS,
                                 "clean_test_accuracy": 0.5}}
    pretrained.write_manifest(folder, {"format": 1, "models": {"extended": card}})
    return tmp_path, model


def test_load_pretrained_checks_sha256_and_returns_the_weights(collection):
    root, model = collection
    loaded = load_pretrained("toy:extended", root=str(root))
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    # A changed byte is refused, naming the model and both digests.
    with open(root / "toy" / "extended.keras", "ab") as f:
        f.write(b"\0")
    with pytest.raises(PretrainedError, match=r"toy:extended: .* has sha256 [0-9a-f]{64}, "
                                              r"the manifest says [0-9a-f]{64}"):
        load_pretrained("toy:extended", root=str(root))


@pytest.mark.parametrize("name,fragment", [
    ("toy:missing", "not in the 'toy' collection (it has extended)"),
    ("nowhere:extended", "pretrained collection 'nowhere': no "),
    ("toy:ext/../x", "use <collection>:<model>"),
    ("a:b:c", "use <collection>:<model>"),
])
def test_bad_names_are_one_line_errors(collection, name, fragment):
    root, _ = collection
    with pytest.raises(PretrainedError) as info:
        pretrained.model_path(name, root=str(root))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_bad_manifest(collection):
    root, _ = collection
    os.remove(root / "toy" / "extended.keras")
    with pytest.raises(PretrainedError, match="its file .*extended.keras is missing"):
        pretrained.model_path("toy:extended", root=str(root))
    (root / "toy" / "MANIFEST.json").write_text('{"format": 9}')
    with pytest.raises(PretrainedError, match="not a format-1 manifest"):
        pretrained.read_manifest("toy", root=str(root))
    (root / "toy" / "MANIFEST.json").write_text("{")
    with pytest.raises(PretrainedError, match="not valid JSON"):
        pretrained.read_manifest("toy", root=str(root))


def test_names_and_paths_are_told_apart(collection):
    root, _ = collection
    assert pretrained.is_pretrained_name("paper:extended")
    for path in ("saved_models/run/model.keras", "model.keras", "C:/m.keras", "", None):
        assert not pretrained.is_pretrained_name(path)
        assert pretrained.resolve_model(path, root=str(root)) == path
    assert pretrained.resolve_model("toy:extended", root=str(root)).endswith(
        os.path.join("toy", "extended.keras"))
    assert pretrained.parse_name("extended") == ("paper", "extended")


def test_matching_compares_settings_not_paths_precision_or_output(collection):
    root, _ = collection
    fingerprint = "f" * 64
    moved = json.loads(json.dumps(SETTINGS))
    moved["data"]["data_dir"] = "/elsewhere"
    moved["defense"]["teacher_path"] = "/y/model.keras"
    moved["train"]["precision"] = "float32"
    moved.update(output_dir="/other", progress=False, run_name="mine")
    info, why = pretrained.matching_entry("toy", "extended", moved, fingerprint,
                                          teacher="undefended", root=str(root))
    assert why is None and info["file"] == "extended.keras"
    changed = json.loads(json.dumps(SETTINGS))
    changed["defense"]["alpha"] = 0.5
    changed["train"]["epochs"] = 20
    assert pretrained.matching_entry("toy", "extended", changed, fingerprint,
                                     teacher="undefended", root=str(root)) == (
        None, "other settings (defense.alpha, train.epochs)")
    assert pretrained.matching_entry("toy", "extended", SETTINGS, "0" * 64,
                                     teacher="undefended", root=str(root))[1].startswith(
        "other data")
    assert pretrained.matching_entry("toy", "extended", SETTINGS, fingerprint,
                                     teacher="surrogate_U", root=str(root))[1].startswith(
        "other teacher")
    assert pretrained.matching_entry("toy", "undefended", SETTINGS, fingerprint,
                                     root=str(root))[1] == "no 'undefended' in the 'toy' collection"


def test_install_run_makes_a_finished_run(collection, tmp_path):
    root, model = collection
    info = pretrained.read_manifest("toy", root=str(root))["models"]["extended"]
    run_dir = tmp_path / "models" / "mnist-extended"
    flags = dict(SETTINGS, output_dir=str(tmp_path / "models"))
    # The caller (keras_edd.runs.reproduce) opens the run directory, writing flags.json.
    run_dirs.prepare_run_dir(str(tmp_path / "models"), "mnist-extended", flags)
    results = pretrained.install_run("toy", "extended", info, str(run_dir), flags,
                                     root=str(root))
    assert json.loads((run_dir / "flags.json").read_text()) == flags
    assert files.sha256(run_dir / "distilled.keras") == info["sha256"]
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk == results and results["run_dir"] == str(run_dir)
    assert results["pretrained"]["name"] == "toy:extended"
    assert results["pretrained"]["trained_settings"] == SETTINGS
    assert pretrained.pretrained_source(str(run_dir)) == "toy:extended"
    assert pretrained.pretrained_source(str(tmp_path)) is None


def test_a_reinstalled_model_keeps_its_card_when_a_collection_is_written_again(
        collection, tmp_path, monkeypatch):
    root, model = collection
    monkeypatch.setenv(pretrained.PRETRAINED_DIR_ENV, str(root))
    info = pretrained.read_manifest("toy")["models"]["extended"]
    run_dir = tmp_path / "models" / "mnist-extended"
    pretrained.install_run("toy", "extended", info, str(run_dir),
                           dict(SETTINGS, output_dir=str(tmp_path / "models")))
    card, path = pretrained.model_card(
        "extended", str(run_dir), description="d", file="extended.keras", teacher="undefended",
        fingerprint="0" * 64, dataset_note="", machine="elsewhere")
    assert card == {**info, "role": "extended"} and path == str(run_dir / "distilled.keras")
    # A model trained anew in that run (another file) gets a card of its own.
    model.set_weights([w + 1.0 for w in model.get_weights()])
    model.save(run_dir / "distilled.keras")
    results = json.loads((run_dir / "results.json").read_text())
    results.update(defense="extended", temperature=4.0, seed=0, dataset={}, wall_seconds=1.0,
                   versions={})
    (run_dir / "results.json").write_text(json.dumps(results))
    fresh, _ = pretrained.model_card(
        "extended", str(run_dir), description="d", file="extended.keras", teacher="undefended",
        fingerprint="0" * 64, dataset_note="", machine="elsewhere")
    assert fresh["machine"] == "elsewhere" and fresh["sha256"] != info["sha256"]


def test_data_fingerprint_sees_every_array():
    from keras_edd.data import Dataset
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (4, 2, 2, 1), dtype=np.uint8), np.arange(4),
              rng.integers(0, 256, (2, 2, 2, 1), dtype=np.uint8), np.arange(2)]
    base = pretrained.data_fingerprint(Dataset("d", "s", *arrays, ("a", "b")))
    for i in range(4):
        changed = [a.copy() for a in arrays]
        changed[i].flat[0] += 1
        assert pretrained.data_fingerprint(Dataset("d", "s", *changed, ("a", "b"))) != base


PAPER = os.path.join(REPO, "saved_models", "paper")


@pytest.mark.skipif(not os.path.isfile(os.path.join(PAPER, "MANIFEST.json")),
                    reason="no shipped paper collection")
def test_the_shipped_paper_models_match_their_manifest():
    manifest = pretrained.read_manifest("paper")
    reproduce_roles = {"undefended", "extended", "distillation", "adversarial", "surrogate_U",
                       "surrogate_D"}
    # f and f^d at further training seeds (tools/seed_runs.sh): <role>_s<seed>, f^d
    # distilled from the f of the same seed.
    seed_roles = {role: re.fullmatch(r"(undefended|extended)_s(\d+)", role)
                  for role in set(manifest["models"]) - reproduce_roles}
    assert reproduce_roles <= set(manifest["models"]) and all(seed_roles.values()), seed_roles
    for role, match in seed_roles.items():
        card, seed = manifest["models"][role], int(match.group(2))
        assert card["seed"] == seed and seed not in (0, 1, 2, 3)  # 1-3: U, D and J's seeds
        assert card["teacher"] == (None if match.group(1) == "undefended" else
                                   f"undefended_s{seed}")
    for name, card in manifest["models"].items():
        role = seed_roles[name].group(1) if seed_roles.get(name) else name
        path = pretrained.model_path(f"paper:{name}")  # checks the sha256
        assert os.path.getsize(path) == card["bytes"] <= 3_500_000
        assert card["dataset"]["train_size"] == 22699 and card["dataset"]["test_size"] == 10000
        assert card["settings"]["train"]["epochs"] == (
            50 if role in ("extended", "distillation", "surrogate_D") else
            presets.PAPER.adversarial_epochs if role == "adversarial" else 6)
        if role == "adversarial":  # trained with the paper preset's adversary
            recipe = card["training_results"]["adversarial_training"]
            adversary = presets.PAPER.adversarial
            assert (recipe["attack"], recipe["eps"], recipe["step"], recipe.get("steps")) == (
                adversary.adv_train_attack, adversary.adv_train_eps, adversary.adv_train_step,
                adversary.adv_train_steps)
        # Every model is near 98 % clean accuracy, the adversarial baseline included.
        assert 0.97 < card["clean_test_accuracy"] <= 1.0
        assert card["sha256"] == files.sha256(path)
        assert pretrained.matching_entry(
            "paper", name, card["training_results"]["settings"],
            card["dataset"]["fingerprint"], teacher=card["teacher"])[1] is None
        assert (card["clean_test_detected"] is None) == (role not in ("extended", "surrogate_D"))


def _manifest_with(root, models):
    folder = root / "toy"
    with open(folder / "MANIFEST.json", "w") as f:
        json.dump({"format": 1, "models": models} if models is not None else [1], f)


@pytest.mark.parametrize("file", ["../../etc/passwd", "/etc/passwd", "sub/extended.keras",
                                  "..", "", "extended.keras\n"])
def test_manifest_file_must_be_a_plain_name_inside_the_collection(collection, file):
    """`../../etc/passwd` was opened and hashed, and an absolute path outside the collection
    with a matching sha256 loaded as the model."""
    root, _ = collection
    outside = root / "outside.keras"
    outside.write_bytes((root / "toy" / "extended.keras").read_bytes())
    file = str(outside) if file == "/etc/passwd" else file
    _manifest_with(root, {"extended": {"file": file, "sha256": files.sha256(outside)}})
    with pytest.raises(PretrainedError) as raised:
        pretrained.model_path("toy:extended", root=str(root))
    message = str(raised.value)
    assert f"file={file!r} is not allowed; only a plain '<name>.keras' file name" in message
    assert "\n" not in message


@pytest.mark.parametrize("models,fragment", [
    ({"extended": {"sha256": "0" * 64}}, "toy:extended: .* its entry has no 'file'"),
    ({"extended": {"file": "extended.keras"}}, "its entry has no 'sha256'"),
    ({"extended": ["extended.keras"]}, "its entry is a list, not a table"),
    ({"extended": {"file": 5, "sha256": "0" * 64}}, "file=5 is not allowed"),
    ({"extended": {"file": "extended.keras", "sha256": None}}, "sha256=None is not a sha256"),
    (None, "is not a format-1 manifest with a 'models' table"),
])
def test_malformed_manifest_entries_are_one_line_errors(collection, models, fragment):
    root, _ = collection
    _manifest_with(root, models)
    for call in (lambda: pretrained.model_path("toy:extended", root=str(root)),
                 lambda: pretrained.matching_entry("toy", "extended", SETTINGS, "f" * 64,
                                                   root=str(root))):
        try:
            result = call()
        except PretrainedError as exc:
            assert "\n" not in str(exc)
            assert __import__("re").search(fragment, str(exc)), str(exc)
        else:  # matching_entry reports instead of raising
            assert result[0] is None and __import__("re").search(fragment, result[1])


@pytest.mark.slow
def test_binary_exits_2_on_a_manifest_naming_a_file_outside(collection, tmp_path):
    import subprocess
    import sys
    root, _ = collection
    _manifest_with(root, {"extended": {"file": "../../etc/passwd", "sha256": "0" * 64}})
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "bin", "eval_whitebox"), "--model=toy:extended",
         "--dataset=mnist_sample", f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_EDD_PRETRAINED_DIR": str(root)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("bin/eval_whitebox: error: ") and "'../../etc/passwd'" in last
    assert not (tmp_path / "out").exists()


def _digits_dataset(x_train, x_test):
    from keras_edd import data
    return data.Dataset("mnist", "test", x_train, np.arange(len(x_train)) % 10, x_test,
                        np.arange(len(x_test)) % 10, tuple("0123456789"))


def test_a_model_is_not_scored_on_its_own_training_digits(collection):
    """bin/eval_whitebox --model=paper:extended scored the model on the bundled sample,
    whose test digits were all training digits of it. A collection names its models'
    training digits; scoring a model on test digits it was trained on is refused."""
    root, _ = collection
    rng = np.random.default_rng(0)
    trained_on = _digits_dataset(rng.integers(0, 256, (30, 28, 28, 1), np.uint8),
                                 rng.integers(0, 256, (5, 28, 28, 1), np.uint8))
    folder = root / "toy"
    manifest = pretrained.read_manifest("toy", str(root))
    manifest["models"]["extended"]["dataset"]["fingerprint"] = \
        pretrained.data_fingerprint(trained_on)
    manifest["training_digits"] = pretrained.write_training_digits(str(folder), trained_on)
    pretrained.write_manifest(str(folder), manifest)
    model_file = str(folder / "extended.keras")
    pretrained.check_not_trained_on(model_file, trained_on, root=str(root))  # its test split
    leaky = _digits_dataset(trained_on.x_train, np.concatenate(
        [trained_on.x_test, trained_on.x_train[:3]]))
    with pytest.raises(PretrainedError, match=r"^3 of the 8 test digits of dataset 'mnist' "
                                              r"\(test\) are training digits of toy:extended "
                                              r".*--data_dir=../shared/data/mnist"):
        pretrained.check_not_trained_on(model_file, leaky, root=str(root))
    other = root / "other.keras"  # not a collection's model: not checked
    other.write_bytes(b"not a model")
    pretrained.check_not_trained_on(str(other), leaky, root=str(root))


@pytest.mark.skipif(not os.path.isfile(os.path.join(PAPER, "MANIFEST.json")),
                    reason="no shipped paper collection")
def test_the_paper_models_refuse_training_digits_and_take_the_sample():
    """The bundled sample's training digits are MNIST-22.7k training digits; its test
    digits are official test digits the paper models never saw."""
    from keras_edd import data
    sample = data.load_sample()
    pretrained.check_not_trained_on(pretrained.model_path("paper:extended"), sample)
    training_as_test = _digits_dataset(sample.x_test, sample.x_train[:50])
    with pytest.raises(PretrainedError, match="^50 of the 50 test digits .* training digits "
                                              "of paper:"):
        pretrained.check_not_trained_on(pretrained.model_path("paper:extended"),
                                        training_as_test)
