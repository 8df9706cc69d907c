"""The evaluation engine: white-box and black-box runs, sweeps and sanity checks.

The rates themselves (recovered / detected / misclassified, filtered and
unfiltered) are keras_edd.evaluation.metrics; the attacks and their settings come from
keras_edd.evaluation.attack_registry. Attacks are built from the first `num_examples`
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
a reader sees how much of "recovered" is the attack giving up. Gradient-free
confirmation: where a gradient attack's white-box success stays below
`masking_threshold` but Square's reaches it on the same target and variant, a
gradient-masking warning (`gradient_free_masking`). Detection: for targets with
an outlier class, the ROC of its scores, clean inputs against each entry's
adversarial ones (keras_edd.evaluation.detection; results["detection"]).

`evaluate_models` does the work for the binaries' runs (keras_edd.runs.eval_run) and
for keras_edd.runs.reproduce. This module never trains: surrogate J, the one model an
evaluation run makes itself, comes from keras_edd.runs.substitute_run.
"""

import collections
import dataclasses
import time

import numpy as np

from keras_edd import config as config_lib
from keras_edd import data as data_lib
from keras_edd import progress as progress_lib
from keras_edd.evaluation import attack_cache, attack_registry, detection
from keras_edd.reporting import results_files
from keras_edd.evaluation.metrics import (FILTER_STATEMENT, attack_rates, clean_rates, failure_rate,
                               logit_statistics, norm_summary, success_rate,
                               success_upper_bound)
from keras_edd.models import ModelSpec, load_model_spec, model_label  # noqa: F401  (re-export)


