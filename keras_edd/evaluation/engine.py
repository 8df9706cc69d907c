"""The evaluation engine: white-box and black-box runs, sweeps and sanity checks.

The rates themselves (recovered / detected / misclassified, filtered and
unfiltered) are keras_edd.evaluation.metrics; the attacks and their settings come from
keras_edd.attack_registry. Attacks are built from the first `num_examples`
test inputs (fewer for slow attacks, see EvalConfig.max_examples).

Settings.
  white-box:  the attack is computed on the target itself, with y = the
              model's own prediction (no label leaking). "plain" ignores the
              outlier class (outlier_class=None: untargeted attacks may land in
              it, and JSMA draws its random target from all n + 1 outputs);
              "adaptive" (only for models with n + 1 logits) sets outlier_class,
              so untargeted attacks avoid it and JSMA targets real classes only.
  black-box:  the attack is computed on a surrogate of the same architecture
              trained on the same data (U: undefended; D: extended distillation,
              e.g. distilled from U) and the result is scored on the target.
  sweeps:     each attack over a range of budgets (FGSM/PGD eps, JSMA Gamma, CW
              kappa). The best success (1 - recovered) must reach about 100 %;
              if it stays below `masking_threshold` the sweep is flagged as
              possible gradient masking.
Every model also gets the sanity checks of `keras_edd.attacks.checks`
(probabilities instead of logits, fraction of exactly-zero input gradients,
stochasticity at attack time).

Also per entry: `attack_failed` (in "filtered" and "unfiltered"), the fraction
of attacked inputs for which the attack found no example meeting its own
success criterion on the model it ran on (attack_registry.attack_succeeded), so
a reader sees how much of "recovered" is the attack giving up. Confirmation by
stronger attacks: where a gradient attack's white-box success stays below
`masking_threshold` but a reference attack's (Square, gradient-free; APGD) reaches
it on the same target and variant, a gradient-masking warning
(`gradient_free_masking`). Detection: for targets with an outlier class, the ROC of
its scores, clean inputs against each entry's adversarial ones
(keras_edd.evaluation.detection; results["detection"]). Per target and threat model,
the worst case per digit over every attack ("any attack", results["worst_case"]) and
the accuracy at a fixed clean false-detection rate (results["at_fixed_fpr"]), see
keras_edd.evaluation.worst_case.

`evaluate_models` does the work for the binaries' runs (keras_edd.runs.eval_run) and
for keras_edd.runs.reproduce, stage by stage: clean rates and checks, white-box,
black-box, sweeps, detection and worst case. The crafts are keras_edd.evaluation.crafting, the
entries, checks, sweeps and masking verdicts keras_edd.evaluation.scoring. This
module never trains: surrogate J, the one model an evaluation run makes itself,
comes from keras_edd.runs.substitute_run.
"""

import time

from keras_edd import config as config_lib
from keras_edd import data as data_lib
from keras_edd import formatting
from keras_edd.attacks import checks
from keras_edd.evaluation import detection, worst_case
from keras_edd.evaluation.metrics import FILTER_STATEMENT, clean_rates
from keras_edd.evaluation.scoring import Evaluation, gradient_free_masking


