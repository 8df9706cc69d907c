"""bin/reproduce's robustness stages: AutoAttack's standard evaluation and a robustness curve
of each target, each kept in the run directory so that a killed run does not redo it.

  standard            keras_edd.evaluate(attacks="standard") at L_inf `standard_eps` on the
                      first `standard_num_examples` test digits: APGD-CE, APGD-T, FAB-T,
                      Square at AutoAttack's defaults; for a model with an outlier class the
                      adaptive forms, with the thresholds at 1 % and 5 % clean false
                      detection
  robustness_curves   keras_edd.robustness_curve (FAB, FAB-T; adaptive with the outlier
                      class) on the first `curve_num_examples` test digits, robust accuracy
                      on the grid 0, eps/20, ..., 2 eps (eps = standard_eps; capped at 1),
                      which holds eps itself

A finished result is written to `<run_dir>/<stage>/<target>.json` (atomically, with the key
of what determines it: the model's weights, the digits, eps, seed, batch size); a rerun
loads it when the key matches and computes only what is missing.
"""

import os
import time

import numpy as np

from keras_edd import files
from keras_edd.evaluation.attack_cache import inputs_digest, model_fingerprint
from keras_edd.robustness import evaluate, robustness_curve

NORM = "linf"
# The curve's grid: CURVE_STEPS steps of eps / CURVE_STEPS_PER_EPS, so eps is a grid point.
CURVE_STEPS_PER_EPS = 20
CURVE_STEPS = 2 * CURVE_STEPS_PER_EPS
STAGES = ("standard", "robustness_curves")
KEY_FORMAT = 1


def curve_grid(eps):
    """0, eps / 20, ..., 2 eps (L_inf radii beyond 1 dropped): eps is exactly a grid point."""
    grid = eps * np.arange(CURVE_STEPS + 1) / CURVE_STEPS_PER_EPS
    return grid[grid <= 1.0]


def run_stages(config, dataset, targets, run_dir):
    """The standard evaluation and the robustness curve of each target ModelSpec, computed
    or loaded from `run_dir`. Returns (results sections, stage seconds): {"standard":
    {target: RobustnessResult dict}, "robustness_curves": {target: RobustnessCurve
    dict}} and, per stage, {"seconds_here", "seconds_total", "targets": {target:
    {"seconds", "reused"}}} (seconds_total adds the recorded seconds of reused results)."""
    sections, seconds = {}, {}
    attack = config.evaluation.attack
    common = dict(batch_size=attack.batch_size, seed=attack.seed, progress=config.progress)
    for stage, n in (("standard", config.standard_num_examples),
                     ("robustness_curves", config.curve_num_examples)):
        started = time.perf_counter()
        sections[stage], per_target = {}, {}
        for spec in targets:
            x, y = dataset.x_test[:n], dataset.y_test[:n]
            key = {"format": KEY_FORMAT, "stage": stage, "model": model_fingerprint(spec.model),
                   "inputs": inputs_digest(x), "labels": inputs_digest(np.asarray(y)),
                   "norm": NORM, "eps": config.standard_eps, "outlier_class": spec.outlier_class,
                   "batch_size": attack.batch_size, "seed": attack.seed}
            path = os.path.join(run_dir, stage, f"{spec.name}.json")
            result = _load(path, key)
            reused = result is not None
            if not reused:
                if config.progress:
                    print(f"{stage}: {spec.name}, {n} digits", flush=True)
                if stage == "standard":
                    result = evaluate(spec.model, x, y, eps=config.standard_eps, norm=NORM,
                                      attacks="standard", outlier_class=spec.outlier_class,
                                      **common).to_dict()
                else:
                    result = robustness_curve(spec.model, x, y, norm=NORM,
                                              eps_grid=curve_grid(config.standard_eps),
                                              outlier_class=spec.outlier_class,
                                              **common).to_dict()
                result["model"] = spec.path
                files.write_json(path, {"key": key, "result": result})
            sections[stage][spec.name] = result
            per_target[spec.name] = {"seconds": result["seconds"], "reused": reused}
        seconds[stage] = {"seconds_here": time.perf_counter() - started,
                          "seconds_total": sum(t["seconds"] for t in per_target.values()),
                          "targets": per_target}
    return sections, seconds


def _load(path, key):
    """The result saved at `path` when its key is `key`, else None (not there, or made
    with other settings or another model: computed again and overwritten)."""
    if not os.path.isfile(path):
        return None
    saved = files.read_json(path)
    return saved["result"] if isinstance(saved, dict) and saved.get("key") == key else None
