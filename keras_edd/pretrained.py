"""Pretrained models shipped with the repository: `saved_models/<collection>/`.

A collection is a folder holding `.keras` files and one `MANIFEST.json`, a model
card per model in the spirit of RobustBench's `model_info`: its role, the
command and settings it was trained with, the dataset (with a fingerprint of its
arrays), seed, precision, clean test accuracy and detected rate, training
seconds and machine, TensorFlow / Keras versions, and the sha256 of the file.

    from keras_edd.models import load_pretrained
    model = load_pretrained("paper:extended")   # sha256-checked, float32

Names are `<collection>:<model>` (`paper:extended`); the evaluation binaries take
them wherever a `.keras` path is asked for. The collections live in
`saved_models/` beside the package (a clone of the repository) or in
`$KERAS_EDD_PRETRAINED_DIR`.

bin/reproduce reuses a pretrained model instead of training one when the
model's settings match the run's (`matching_entry`): the same defense and
training settings, the same teacher (itself reused from the same collection),
and the same data (the fingerprint of the loaded arrays). The data folder, the
output folders, the precision and the distribution are not compared: they
change where a run reads and writes and its arithmetic, not the experiment. The
model is then installed as a finished run directory (`install_run`), so the
rest of the pipeline, and a later rerun, see an ordinary finished training run.
This module is light: it imports Keras only to load a model.
"""

import copy
import hashlib
import json
import os
import re
import shutil

from keras_edd.runs import run_dirs

PRETRAINED_DIR_ENV = "KERAS_EDD_PRETRAINED_DIR"
# A wheel carries the shipped collections inside the package (setup.py); a clone has them
# beside the package.
_PACKAGED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "saved_models")
DEFAULT_DIR = (_PACKAGED_DIR if os.path.isdir(_PACKAGED_DIR) else
               os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "saved_models"))
MANIFEST = "MANIFEST.json"
MANIFEST_FORMAT = 1
DEFAULT_COLLECTION = "paper"
_NAME = re.compile(r"^(?:([A-Za-z0-9_-]+):)?([A-Za-z0-9_-]+)$")
# Settings that do not change the experiment (see the module docstring).
_UNCOMPARED = {"output_dir", "run_name", "progress", "preset", "distribution"}
_UNCOMPARED_NESTED = {("data", "data_dir"), ("train", "precision"), ("defense", "teacher_path")}
# The defense settings each defense reads (the others are recorded but unused: e.g. alpha
# of an adversarially trained model); adv_train_* are saved only when not the default.
_DEFENSE_READS = {"none": (), "adversarial": ("adv_train_attack", "adv_train_eps",
                                              "adv_train_step", "adv_train_steps",
                                              "adv_train_schedule", "adv_train_lr_max",
                                              "adv_train_keep_best"),
                  "distillation": ("temperature", "teacher_epochs"),
                  "extended": ("alpha", "temperature", "mc_passes", "penalty_weight")}


class PretrainedError(ValueError):
    """A pretrained model name, manifest or file is unusable."""


def pretrained_dir(root=None):
    """The folder of the collections: `root`, else $KERAS_EDD_PRETRAINED_DIR, else
    saved_models/ inside the package (a wheel) or beside it (a clone)."""
    return root or os.environ.get(PRETRAINED_DIR_ENV) or DEFAULT_DIR


def is_pretrained_name(value):
    """True for `collection:model` names (never for a path to a file)."""
    return isinstance(value, str) and ":" in value and bool(_NAME.match(value))


def parse_name(name):
    """`collection:model` (or `model`, in the paper collection) -> (collection, model)."""
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise PretrainedError(f"pretrained model {name!r}: use <collection>:<model>, "
                              "e.g. paper:extended")
    return match.group(1) or DEFAULT_COLLECTION, match.group(2)