class _Evaluation:
    """State of one evaluation: the attacked inputs, the crafts and predictions."""

    def __init__(self, dataset, config, progress, cache_dir=None, distribution=None):
        self.dataset = dataset
        self.distribution = distribution
        self.config = config
        self.progress = progress
        needed = max([config.num_examples, config.check_examples]
                     + [min(config.sweep_num_examples, config.examples_for(a))
                        for a in config.resolved_sweep_attacks])
        needed = min(needed, len(dataset.y_test))
        self.x = data_lib.to_float(dataset.x_test[:needed])
        self.y = np.asarray(dataset.y_test[:needed])
        self.crafts = attack_cache.CraftCache(cache_dir)
        self.details = {}  # (craft key digest, n) -> the per-sample fields it reported
        self.clean_logits = {}
        self.adversarial_logits = {}  # main entries on outlier models, for detection
        self.images = {}
        self.stage = None
        # Seconds of crafting computed here, and the recorded seconds of crafts
        # loaded from the run directory, per stage; crafts counted by origin.
        self.computed_seconds = collections.Counter()
        self.loaded_seconds = collections.Counter()
        self.craft_counts = collections.Counter()

    def log(self, message):
        if self.progress:
            print(message, flush=True)

    def count(self, attack, source=None):
        """Inputs `attack` gets when computed on `source` (None: a model not `extra`)."""
        extra = source is not None and source.extra
        return min(self.config.examples_for(attack, extra=extra), len(self.y))

    def logits(self, spec, x):
        from keras_edd.defense import training
        return training.predict_logits(spec.model, x)

    def predict(self, spec, x):
        return self.logits(spec, x).argmax(axis=1)

    def clean_logits_of(self, spec):
        if spec.name not in self.clean_logits:
            self.clean_logits[spec.name] = self.logits(spec, self.x)
        return self.clean_logits[spec.name]

    def clean(self, spec):
        return self.clean_logits_of(spec).argmax(axis=1)

    def crafted(self, source, attack, variant, n, budget=None):
        """(craft key, params, outlier_class the attack is told, variant) of one craft."""
        settings = self.config.attack
        params = attack_registry.attack_params(attack, settings, budget)
        outlier_class = source.attack_outlier_class(variant)
        if attack_registry.get(attack).real_targets:
            # A targeted attack (JSMA) aims at a real class, never at the outlier
            # ("detected") class, so its plain and adaptive variants coincide.
            outlier_class = source.outlier_class
            variant = "plain"
        key = attack_cache.craft_key(
            self.crafts.model_id(source.model), attack, attack_registry.get(attack).function,
            params, variant=variant, outlier_class=outlier_class,
            chunk=attack_registry.chunk_size(attack, settings.batch_size), seed=settings.seed)
        return key, params, outlier_class, variant

    def adversarial(self, source, attack, variant, n, budget=None):
        """(x_adv, params, seconds) for the first n inputs, attacked on `source`.

        A craft made before (in this run, by the interrupted run whose directory
        this is, or as the first inputs of a longer craft) is not computed again;
        see keras_edd.evaluation.attack_cache.
        """
        settings = self.config.attack
        key, params, outlier_class, variant = self.crafted(source, attack, variant, n, budget)
        craft = self.crafts.get(key, self.x, n)
        what = (f"{attack} ({variant}) on {source.name}, {n} inputs, "
                f"{results_files.format_params(params)}")
        if self.distribution is not None and self.distribution.num_workers > 1:
            craft = self.shared_craft(craft, key, source, attack, params, outlier_class, n)
            if craft.origin == "computed":
                self.computed_seconds[self.stage] += craft.seconds
            elif craft.origin == "loaded":
                self.loaded_seconds[self.stage] += craft.seconds
        elif craft is None:
            details = {}
            t = time.perf_counter()
            with progress_lib.bar(total=n, desc=f"{attack} ({variant}) on {source.name}",
                                  progress=self.progress, unit="input") as bar:
                x_adv = attack_registry.craft(source.model, attack, self.x[:n], params,
                                              outlier_class=outlier_class,
                                              batch_size=settings.batch_size, seed=settings.seed,
                                              on_chunk=bar.update, details=details)
            craft = self.crafts.put(key, self.x, n, x_adv, time.perf_counter() - t, details)
            self.computed_seconds[self.stage] += craft.seconds
        elif craft.origin == "loaded":
            self.loaded_seconds[self.stage] += craft.seconds
        self.craft_counts[craft.origin] += 1
        self.details[(attack_cache.key_digest(key), n)] = craft.details
        if craft.origin != "memory":
            self.log(f"  {what}: {craft.seconds:.1f}s"
                     + ("" if craft.origin == "computed" else f" ({craft.origin})"))
        return craft.x_adv, params, craft.seconds

    def shared_craft(self, craft, key, source, attack, params, outlier_class, n):
        """The craft of x[:n] on every worker of a multi-worker run.

        If the chief has it (from its run directory or memory), it is broadcast.
        Otherwise each worker attacks its contiguous shard of whole chunks, with the
        chunk seeds of a single-process run (seed + the chunk's first index), or,
        for an attack that is per input at these params (CW with early_exit="sample",
        attack_registry.shard_align), its shard of single inputs, and the shards
        (x_adv and the per-input details) are merged exactly; the chief keeps the
        result in its run directory under the single-process key.
        """
        dist = self.distribution
        settings = self.config.attack
        shape = (n,) + self.x.shape[1:]
        if dist.agree(craft is not None):
            meta = dist.broadcast_json({"seconds": craft.seconds, "origin": craft.origin,
                                        "details": _schema(craft.details)}
                                       if dist.is_chief else None)
            x_adv = dist.broadcast(craft.x_adv if dist.is_chief else np.zeros(shape, np.float32))
            details = {name: dist.broadcast(craft.details[name] if dist.is_chief else
                                            np.zeros((n, *trailing), dtype))
                       for name, (trailing, dtype) in meta["details"].items()}
            if dist.is_chief:
                return craft
            shared = self.crafts.put(key, self.x, n, x_adv, meta["seconds"], details)
            return dataclasses.replace(shared, origin=meta["origin"])
        t = time.perf_counter()
        start, stop = dist.shard(n, align=attack_registry.shard_align(
            attack, params, settings.batch_size))
        part_details = {}
        x_adv = np.zeros(shape, np.float32)
        if stop > start:
            with progress_lib.bar(total=stop - start, desc=f"{attack} on {source.name} "
                                  f"[{start}:{stop}]", progress=self.progress,
                                  unit="input") as bar:
                x_adv[start:stop] = attack_registry.craft(
                    source.model, attack, self.x[start:stop], params,
                    outlier_class=outlier_class, batch_size=settings.batch_size,
                    seed=settings.seed + start, on_chunk=bar.update, details=part_details)
        # The chief's shard is never empty (n >= 1): its details name the fields.
        schema = dist.broadcast_json(_schema(part_details) if dist.is_chief else None)
        details = {}
        for name, (trailing, dtype) in schema.items():
            full = np.zeros((n, *trailing), dtype)
            if stop > start:
                full[start:stop] = part_details[name]
            details[name] = dist.merge(full)
        x_adv = dist.merge(x_adv)
        return self.crafts.put(key, self.x, n, x_adv, time.perf_counter() - t, details)

    def keep_images(self, source, target, attack, variant, x_adv, target_logits):
        """Keep the first inputs of a craft, clean and adversarial, with the labels the
        (first) target scored on them predicts: one TensorBoard grid per craft."""
        k = min(self.config.image_examples, len(x_adv))
        # A targeted attack's plain and adaptive variants are one craft (see `crafted`).
        shown = "plain" if attack_registry.get(attack).real_targets else variant
        tag = f"{source.name}/{attack}_{shown}"
        if k and tag not in self.images:
            self.images[tag] = {
                "clean": self.x[:k], "adversarial": x_adv[:k], "labels": self.y[:k],
                "model": target.name, "outlier_class": target.outlier_class,
                "clean_predictions": self.clean(target)[:k],
                "adversarial_predictions": target_logits[:k].argmax(axis=1)}

    def attack_failed(self, source, attack, variant, n, budget, source_logits, correct):
        """attack_failed over the filtered and all inputs: the attack's own criterion
        (attack_registry.attack_succeeded) judged on the source's logits at x_adv."""
        key, params, outlier_class, _ = self.crafted(source, attack, variant, n, budget)
        succeeded = attack_registry.attack_succeeded(
            attack, params, source_logits, self.clean_logits_of(source)[:n],
            outlier_class=outlier_class,
            details=self.details.get((attack_cache.key_digest(key), n)))
        return failure_rate(succeeded, correct), failure_rate(succeeded)

    def entry(self, setting, source, target, attack, variant, n, budget=None):
        x_adv, params, seconds = self.adversarial(source, attack, variant, n, budget)
        y = self.y[:n]
        target_logits = self.logits(target, x_adv)
        if budget is None:
            self.keep_images(source, target, attack, variant, x_adv, target_logits)
        rates = attack_rates(target_logits.argmax(axis=1), self.clean(target)[:n], y,
                             outlier_class=target.outlier_class)
        source_logits = target_logits if source is target else self.logits(source, x_adv)
        correct = self.clean(target)[:n] == y
        rates["filtered"]["attack_failed"], rates["unfiltered"]["attack_failed"] = \
            self.attack_failed(source, attack, variant, n, budget, source_logits, correct)
        if budget is None and target.outlier_class is not None:
            self.adversarial_logits[(setting, target.name, source.name, attack, variant)] = \
                (target_logits, n)
        name, value = attack_registry.budget_of(attack, params)
        result = {"setting": setting, "target": target.name, "source": source.name,
                  "attack": attack, "variant": variant, "params": params,
                  "parameter": name, "value": value, "num_examples": n,
                  **rates, "success": success_rate(rates["filtered"]),
                  "norms": norm_summary(self.x[:n], x_adv), "attack_seconds": seconds}
        if setting == "blackbox":
            result["source_rates"] = attack_rates(
                source_logits.argmax(axis=1), self.clean(source)[:n], y,
                outlier_class=source.outlier_class)
        return result

    def checks(self, spec):
        """Gradient-masking / logits / stochasticity checks on a few clean inputs."""
        from keras_edd import attacks
        x = self.x[:self.config.check_examples]
        result = attacks.run_all_checks(spec.model, x, action="ignore")
        result = {k: (bool(v) if isinstance(v, (bool, np.bool_)) else float(v))
                  for k, v in result.items()}
        if spec.outlier_class is not None:
            result["zero_gradient_fraction_adaptive"] = float(attacks.zero_gradient_fraction(
                spec.model, x, outlier_class=spec.outlier_class))
        result["logits"] = logit_statistics(spec.model, x)
        result["num_examples"] = int(len(x))
        return result

    def sweep(self, spec, attack, variant):
        parameter = attack_registry.get(attack).sweep_name
        values = self.config.sweep_values(attack)
        n = min(self.config.sweep_num_examples, self.count(attack, spec))
        points = []
        for value in values:
            e = self.entry("whitebox", spec, spec, attack, variant, n, budget=value)
            points.append({"value": float(value), "filtered": e["filtered"],
                           "unfiltered": e["unfiltered"], "success": e["success"],
                           "norms": e["norms"], "attack_seconds": e["attack_seconds"]})
        best = masking_verdict([p["filtered"] for p in points], self.config)
        return {"target": spec.name, "attack": attack, "variant": variant,
                "parameter": parameter, "num_examples": n, "points": points, **best}


