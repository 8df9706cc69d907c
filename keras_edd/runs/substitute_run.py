"""Surrogate J inside an evaluation run: train it against one target, or reload it.

Surrogate J is the black-box attacker's own model (keras_edd.evaluation.substitute,
Papernot et al. 2017): a substitute of the targets' family trained from
S_0 = the LAST `initial` test inputs, labelled only by the target's argmax
(`substitute.label_oracle`), with Jacobian-based augmentation. S_0 never
overlaps the first `num_examples` test inputs, the ones that are attacked; a
run where they would overlap is refused. A target with an outlier class n
answers n like any other label, so J then has n + 1 outputs and gets plain and
adaptive attacks like the other surrogates. J imitates one target, so its
attacks are scored on that target only (ModelSpec.only_target).

Files, under the evaluation run directory (written atomically, report last):
  substitutes/<name>/substitute.keras         J itself
  substitutes/<name>/substitute_report.json   the training report, its settings
                                              and the target's sha256
A rerun reloads J when the report's settings and target match, so a killed run
resumes without retraining it. J is always used as loaded from its file, so a
fresh and a reloaded J are the same model (and share their attack crafts).
"""

import dataclasses
import os
import time

import numpy as np

from keras_edd import data as data_lib
from keras_edd import files, models
from keras_edd.evaluation import substitute
from keras_edd.models import load_model_spec
from keras_edd.runs import run_dirs

SUBSTITUTES_DIR = "substitutes"
MODEL_FILE = "substitute.keras"
REPORT_FILE = "substitute_report.json"


def initial_indices(test_size, num_examples, initial):
    """The test indices of S_0: the last `initial`, disjoint from the first `num_examples`.

    Raises a one-line ValueError when they would overlap.
    """
    if num_examples + initial > test_size:
        raise ValueError(
            f"surrogate J: num_examples={num_examples} attacked test inputs plus "
            f"substitute_initial={initial} inputs of S_0 exceed the {test_size} test inputs "
            "(S_0 must not overlap the attacked ones); lower one of them or use more test inputs")
    return np.arange(test_size - initial, test_size)


def check_test_size(dataset, num_examples, settings, run_dir):
    """initial_indices' refusal, before anything is written; the run folder's own
    errors (run_dirs.check_writable_dir) come first, as they would without J."""
    run_dirs.check_writable_dir(run_dir, "run directory")
    initial_indices(len(dataset.y_test), num_examples, settings.initial)


def substitute_dir(run_dir, name):
    return os.path.join(run_dir, SUBSTITUTES_DIR, name)


def jacobian_surrogate(name, target, dataset, settings, *, seed, num_examples, run_dir,
                       progress=False):
    """Surrogate J against `target`: trained (and saved) or reloaded from `run_dir`.

    Args:
      name: J's model name in the results, e.g. "J" or "J_extended".
      target: the target's ModelSpec, the oracle.
      dataset: the keras_edd.data.Dataset of the evaluation.
      settings: a config.SubstituteConfig.
      seed: J's seed (initialisation, dropout, data order).
      num_examples: the first test inputs the evaluation attacks.
      run_dir: the evaluation run directory.
    Returns:
      (spec, record): J's ModelSpec, scored only on `target`, and the fields of
      results.json's models[name] that describe J (see `describe`).
    """
    indices = initial_indices(len(dataset.y_test), num_examples, settings.initial)
    folder = substitute_dir(run_dir, name)
    model_path = os.path.join(folder, MODEL_FILE)
    report_path = os.path.join(folder, REPORT_FILE)
    x_test = data_lib.to_float(dataset.x_test)
    target_labels = models.predict_logits(target.model, x_test).argmax(axis=1)
    wanted = {**settings.to_dict(), "seed": int(seed), "oracle": target.name,
              "oracle_sha256": target.describe()["sha256"],
              "initial_test_indices": [int(i) for i in indices]}
    report = _reusable_report(report_path, model_path, wanted)
    t = time.perf_counter()
    if report is None:
        if progress:
            print(f"training surrogate {name} against {target.name}: S_0 = test inputs "
                  f"{indices[0]}..{indices[-1]}, rounds={settings.rounds}", flush=True)
        attacked = min(num_examples, len(x_test))
        model, report = substitute.train_jacobian_substitute(
            substitute.label_oracle(target.model), x_test[indices],
            num_classes=target.num_classes, input_shape=dataset.input_shape,
            outlier_class=target.outlier_class, rounds=settings.rounds, lam=settings.lam,
            tau=settings.resolved_tau, epochs_per_round=settings.epochs_per_round,
            batch_size=settings.batch_size, seed=seed,
            agreement_data=(x_test[:attacked], target_labels[:attacked]), progress=progress)
        report["settings"] = wanted
        files.save_model(model, model_path)
        files.write_json(report_path, report)  # last: its presence means J is finished
        reused = False
    else:
        reused = True
        if progress:
            print(f"reusing surrogate {name}: {model_path}", flush=True)
    spec = dataclasses.replace(load_model_spec(name, model_path, dataset),
                               only_target=target.name)
    predictions = models.predict_logits(spec.model, x_test).argmax(axis=1)
    record = describe(report, predictions, target_labels, indices, num_examples,
                      reused=reused, seconds_here=time.perf_counter() - t)
    return spec, record


def _reusable_report(report_path, model_path, wanted):
    """The saved report if J was finished with exactly these settings and target."""
    if not (os.path.exists(report_path) and os.path.exists(model_path)):
        return None
    try:
        report = files.read_json(report_path)
    except ValueError:
        return None
    return report if report.get("settings") == wanted else None


def describe(report, predictions, target_labels, indices, num_examples, *, reused,
             seconds_here):
    """results.json's models[J] fields: what J is, what it cost and how often it agrees.

    agreement_attacked: on the first `num_examples` test inputs (those attacked);
    agreement_test: on the whole test set minus S_0 (both: the fraction of inputs
    where J's argmax equals the target's). `predictions`, `target_labels`: J's
    and the target's labels of every test input.
    """
    held_out = np.ones(len(target_labels), bool)
    held_out[indices] = False
    n = min(num_examples, len(target_labels))
    record = {"kind": "jacobian_substitute", "oracle": report["settings"]["oracle"],
              "initial_test_indices": report["settings"]["initial_test_indices"],
              "oracle_queries": report["oracle_queries"], "set_sizes": report["set_sizes"],
              "outlier_answers": report.get("outlier_answers"),
              "duplicates_dropped": report["duplicates_dropped"],
              "per_round": report["per_round"],
              "settings": {key: report[key] for key in (
                  "initial_size", "rounds", "lam", "tau", "epochs_per_round", "batch_size",
                  "learning_rate", "seed")},
              "training_seconds": report["wall_seconds"], "reused": reused,
              "seconds_here": seconds_here,
              "agreement_attacked": substitute.agreement(predictions[:n],
                                                         target_labels[:n]),
              "agreement_test": substitute.agreement(predictions[held_out],
                                                     target_labels[held_out]),
              "agreement_test_count": int(held_out.sum())}
    return record



def add_to_results(results, records):
    """Merge each J's record into results["models"][name] and add the stage
    "substitutes" to results["stage_seconds"] (seconds_total counts a reloaded
    J at its recorded training seconds)."""
    for name, record in records.items():
        results["models"][name].update(record)
    if records:
        results["stage_seconds"]["substitutes"] = {
            "seconds_here": sum(r["seconds_here"] for r in records.values()),
            "seconds_total": sum(r["seconds_here"] + (r["training_seconds"] if r["reused"]
                                                      else 0.0) for r in records.values())}
    return results
