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
A collection also names the digits its models were trained on
(`training_digits.npy`, an 8-byte digest per training image, recorded in the
manifest's `training_digits`), so the evaluation binaries refuse to score one
of its models on test digits it was trained on (`check_not_trained_on`).
This module is light: it imports Keras only to load a model.
"""

import copy
import hashlib
import json
import os
import platform
import re
import shutil

from keras_edd import config, files

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
# Besides config.NOT_SETTINGS, what a pretrained model's settings are compared without: where
# its data lives (its arrays' fingerprint is compared instead), the precision it was trained
# in (the shipped model is float32) and its teacher's path (named by role instead).
_NOT_COMPARED = (("data", "data_dir"), ("train", "precision"), ("defense", "teacher_path"))
# A manifest's `file`: a plain .keras file name inside the collection folder (no folder part,
# no `..`, nothing absolute), so a manifest can name no file outside its collection.
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.keras$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
        manifest = files.read_json(path)
    except (OSError, ValueError) as exc:
        raise PretrainedError(f"pretrained collection {collection!r}: {path} is not valid "
                              f"JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or not isinstance(manifest.get("models"), dict):
        raise PretrainedError(f"pretrained collection {collection!r}: {path} is not a format-"
                              f"{MANIFEST_FORMAT} manifest with a 'models' table")
    for model, info in manifest["models"].items():
        check_entry(f"{collection}:{model}", info, path)
    return manifest


def check_entry(name, info, path=MANIFEST):
    """Raise PretrainedError (one line) unless a manifest entry is a table with a plain
    `.keras` file name inside the collection folder and a sha256 hex digest."""
    where = f"pretrained model {name}: {path}"
    if not isinstance(info, dict):
        raise PretrainedError(f"{where}: its entry is a {type(info).__name__}, not a table "
                              "with 'file' and 'sha256'")
    for key in ("file", "sha256"):
        if key not in info:
            raise PretrainedError(f"{where}: its entry has no {key!r}")
    if not isinstance(info["file"], str) or not _FILE.fullmatch(info["file"]):
        raise PretrainedError(f"{where}: file={info['file']!r} is not allowed; only a plain "
                              "'<name>.keras' file name inside the collection folder")
    if not isinstance(info["sha256"], str) or not _SHA256.fullmatch(info["sha256"]):
        raise PretrainedError(f"{where}: sha256={info['sha256']!r} is not a sha256 digest "
                              "(64 lowercase hex digits)")


def entry(name, root=None):
    """(collection, model, the manifest's entry for it)."""
    collection, model = parse_name(name)
    models = read_manifest(collection, root)["models"]
    if model not in models:
        raise PretrainedError(f"pretrained model {collection}:{model}: not in the "
                              f"{collection!r} collection (it has {', '.join(sorted(models))})")
    return collection, model, models[model]


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
    actual = files.sha256(path)
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


TRAINING_DIGITS = "training_digits.npy"


def digit_digests(images):
    """Per image, the first 8 bytes of the sha256 of its uint8 pixels, as uint64: a compact
    name for each digit (the 32,699 digits of MNIST-22.7k give no two alike)."""
    import numpy as np
    return np.array([int.from_bytes(hashlib.sha256(np.ascontiguousarray(x).tobytes())
                                    .digest()[:8], "little") for x in images], np.uint64)


def write_training_digits(folder, dataset):
    """Write the digests of `dataset`'s training images into the collection `folder`;
    returns the manifest's `training_digits` record."""
    import numpy as np
    digests = digit_digests(dataset.x_train)
    path = os.path.join(folder, TRAINING_DIGITS)
    files.atomic_write(path, lambda f: np.save(f, digests), binary=True)
    return {"file": TRAINING_DIGITS, "sha256": files.sha256(path), "count": int(len(digests)),
            "dataset_fingerprint": data_fingerprint(dataset)}


def _trained_digits(model_file, root=None):
    """(`collection:model`, digests of its training digits) for a model file that is one
    of a collection's (by sha256) whose manifest names its training digits, else None."""
    import numpy as np
    folder = pretrained_dir(root)
    if not os.path.isdir(folder) or not os.path.isfile(model_file):
        return None
    digest = files.sha256(model_file)
    for collection in sorted(os.listdir(folder)):
        if not os.path.isfile(os.path.join(folder, collection, MANIFEST)):
            continue
        try:
            manifest = read_manifest(collection, root)
        except PretrainedError:
            continue
        record = manifest.get("training_digits")
        for model, info in manifest["models"].items():
            if info["sha256"] != digest or not isinstance(record, dict):
                continue
            fingerprint = (info.get("dataset") or {}).get("fingerprint")
            path = os.path.join(folder, collection, TRAINING_DIGITS)
            if record.get("dataset_fingerprint") != fingerprint or not os.path.isfile(path) \
                    or files.sha256(path) != record.get("sha256"):
                continue
            return f"{collection}:{model}", np.load(path)
    return None


def check_not_trained_on(model_file, dataset, *, root=None):
    """Refuse (PretrainedError, one line) to score a collection's model on a dataset whose
    test split holds digits the model was trained on: robustness measured there is not
    robustness on unseen inputs. Models outside the collections pass unchecked."""
    import numpy as np
    found = _trained_digits(model_file, root)
    if found is None:
        return
    name, trained = found
    overlap = int(np.isin(digit_digests(dataset.x_test), trained).sum())
    if overlap:
        raise PretrainedError(
            f"{overlap} of the {len(dataset.y_test)} test digits of dataset {dataset.name!r} "
            f"({dataset.source}) are training digits of {name} (its collection's "
            f"{TRAINING_DIGITS}): scoring it there measures nothing about unseen digits; "
            "evaluate on MNIST's official test digits, e.g. --data_dir=../shared/data/mnist "
            "or --dataset=mnist_sample")


def comparable_settings(settings, teacher=None):
    """A training run's settings (RunConfig.to_dict()) as compared for reuse: without
    the uncompared keys and the defense settings its defense does not read, the
    teacher named by role instead of by path."""
    out = copy.deepcopy(config.run_identity(settings, ignore=_NOT_COMPARED))
    defense = out.get("defense")
    if isinstance(defense, dict) and defense.get("defense") in config.DEFENSES:
        # the settings its defense reads (config.defense_identifies); adv_train_* are saved
        # only when not the default
        reads = ("defense", "teacher") + config.defense_identifies(defense["defense"])
        out["defense"] = {k: v for k, v in defense.items() if k in reads}
    if teacher is not None:
        out.setdefault("defense", {})["teacher"] = teacher
    return out


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
    dataset = info.get("dataset")
    if not isinstance(dataset, dict) or dataset.get("fingerprint") != fingerprint:
        return None, "other data (the fingerprint of the loaded arrays differs)"
    if info.get("teacher") != teacher:
        return None, f"other teacher ({info.get('teacher')!r}, not {teacher!r})"
    wanted = comparable_settings(settings, teacher)
    changed = list(config.identity_diff(comparable_settings(info["settings"]), wanted))
    if changed:
        return None, f"other settings ({', '.join(changed)})"
    return info, None


def install_run(collection, role, info, run_dir, flags, root=None):
    """Make `run_dir` a finished training run holding the pretrained model of `role`.

    The caller has made the run directory (keras_edd.runs.run_dirs.prepare_run_dir, which
    writes flags.json). Writes the model (sha256-checked)
    under its deployed name, and results.json: the training run's recorded results
    with this run directory and a `pretrained` record. results.json is written
    last, so an interrupted install is an unfinished run and is redone.
    Returns the results dict.
    """
    source = model_path(f"{collection}:{role}", root)
    results = copy.deepcopy(info["training_results"])
    target = os.path.join(run_dir, results["deployed_model"])
    with files.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    results["run_dir"] = os.path.abspath(run_dir)
    results["pretrained"] = {"name": f"{collection}:{role}", "sha256": info["sha256"],
                             "trained_settings": results.get("settings"),
                             "trained_precision": info.get("precision")}
    results["settings"] = flags
    files.write_json(os.path.join(run_dir, "results.json"), results)
    return results


def pretrained_source(run_dir):
    """The `collection:role` a finished run directory was installed from, else None."""
    path = os.path.join(run_dir, "results.json")
    if not os.path.isfile(path):
        return None
    try:
        record = files.read_json(path).get("pretrained")
    except (OSError, ValueError):
        return None
    return record.get("name") if isinstance(record, dict) else None


# ----------------------------------------------------------------------- writing a collection


def machine_description():
    """The CPU model, its core count and its AVX-512 features, from /proc/cpuinfo."""
    model, features = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    features = {flag for flag in value.split() if flag.startswith("avx512")}
    except OSError:
        pass
    kind = ("AVX-512 with BF16" if "avx512_bf16" in features else
            "AVX-512 without BF16" if features else "no AVX-512")
    return f"{model}, {os.cpu_count()} cores, {kind}"


def model_card(role, run_dir, *, description, file, teacher=None, fingerprint, dataset_note,
               machine):
    """The manifest entry of the deployed model of the finished training run `run_dir`.

    A run installed from a pretrained collection (install_run) keeps the entry it
    came with (the model is the same file, its sha256 checked), so writing a
    collection again changes only the models trained anew. Returns (entry, model path).
    """
    results = files.read_json(os.path.join(run_dir, "results.json"))
    path = os.path.join(run_dir, results["deployed_model"])
    source = results.get("pretrained")
    if isinstance(source, dict) and source.get("sha256") == files.sha256(path):
        collection, model = source["name"].split(":", 1)
        entry = copy.deepcopy(read_manifest(collection)["models"][model])
        if entry["sha256"] == source["sha256"]:
            return {**entry, "file": file, "role": role}, path
    recorded = copy.deepcopy(results)
    recorded.pop("run_dir", None)
    card = {
        "file": file, "sha256": files.sha256(path), "bytes": os.path.getsize(path),
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
    files.atomic_write(os.path.join(folder, MANIFEST), lambda f: f.write(text))