def masking_verdict(rates, config):
    """The best of several filtered rates and whether it suggests gradient masking.

    Returns max_success, its count of correctly classified inputs, its 95 % upper
    bound (metrics.success_upper_bound) and masking_suspected: None (not checked)
    without at least config.masking_min_inputs inputs, else True when even the upper
    bound stays below config.masking_threshold.
    """
    scored = [r for r in rates if success_rate(r) is not None]
    if not scored:
        return {"max_success": None, "max_success_count": 0, "max_success_upper": None,
                "masking_suspected": None}
    best = max(scored, key=success_rate)
    upper = success_upper_bound(best)
    checked = best["count"] >= config.masking_min_inputs
    return {"max_success": success_rate(best), "max_success_count": best["count"],
            "max_success_upper": upper,
            "masking_suspected": (upper < config.masking_threshold) if checked else None}


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
        craft across the workers (`_Evaluation.shared_craft`); each worker returns
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
    names = [s.name for s in list(targets) + list(surrogates)]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    target_names = [s.name for s in targets]
    for source in surrogates:
        if source.only_target is not None and source.only_target not in target_names:
            raise ValueError(f"surrogate {source.name} is scored only on target "
                             f"{source.only_target!r}, which is not among {target_names}")
    ev = _Evaluation(dataset, config, progress, cache_dir, distribution)
    t_start = time.perf_counter()
    wall = {}
    warnings_found = []
    models = {}
    for spec in list(targets) + list(surrogates):
        role = "target" if spec.name in {s.name for s in targets} else "surrogate"
        predictions = ev.predict(spec, data_lib.to_float(dataset.x_test))
        models[spec.name] = {
            "role": role, **spec.describe(),
            "clean_test_set": clean_rates(predictions, dataset.y_test,
                                          outlier_class=spec.outlier_class),
            "clean_attacked": clean_rates(ev.clean(spec)[:config.num_examples],
                                          ev.y[:config.num_examples],
                                          outlier_class=spec.outlier_class),
            "checks": ev.checks(spec)}
        checks = models[spec.name]["checks"]
        if checks["probabilities"]:
            warnings_found.append(f"{spec.name}: outputs look like probabilities, not logits")
        if checks["stochastic"]:
            warnings_found.append(f"{spec.name}: outputs differ between calls (dropout on?)")
        for key in ("zero_gradient_fraction", "zero_gradient_fraction_adaptive"):
            if checks.get(key, 0.0) > 0.5:
                warnings_found.append(f"{spec.name}: {checks[key]:.1%} of input gradients are "
                                      f"exactly zero ({key}): likely gradient masking")
    wall["clean_and_checks"] = time.perf_counter() - t_start

    entries = []
    t = time.perf_counter()
    ev.stage = "whitebox"
    for spec in (targets if whitebox else ()):
        ev.log(f"white-box on {spec.name}")
        for attack in config.attacks:
            for variant in spec.variants(config.adaptive):
                entries.append(ev.entry("whitebox", spec, spec, attack, variant,
                                        ev.count(attack, spec)))
    wall["whitebox"] = time.perf_counter() - t
    t = time.perf_counter()
    ev.stage = "blackbox"
    for source in surrogates:
        ev.log(f"black-box from {source.name}")
        for attack in config.attacks:
            for variant in source.variants(config.adaptive):
                for target in scored_targets(source, targets):
                    entries.append(ev.entry("blackbox", source, target, attack, variant,
                                            ev.count(attack, source)))
    wall["blackbox"] = time.perf_counter() - t
    t = time.perf_counter()
    ev.stage = "sweeps"
    sweeps = []
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
    wall["sweeps"] = time.perf_counter() - t
    warnings_found += gradient_free_masking(entries, config.masking_threshold,
                                            config.masking_min_inputs)
    t = time.perf_counter()
    detection_results = detection.detection_results(
        targets, {spec.name: ev.clean_logits_of(spec) for spec in targets
                  if spec.outlier_class is not None},
        ev.y, ev.adversarial_logits, num_examples=config.num_examples)
    wall["detection"] = time.perf_counter() - t
    counts = {a: ev.count(a) for a in config.attacks}
    if any(s.extra for s in list(targets) + list(surrogates)):
        counts["extra_models"] = {a: min(config.examples_for(a, extra=True), len(ev.y))
                                  for a in config.attacks}
    results = {"filter": FILTER_STATEMENT, "models": models, "evaluations": entries,
               "sweeps": sweeps, "warnings": warnings_found, "num_examples": counts,
               "detection": detection_results, "evaluation_settings": config.to_dict(),
               "stage_seconds": _stage_seconds(wall, ev),
               "crafts": {origin: ev.craft_counts[origin]
                          for origin in ("computed", "loaded", "prefix", "memory")}}
    return results, ev.images