def read_manifest(collection=DEFAULT_COLLECTION, root=None):
    """The MANIFEST.json of a collection; PretrainedError (one line) if there is none."""
    path = os.path.join(pretrained_dir(root), collection, MANIFEST)
    if not os.path.isfile(path):
        raise PretrainedError(f"pretrained collection {collection!r}: no {path}; the "
                              f"collections ship in the repository's saved_models/ and in "
                              f"wheels built from a clone (pip install <clone>); otherwise set "
                              f"${PRETRAINED_DIR_ENV} to a folder holding "
                              f"{collection}/{MANIFEST}")
    try:
        manifest = run_dirs.read_json(path)
    except (OSError, ValueError) as exc:
        raise PretrainedError(f"pretrained collection {collection!r}: {path} is not valid "
                              f"JSON ({exc})") from None
    if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("models"), dict):
        raise PretrainedError(f"pretrained collection {collection!r}: {path} is not a format-"
                              f"{MANIFEST_FORMAT} manifest with a 'models' table")
    return manifest


def entry(name, root=None):
    """(collection, model, the manifest's entry for it)."""
    collection, model = parse_name(name)
    models = read_manifest(collection, root)["models"]
    if model not in models:
        raise PretrainedError(f"pretrained model {collection}:{model}: not in the "
                              f"{collection!r} collection (it has {', '.join(sorted(models))})")
    return collection, model, models[model]


def sha256(path):
    """The sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_path(name, root=None):
    """The `.keras` file of a pretrained model, after checking its sha256.

    Raises PretrainedError (one line) when the name is unknown, the file is
    missing, or its sha256 differs from the manifest's (a damaged or replaced
    file, or a Git LFS pointer instead of the model).
    """
    collection, model, info = entry(name, root)
    path = os.path.join(pretrained_dir(root), collection, info["file"])
    if not os.path.isfile(path):
        raise PretrainedError(f"pretrained model {collection}:{model}: its file {path} is "
                              "missing")
    actual = sha256(path)
    if actual != info["sha256"]:
        raise PretrainedError(f"pretrained model {collection}:{model}: {path} has sha256 "
                              f"{actual}, the manifest says {info['sha256']}; the file is "
                              "damaged or was replaced")
    return path


def resolve_model(value, root=None):
    """A `.keras` path for a model flag: a `collection:model` name becomes its checked
    file; anything else is returned as given."""
    return model_path(value, root) if is_pretrained_name(value) else value


def data_fingerprint(dataset):
    """sha256 of a dataset's arrays (images and labels, train and test, with shapes)."""
    import numpy as np
    digest = hashlib.sha256()
    for array in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def comparable_settings(settings, teacher=None):
    """A training run's settings (RunConfig.to_dict()) as compared for reuse: without
    the uncompared keys and the defense settings its defense does not read, the
    teacher named by role instead of by path."""
    out = {k: copy.deepcopy(v) for k, v in settings.items() if k not in _UNCOMPARED}
    for section, key in _UNCOMPARED_NESTED:
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    defense = out.get("defense")
    if isinstance(defense, dict) and defense.get("defense") in _DEFENSE_READS:
        reads = ("defense", "teacher") + _DEFENSE_READS[defense["defense"]]
        out["defense"] = {k: v for k, v in defense.items() if k in reads}
    if teacher is not None:
        out.setdefault("defense", {})["teacher"] = teacher
    return out


def _diff(a, b, prefix=""):
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            yield from _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            yield f"{prefix}{key}"