def evaluate_models(dataset, targets, surrogates=(), config=None, *, progress=False,
                    cache_dir=None, whitebox=True, distribution=None):
    """Run every evaluation of `config` and collect the numbers.

    Args:
      dataset: a keras_edd.data.Dataset (the test split is attacked).
      targets: ModelSpecs attacked white-box (and scored in black-box runs).
      surrogates: ModelSpecs the black-box attacks are computed on, each scored
        on every target, or only on its `only_target` when set (surrogate J).
      config: an EvalConfig.
      progress: print one line per attack and show a progress bar per craft
        (on a terminal only, see keras_edd.progress).
      cache_dir: keep every craft there (keras_edd.evaluation.attack_cache), so that a
        rerun after a kill computes only the crafts that were missing.
      whitebox: run the white-box attacks on the targets (False: black-box only).
      distribution: a multi-worker keras_edd.distribute.Distribution splits every
        craft across the workers (keras_edd.evaluation.crafting); each worker returns
        the same numbers as one process (the x_adv of an attack split input by input,
        CW with early_exit="sample", to float32 rounding), and only the chief should pass a
        `cache_dir` in the user's folders.
    Returns:
      (results, images): results is a JSON-ready dict ("models", "evaluations",
      "sweeps", "warnings", "stage_seconds", "crafts", ...); images maps
      "<source>/<attack>_<variant>" to a dict for TensorBoard's image grids: the first
      `image_examples` inputs ("clean", "adversarial", true "labels") and the labels
      the first target scored on them ("model", "outlier_class") predicts on each
      ("clean_predictions", "adversarial_predictions").
    """
    config = (config or config_lib.EvalConfig()).validate()
    _check_names(targets, surrogates)
    ev = Evaluation(dataset, config, progress, cache_dir, distribution)
    wall = {}
    t = time.perf_counter()
    models, test_logits, warnings_found = _clean_and_checks(ev, dataset, targets, surrogates)
    wall["clean_and_checks"] = time.perf_counter() - t
    t = time.perf_counter()
    ev.crafting.stage = "whitebox"
    entries = _attack_entries(ev, "whitebox", targets if whitebox else (), lambda spec: [spec])
    wall["whitebox"] = time.perf_counter() - t
    t = time.perf_counter()
    ev.crafting.stage = "blackbox"
    entries += _attack_entries(ev, "blackbox", surrogates,
                               lambda source: scored_targets(source, targets))
    wall["blackbox"] = time.perf_counter() - t
    t = time.perf_counter()
    ev.crafting.stage = "sweeps"
    sweeps, sweep_warnings = _sweeps(ev, targets)
    warnings_found += sweep_warnings
    wall["sweeps"] = time.perf_counter() - t
    warnings_found += gradient_free_masking(entries, config.masking_threshold,
                                            config.masking_min_inputs)
    t = time.perf_counter()
    clean_logits = {spec.name: ev.clean_logits_of(spec) for spec in targets}
    detection_results = detection.detection_results(
        targets, {spec.name: clean_logits[spec.name] for spec in targets
                  if spec.outlier_class is not None},
        ev.y, ev.adversarial_logits, num_examples=config.num_examples)
    worst = worst_case.worst_case_rows(targets, clean_logits, ev.y, ev.adversarial_logits)
    at_fixed_fpr = worst_case.fixed_fpr_results(targets, test_logits, dataset.y_test,
                                                clean_logits, ev.y, ev.adversarial_logits)
    wall["detection"] = time.perf_counter() - t
    results = {"filter": FILTER_STATEMENT, "models": models, "evaluations": entries,
               "sweeps": sweeps, "warnings": warnings_found,
               "num_examples": _example_counts(ev, targets, surrogates),
               "detection": detection_results, "worst_case": worst,
               "at_fixed_fpr": at_fixed_fpr, "evaluation_settings": config.to_dict(),
               "stage_seconds": _stage_seconds(wall, ev.crafting),
               "crafts": {origin: ev.crafting.craft_counts[origin]
                          for origin in ("computed", "loaded", "prefix", "memory")}}
    return results, ev.images


def _check_names(targets, surrogates):
    """Model names are unique, and a surrogate scored on one target names a target."""
    names = [s.name for s in list(targets) + list(surrogates)]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    target_names = [s.name for s in targets]
    for source in surrogates:
        if source.only_target is not None and source.only_target not in target_names:
            raise ValueError(f"surrogate {source.name} is scored only on target "
                             f"{source.only_target!r}, which is not among {target_names}")