def _schema(details):
    """{name: (per-input shape, dtype)} of a craft's details, JSON-ready."""
    return {name: (list(np.shape(value)[1:]), np.asarray(value).dtype.str)
            for name, value in details.items()}


def scored_targets(source, targets):
    """The targets a surrogate's attacks are scored on: all, or its `only_target`."""
    return [t for t in targets if source.only_target in (None, t.name)]


def _stage_seconds(wall, ev):
    """Per stage: `seconds_here`, the wall time of this call, and `seconds_total`,
    which adds the recorded seconds of the crafts loaded from an earlier, killed
    run (what an uninterrupted run would have spent, about). `attacks`: the
    crafting alone, summed over the stages."""
    out = {"clean_and_checks": {"seconds_here": wall["clean_and_checks"],
                                "seconds_total": wall["clean_and_checks"]}}
    for stage in ("whitebox", "blackbox", "sweeps"):
        out[stage] = {"seconds_here": wall[stage],
                      "seconds_total": wall[stage] + ev.loaded_seconds[stage]}
    out["detection"] = {"seconds_here": wall["detection"], "seconds_total": wall["detection"]}
    here = sum(ev.computed_seconds.values())
    out["attacks"] = {"seconds_here": here,
                      "seconds_total": here + sum(ev.loaded_seconds.values())}
    return out


