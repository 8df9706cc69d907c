#!/usr/bin/env python3
"""Write a pretrained collection (saved_models/<name>/: the models and MANIFEST.json)
from the finished training runs of a bin/reproduce command.

Give it the flags of that bin/reproduce command, plus where the collection goes:

    python tools/make_pretrained.py --collection_dir=saved_models/paper \\
        --preset=paper --data_dir=../shared/data/mnist --precision=mixed_bfloat16 \\
        --output_dir=/tmp/paper

It copies the deployed model of each of bin/reproduce's six trained models
(undefended, extended, distillation, adversarial, surrogate_U, surrogate_D) to
<collection_dir>/<role>.keras and writes MANIFEST.json (keras_edd.pretrained):
per model its role, settings, dataset with the fingerprint of its arrays, seed,
precision, clean test accuracy and detected rate, training seconds, this
machine, versions, sha256, and the training run's results. It only reads the
training runs, so it can run while the evaluation of the same command goes on.
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# Importing keras_edd.cli first quiets TensorFlow before it loads.
from keras_edd.cli import configs, flag_groups, program  # noqa: E402
from keras_edd.runs.run_config import ReproduceConfig  # noqa: E402

flag_groups.define_flags(ReproduceConfig)
_COLLECTION_DIR = flags.DEFINE_string("collection_dir", None,
                                      "The collection folder to write, e.g. saved_models/paper.")
_DATASET_NOTE = flags.DEFINE_string(
    "dataset_note", "", "What the data is, in words (e.g. which part of MNIST).")


def command(argv):
    """The bin/reproduce command these models come from: argv without this tool's flags."""
    own = ("--collection_dir", "--dataset_note")
    return " ".join(["bin/reproduce"] + [a for a in argv[1:] if not a.startswith(own)])


def main(argv):
    program.check_no_arguments(argv)
    if not _COLLECTION_DIR.value:
        raise ValueError("collection_dir: give the collection folder, e.g. saved_models/paper")
    config = configs.build(ReproduceConfig)
    config.validate()
    program.import_tensorflow()
    from keras_edd import pretrained
    from keras_edd.runs import reproduce
    manifest = reproduce.export_pretrained(config, _COLLECTION_DIR.value,
                                           command=command(sys.argv),
                                           machine=pretrained.machine_description(),
                                           dataset_note=_DATASET_NOTE.value)
    for role, card in manifest["models"].items():
        detected = card["clean_test_detected"]
        print(f"{role}: {card['file']} sha256 {card['sha256'][:12]}… clean accuracy "
              f"{card['clean_test_accuracy']:.4f}"
              f"{'' if detected is None else f', detected {detected:.4f}'}, "
              f"{card['training_seconds']:.0f} s")


if __name__ == "__main__":
    program.run_main("tools/make_pretrained.py", main)
