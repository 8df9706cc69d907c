#!/usr/bin/env python3
"""Add the deployed model of one finished bin/train run to a pretrained collection.

    python tools/add_pretrained.py --collection_dir=saved_models/paper \\
        --role=extended_s4 --run_dir=/work/seeds/extended-s4 --teacher=undefended_s4 \\
        --data_dir=../shared/data/mnist --description="f^d, seed 4"

The model is copied to <collection_dir>/<role>.keras and its MANIFEST.json entry
(keras_edd.pretrained.model_card: settings, dataset fingerprint, seed, precision, clean
accuracy, training seconds, machine, sha256) is added; the other entries are kept as they
are. The run's dataset must be the collection's (same fingerprint). Used for the extra
training seeds of the paper collection (tools/seed_runs.sh).
"""

import os
import shutil
import sys

from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_COLLECTION_DIR = flags.DEFINE_string("collection_dir", "saved_models/paper",
                                      "The collection folder, e.g. saved_models/paper.")
_ROLE = flags.DEFINE_string("role", None, "The model's name in the collection.")
_RUN_DIR = flags.DEFINE_string("run_dir", None, "The finished bin/train run directory.")
_TEACHER = flags.DEFINE_string("teacher", None, "Role of its teacher in the collection.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The data the run was trained on.")
_DESCRIPTION = flags.DEFINE_string("description", "", "One line: what the model is.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    from keras_edd import data, files, pretrained

    role, folder = _ROLE.value, _COLLECTION_DIR.value
    if not role or not role.replace("_", "").isalnum():
        raise app.UsageError(f"--role={role!r}: give a name of letters, digits and _")
    manifest = pretrained.read_manifest(os.path.basename(folder),
                                        root=os.path.dirname(os.path.abspath(folder)))
    models = manifest["models"]
    if _TEACHER.value is not None and _TEACHER.value not in models:
        raise app.UsageError(f"--teacher={_TEACHER.value!r}: not in {folder} "
                             f"({', '.join(models)})")
    reference = next(iter(models.values()))["dataset"]
    dataset = data.load_dataset(reference["name"], data_dir=_DATA_DIR.value,
                                allow_download=False)
    fingerprint = pretrained.data_fingerprint(dataset)
    if fingerprint != reference["fingerprint"]:
        raise app.UsageError(f"--data_dir={_DATA_DIR.value!r}: not the data of {folder} "
                             "(its fingerprint differs)")
    card, path = pretrained.model_card(
        role, _RUN_DIR.value, description=_DESCRIPTION.value, file=f"{role}.keras",
        teacher=_TEACHER.value, fingerprint=fingerprint, dataset_note=reference["note"],
        machine=pretrained.machine_description())
    with files.atomic_path(os.path.join(folder, f"{role}.keras")) as tmp:
        shutil.copyfile(path, tmp)
    models[role] = card
    pretrained.write_manifest(folder, manifest)
    print(f"{role}: {card['file']} sha256 {card['sha256'][:12]}… clean accuracy "
          f"{card['clean_test_accuracy']:.4f}, {card['training_seconds']:.0f} s")


if __name__ == "__main__":
    app.run(main)