def gradient_free_masking(entries, threshold, min_inputs=1):
    """Warnings where a gradient attack fails but a gradient-free one (Square) succeeds.

    Per white-box target and variant: a gradient attack whose success (1 -
    recovered, filtered) stays below `threshold`, even its 95 % upper bound
    (metrics.success_upper_bound), while a gradient-free attack's reaches it on the
    same target and variant; both on at least `min_inputs` correctly classified
    inputs. The gradients mislead, the model is not robust: gradient masking.
    """
    def enough(e):
        return e["filtered"]["count"] >= min_inputs

    found = []
    whitebox = [e for e in entries if e["setting"] == "whitebox" and e["success"] is not None]
    for free in (e for e in whitebox if attack_registry.get(e["attack"]).gradient_free):
        if free["success"] < threshold or not enough(free):
            continue
        for e in whitebox:
            if (e["target"], e["variant"]) != (free["target"], free["variant"]) or \
                    attack_registry.get(e["attack"]).gradient_free or not enough(e) or \
                    success_upper_bound(e["filtered"]) >= threshold:
                continue
            found.append(f"{e['target']}: gradient masking: {e['attack']} ({e['variant']}) "
                         f"fails where the gradient-free {free['attack'].capitalize()} attack "
                         f"succeeds ({e['success']:.1%} of {e['filtered']['count']} vs "
                         f"{free['success']:.1%}, threshold {threshold:.0%})")
    return found