def matching_entry(collection, role, settings, fingerprint, *, teacher=None, root=None):
    """The manifest entry of `role` if it was trained like `settings` on the same data.

    Returns (entry, None) on a match, else (None, why not) with a short reason.
    `teacher`: the role of the run's teacher, which must itself come from this
    collection (the caller checks that).
    """
    try:
        models = read_manifest(collection, root)["models"]
    except PretrainedError as exc:
        return None, str(exc)
    info = models.get(role)
    if info is None:
        return None, f"no {role!r} in the {collection!r} collection"
    if info["dataset"].get("fingerprint") != fingerprint:
        return None, "other data (the fingerprint of the loaded arrays differs)"
    if info.get("teacher") != teacher:
        return None, f"other teacher ({info.get('teacher')!r}, not {teacher!r})"
    wanted = comparable_settings(settings, teacher)
    changed = list(_diff(comparable_settings(info["settings"]), wanted))
    if changed:
        return None, f"other settings ({', '.join(changed)})"
    return info, None


def install_run(collection, role, info, run_dir, flags, root=None):
    """Make `run_dir` a finished training run holding the pretrained model of `role`.

    Writes flags.json (`flags`: the run's own settings), the model (sha256-checked)
    under its deployed name, and results.json: the training run's recorded results
    with this run directory and a `pretrained` record. results.json is written
    last, so an interrupted install is an unfinished run and is redone.
    Returns the results dict.
    """
    source = model_path(f"{collection}:{role}", root)
    run_dirs.prepare_run_dir(os.path.dirname(run_dir), os.path.basename(run_dir), flags)
    results = copy.deepcopy(info["training_results"])
    target = os.path.join(run_dir, results["deployed_model"])
    with run_dirs.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    results["run_dir"] = os.path.abspath(run_dir)
    results["pretrained"] = {"name": f"{collection}:{role}", "sha256": info["sha256"],
                             "trained_settings": results.get("settings"),
                             "trained_precision": info.get("precision")}
    results["settings"] = flags
    run_dirs.write_json(os.path.join(run_dir, "results.json"), results)
    return results


def pretrained_source(run_dir):
    """The `collection:role` a finished run directory was installed from, else None."""
    path = os.path.join(run_dir, "results.json")
    if not os.path.isfile(path):
        return None
    try:
        record = run_dirs.read_json(path).get("pretrained")
    except (OSError, ValueError):
        return None
    return record.get("name") if isinstance(record, dict) else None


# ----------------------------------------------------------------------- writing a collection


def model_card(role, run_dir, *, description, file, teacher=None, fingerprint, dataset_note,
               machine):
    """The manifest entry of the deployed model of the finished training run `run_dir`.

    A run installed from a pretrained collection (install_run) keeps the entry it
    came with (the model is the same file, its sha256 checked), so writing a
    collection again changes only the models trained anew. Returns (entry, model path).
    """
    results = run_dirs.read_json(os.path.join(run_dir, "results.json"))
    path = os.path.join(run_dir, results["deployed_model"])
    source = results.get("pretrained")
    if isinstance(source, dict) and source.get("sha256") == sha256(path):
        collection, model = source["name"].split(":", 1)
        entry = copy.deepcopy(read_manifest(collection)["models"][model])
        if entry["sha256"] == source["sha256"]:
            return {**entry, "file": file, "role": role}, path
    recorded = copy.deepcopy(results)
    recorded.pop("run_dir", None)
    card = {
        "file": file, "sha256": sha256(path), "bytes": os.path.getsize(path),
        "role": role, "description": description, "defense": results["defense"],
        "temperature": results["temperature"], "teacher": teacher, "seed": results["seed"],
        "precision": results["settings"]["train"].get("precision", "float32"),
        "settings": comparable_settings(results["settings"], teacher),
        "dataset": {**results["dataset"], "fingerprint": fingerprint, "note": dataset_note},
        "clean_test_accuracy": results["clean_test_accuracy"],
        "clean_test_detected": results.get("clean_test_detected"),
        "training_seconds": results["wall_seconds"], "machine": machine,
        "versions": results["versions"],
        "training_results": recorded,
    }
    return card, path


def write_manifest(folder, manifest):
    """Write MANIFEST.json atomically, keys in a stable order."""
    text = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    run_dirs.atomic_write(os.path.join(folder, MANIFEST), lambda f: f.write(text))
