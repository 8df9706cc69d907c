"""Scoring an evaluation: the attacked inputs, the models' predictions on them, one
entry of rates per attack run, the sanity checks, the budget sweeps and the
gradient-masking verdicts.

An entry scores one craft (keras_edd.evaluation.crafting) on one target: the rates of
keras_edd.evaluation.metrics (filtered and unfiltered), attack_failed (the attack's own
success criterion on the model it ran on), the norms of x_adv - x and, on targets with
an outlier class, the adversarial logits kept for the detection ROC.
"""

import numpy as np

from keras_edd import attack_registry, attacks, models
from keras_edd import data as data_lib
from keras_edd.attack_settings import SuccessCriterion
from keras_edd.attacks import utils
from keras_edd.evaluation.crafting import Crafting
from keras_edd.evaluation.metrics import (attack_rates, failure_rate, logit_statistics,
                                          norm_summary, success_rate, success_upper_bound)


class Evaluation:
    """State of one evaluation: the attacked inputs, the crafts and predictions."""

    def __init__(self, dataset, config, progress, cache_dir=None, distribution=None):
        self.dataset = dataset
        self.config = config
        self.progress = progress
        needed = max([config.num_examples, config.check_examples]
                     + [min(config.sweep_num_examples, config.examples_for(a))
                        for a in config.resolved_sweep_attacks])
        needed = min(needed, len(dataset.y_test))
        self.x = data_lib.to_float(dataset.x_test[:needed])
        self.y = np.asarray(dataset.y_test[:needed])
        self.crafting = Crafting(self.x, config, progress, cache_dir, distribution)
        self.clean_logits = {}
        # (setting, target, source, attack, variant) -> (the target's logits on the craft,
        # n) of every main entry: detection, worst case, accuracy at a fixed false detection.
        self.adversarial_logits = {}
        self.images = {}

    def log(self, message):
        self.crafting.log(message)

    def count(self, attack, source=None):
        """Inputs `attack` gets when computed on `source` (None: a model not `extra`)."""
        extra = source is not None and source.extra
        return min(self.config.examples_for(attack, extra=extra), len(self.y))

    def logits(self, spec, x):
        return models.predict_logits(spec.model, x)

    def predict(self, spec, x):
        return self.logits(spec, x).argmax(axis=1)

    def clean_logits_of(self, spec):
        if spec.name not in self.clean_logits:
            self.clean_logits[spec.name] = self.logits(spec, self.x)
        return self.clean_logits[spec.name]

    def clean(self, spec):
        return self.clean_logits_of(spec).argmax(axis=1)

    def keep_images(self, source, target, attack, variant, x_adv, target_logits):
        """Keep the first inputs of a craft, clean and adversarial, with the labels the
        (first) target scored on them predicts: one TensorBoard grid per craft."""
        k = min(self.config.image_examples, len(x_adv))
        # A targeted attack's plain and adaptive variants are one craft (Crafting.crafted).
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
        (attack_succeeded) judged on the source's logits at x_adv."""
        key, params, outlier_class, _ = self.crafting.crafted(source, attack, variant, n,
                                                              budget)
        succeeded = attack_succeeded(
            attack, params, source_logits, self.clean_logits_of(source)[:n],
            outlier_class=outlier_class, details=self.crafting.details_of(key, n))
        return failure_rate(succeeded, correct), failure_rate(succeeded)

    def entry(self, setting, source, target, attack, variant, n, budget=None):
        x_adv, params, seconds = self.crafting.adversarial(source, attack, variant, n, budget)
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
        if budget is None:
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


def gradient_free_masking(entries, threshold, min_inputs=1):
    """Warnings where a gradient attack fails but a reference attack succeeds.

    References (attack_registry.Attack.flags_masking): the gradient-free ones (Square)
    and APGD. Per white-box target and variant: a gradient attack (one that is
    `masking_comparable`: iterative, under an eps or no budget) whose success (1 -
    recovered, filtered) stays below `threshold`, even its 95 % upper bound
    (metrics.success_upper_bound), while a reference attack's reaches it on the
    same target and variant; both on at least `min_inputs` correctly classified
    inputs. The gradients (of that attack's loss) mislead, the model is not robust:
    gradient masking.
    """
    def enough(e):
        return e["filtered"]["count"] >= min_inputs

    found = []
    whitebox = [e for e in entries if e["setting"] == "whitebox" and e["success"] is not None]
    for free in (e for e in whitebox if attack_registry.get(e["attack"]).flags_masking):
        if free["success"] < threshold or not enough(free):
            continue
        for e in whitebox:
            if (e["target"], e["variant"]) != (free["target"], free["variant"]) or \
                    e["attack"] == free["attack"] or \
                    not attack_registry.get(e["attack"]).masking_comparable or \
                    attack_registry.get(e["attack"]).gradient_free or not enough(e) or \
                    success_upper_bound(e["filtered"]) >= threshold:
                continue
            what = (f"the gradient-free {free['attack'].capitalize()} attack"
                    if attack_registry.get(free["attack"]).gradient_free
                    else f"the stronger gradient attack {free['attack']}")
            found.append(f"{e['target']}: gradient masking: {e['attack']} ({e['variant']}) "
                         f"fails where {what} succeeds ({e['success']:.1%} of {e['filtered']['count']} vs "
                         f"{free['success']:.1%}, threshold {threshold:.0%})")
    return found


def attack_succeeded(name, params, source_logits, clean_logits, *, outlier_class=None,
                     details=None):
    """Per-sample booleans: did attack `name` meet its own success criterion?

    The one place where `attack_failed` (= 1 - this, in the reports) is judged.
    Args:
      params: the attack's settings (kappa is params["confidence"] where present).
      source_logits: [m, k] logits of the model the attack ran on, at x_adv.
      clean_logits: [m, k] the same model's logits at the clean inputs: y is its own
        prediction, as the attack used (y=None).
      outlier_class: what the attack was told (None for a plain run).
      details: what `crafting.run_attack` collected; REPORTED attacks read details["success"].
    """
    row = attack_registry.get(name)
    if row.success == SuccessCriterion.REPORTED:
        if not details or "success" not in details:
            raise ValueError(f"attack {name!r} reports its success, but no details were kept")
        return np.asarray(details["success"], bool)
    labels = utils.predicted_labels(clean_logits, outlier_class)
    return np.asarray(utils.attack_success(
        np.asarray(source_logits, np.float32), labels, targeted=False,
        outlier_class=outlier_class, confidence=float(params.get("confidence", 0.0))))