def _clean_and_checks(ev, dataset, targets, surrogates):
    """Per model its clean rates (test set, attacked inputs) and sanity checks; returns
    (results["models"], name -> its logits on the whole test set, the warnings the
    checks raise)."""
    config = ev.config
    warnings_found = []
    models, test_logits = {}, {}
    for spec in list(targets) + list(surrogates):
        role = "target" if spec.name in {s.name for s in targets} else "surrogate"
        test_logits[spec.name] = ev.logits(spec, data_lib.to_float(dataset.x_test))
        predictions = test_logits[spec.name].argmax(axis=1)
        models[spec.name] = {
            "role": role, **spec.describe(),
            "clean_test_set": clean_rates(predictions, dataset.y_test,
                                          outlier_class=spec.outlier_class),
            "clean_attacked": clean_rates(ev.clean(spec)[:config.num_examples],
                                          ev.y[:config.num_examples],
                                          outlier_class=spec.outlier_class),
            "checks": ev.checks(spec)}
        warnings_found += checks.check_warnings(spec.name, models[spec.name]["checks"])
    return models, test_logits, warnings_found


def _attack_entries(ev, setting, sources, scored_on):
    """Every attack and variant computed on each source and scored on each model of
    scored_on(source): the source itself (white-box) or the targets (black-box)."""
    config = ev.config
    entries = []
    for source in sources:
        ev.log(f"white-box on {source.name}" if setting == "whitebox"
               else f"black-box from {source.name}")
        for attack in config.attacks:
            for variant in source.variants(config.adaptive):
                for target in scored_on(source):
                    entries.append(ev.entry(setting, source, target, attack, variant,
                                            ev.count(attack, source)))
                    ev.log(formatting.result_line(entries[-1]))  # as soon as it is known
    return entries


def _sweeps(ev, targets):
    """The budget sweeps on each target; returns (sweeps, their gradient-masking warnings)."""
    config = ev.config
    sweeps, warnings_found = [], []
    for spec in targets:
        if config.resolved_sweep_attacks:
            ev.log(f"sweeps on {spec.name}")
        for attack in config.resolved_sweep_attacks:
            for variant in spec.variants(config.adaptive):
                sweep = ev.sweep(spec, attack, variant)
                sweeps.append(sweep)
                if sweep["masking_suspected"]:
                    warnings_found.append(
                        f"{spec.name}: {attack} ({variant}) success reaches only "
                        f"{sweep['max_success']:.1%} of {sweep['max_success_count']} over "
                        f"{sweep['parameter']} in {[p['value'] for p in sweep['points']]} (95 % "
                        f"upper bound {sweep['max_success_upper']:.1%}, threshold "
                        f"{config.masking_threshold:.0%}): possible gradient masking")
                elif sweep["masking_suspected"] is None:
                    warnings_found.append(
                        f"{spec.name}: {attack} ({variant}) sweep has "
                        f"{sweep['max_success_count']} correctly classified inputs (fewer than "
                        f"{config.masking_min_inputs}); masking not checked")
    return sweeps, warnings_found


def _example_counts(ev, targets, surrogates):
    """results["num_examples"]: the inputs each attack gets (and, when some models are
    `extra`, what they get under the extra cap)."""
    config = ev.config
    counts = {a: ev.count(a) for a in config.attacks}
    if any(s.extra for s in list(targets) + list(surrogates)):
        counts["extra_models"] = {a: min(config.examples_for(a, extra=True), len(ev.y))
                                  for a in config.attacks}
    return counts


def scored_targets(source, targets):
    """The targets a surrogate's attacks are scored on: all, or its `only_target`."""
    return [t for t in targets if source.only_target in (None, t.name)]


def _stage_seconds(wall, crafting):
    """Per stage: `seconds_here`, the wall time of this call, and `seconds_total`,
    which adds the recorded seconds of the crafts loaded from an earlier, killed
    run (what an uninterrupted run would have spent, about). `attacks`: the
    crafting alone, summed over the stages."""
    out = {"clean_and_checks": {"seconds_here": wall["clean_and_checks"],
                                "seconds_total": wall["clean_and_checks"]}}
    for stage in ("whitebox", "blackbox", "sweeps"):
        out[stage] = {"seconds_here": wall[stage],
                      "seconds_total": wall[stage] + crafting.loaded_seconds[stage]}
    out["detection"] = {"seconds_here": wall["detection"], "seconds_total": wall["detection"]}
    here = sum(crafting.computed_seconds.values())
    out["attacks"] = {"seconds_here": here,
                      "seconds_total": here + sum(crafting.loaded_seconds.values())}
    return out
