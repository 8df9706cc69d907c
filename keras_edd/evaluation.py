"""White-box and black-box evaluation: recovered / detected / misclassified rates.

Papernot & McDaniel (2017), Figure 1. An adversarial example x* built from a
test input x of true class y is scored on the *target* model f, which has n
real classes and, for extended distillation, an outlier class at index n:

    recovered      argmax f(x*) = y      (the defense undid the attack)
    detected       argmax f(x*) = n      (flagged as an outlier; 0 without one)
    misclassified  any other class       (the attack worked)

Filter. Attacks are built from the first `num_examples` test inputs. The
"filtered" rates (the paper's convention, used in plots and tables) count only
the inputs that the target classifies correctly when clean; the "unfiltered"
rates count all attacked inputs. Either way the three rates sum to 1. Clean
accuracy and the clean detected rate (false alarms) are reported alongside.

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

Entry points: `run_whitebox`, `run_blackbox`, `run_reproduce` (one per binary);
`evaluate_models` does the work for all three; `outcome_rates` and
`attack_rates` are the pure rate computations.
"""

import dataclasses
import hashlib
import os
import re
import time

import numpy as np

from keras_edd import config as config_lib
from keras_edd import data as data_lib
from keras_edd import reporting, runs

VARIANTS = ("plain", "adaptive")
SWEEP_PARAMETERS = {"fgsm": "eps", "pgd": "eps", "jsma": "gamma", "cw": "kappa"}
FILTER_STATEMENT = (
    "Adversarial examples are built from the first N test inputs (N per attack in "
    "'num_examples'). 'filtered' rates count only the inputs the target classifies "
    "correctly when clean (count in 'filtered.count'); 'unfiltered' rates count all N. "
    "recovered = target predicts the true class, detected = target predicts the outlier "
    "class (always 0 for models without one), misclassified = any other class.")


# ----------------------------------------------------------------------------- rates


def outcome_rates(predictions, labels, *, outlier_class=None, mask=None):
    """Fractions of recovered, detected and misclassified predictions.

    Args:
      predictions: [m] predicted classes of the target on adversarial inputs.
      labels: [m] true classes y (never the outlier class).
      outlier_class: index n of the outlier class, or None (detected = 0).
      mask: optional [m] booleans; only those examples are counted.
    Returns:
      {"count", "recovered", "detected", "misclassified"}; the rates sum to 1,
      or are None when no example is counted.
    """
    predictions = np.asarray(predictions).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.size} predictions but {labels.size} labels")
    if mask is not None:
        mask = np.asarray(mask, bool).reshape(-1)
        if mask.shape != labels.shape:
            raise ValueError(f"mask has {mask.size} entries, expected {labels.size}")
        predictions, labels = predictions[mask], labels[mask]
    count = int(labels.size)
    if count == 0:
        return {"count": 0, "recovered": None, "detected": None, "misclassified": None}
    recovered = predictions == labels
    detected = (np.zeros(count, bool) if outlier_class is None
                else (predictions == outlier_class) & ~recovered)
    misclassified = ~recovered & ~detected
    return {"count": count, "recovered": float(recovered.sum() / count),
            "detected": float(detected.sum() / count),
            "misclassified": float(misclassified.sum() / count)}


def attack_rates(adversarial_predictions, clean_predictions, labels, *, outlier_class=None):
    """Rates filtered on the inputs the target gets right when clean, and unfiltered."""
    correct = np.asarray(clean_predictions) == np.asarray(labels)
    return {"filtered": outcome_rates(adversarial_predictions, labels,
                                      outlier_class=outlier_class, mask=correct),
            "unfiltered": outcome_rates(adversarial_predictions, labels,
                                        outlier_class=outlier_class)}


def clean_rates(clean_predictions, labels, *, outlier_class=None):
    """Clean accuracy and the clean detected rate (false alarms)."""
    rates = outcome_rates(clean_predictions, labels, outlier_class=outlier_class)
    return {"count": rates["count"], "accuracy": rates["recovered"],
            "detected": rates["detected"], "misclassified": rates["misclassified"]}


def success_rate(rates):
    """1 - recovered: the attack changed the target's decision (detected or not)."""
    return None if rates["recovered"] is None else 1.0 - rates["recovered"]


# ---------------------------------------------------------------------------- models


@dataclasses.dataclass
class ModelSpec:
    """A loaded model and what its logits mean.

    num_classes: n real classes; outlier_class: n for n + 1-logit models, else None.
    """
    name: str
    model: object
    path: str
    num_classes: int
    outlier_class: int | None

    def variants(self, adaptive=True):
        """Attack variants that make sense on this model."""
        return VARIANTS if (adaptive and self.outlier_class is not None) else VARIANTS[:1]

    def attack_outlier_class(self, variant):
        return self.outlier_class if variant == "adaptive" else None

    def describe(self):
        return {"path": os.path.abspath(self.path), "sha256": _sha256(self.path),
                "outputs": self.num_classes + (self.outlier_class is not None),
                "outlier_class": self.outlier_class,
                "parameters": int(self.model.count_params())}


def load_model_spec(name, path, dataset):
    """Load a `.keras` model (safe mode) for `dataset`: n or n + 1 logits.

    Raises ValueError naming the file when it is missing, unreadable, takes
    other inputs, or has neither n nor n + 1 outputs.
    """
    from keras_edd import models
    model = models.load_model(path, input_shape=dataset.input_shape)
    outputs = int(model.output_shape[-1])
    n = dataset.num_classes
    if outputs not in (n, n + 1):
        raise ValueError(f"model {str(path)!r} has {outputs} outputs; dataset {dataset.name!r} "
                         f"has n={n} classes, so expected {n} or {n + 1} (with the outlier class)")
    return ModelSpec(name, model, str(path), n, n if outputs == n + 1 else None)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_label(path):
    """A run-name-safe label for a model file: <run dir>-<file stem>."""
    path = os.path.abspath(path)
    run_dir = os.path.basename(os.path.dirname(path))
    label = f"{run_dir}-{os.path.splitext(os.path.basename(path))[0]}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", label).lstrip(".-") or "model"


# --------------------------------------------------------------------------- attacks


def attack_params(attack, attack_config, budget=None):
    """The keyword settings of one attack, with the swept budget substituted.

    For PGD the step size scales with eps (eps_iter / eps fixed), so a larger
    ball can still be crossed in nb_iter steps.
    """
    a = attack_config
    if attack == "fgsm":
        return {"eps": a.fgsm_eps if budget is None else float(budget)}
    if attack == "pgd":
        eps = a.pgd_eps if budget is None else float(budget)
        eps_iter = a.pgd_eps_iter if (budget is None or a.pgd_eps == 0) else (
            a.pgd_eps_iter * eps / a.pgd_eps)
        return {"eps": eps, "eps_iter": eps_iter, "nb_iter": a.pgd_nb_iter,
                "nb_restarts": a.pgd_restarts, "rand_init": True, "loss": a.pgd_loss}
    if attack == "jsma":
        return {"theta": a.jsma_theta, "gamma": a.jsma_gamma if budget is None else float(budget),
                "target_mode": a.jsma_target_mode}
    if attack == "cw":
        from keras_edd.attacks.carlini_wagner_l2 import DEFAULT_LEARNING_RATES
        return {"confidence": a.cw_confidence if budget is None else float(budget),
                "optimizer": a.cw_optimizer,
                "learning_rate": (a.cw_learning_rate if a.cw_learning_rate is not None
                                  else DEFAULT_LEARNING_RATES[a.cw_optimizer]),
                "binary_search_steps": a.cw_binary_search_steps,
                "max_iterations": a.cw_max_iterations, "initial_const": a.cw_initial_const}
    raise ValueError(f"attack={attack!r}: allowed values are {', '.join(config_lib.ATTACKS)}")


def budget_of(attack, params):
    """(name, value) of the budget swept for `attack`, e.g. ("eps", 0.2)."""
    name = SWEEP_PARAMETERS[attack]
    return name, params["confidence" if name == "kappa" else name]


def craft(model, attack, x, params, *, outlier_class=None, batch_size=100, seed=0):
    """Adversarial examples for float32 inputs x, computed on `model` (y = its prediction).

    Returns x_adv as a float32 numpy array shaped like x.
    """
    from keras_edd import attacks
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        batch_seed = seed + start
        if attack == "fgsm":
            adv = attacks.fgsm(model, xb, eps=params["eps"], outlier_class=outlier_class)
        elif attack == "pgd":
            adv = attacks.pgd(model, xb, eps=params["eps"], eps_iter=params["eps_iter"],
                              nb_iter=params["nb_iter"], nb_restarts=params["nb_restarts"],
                              rand_init=params["rand_init"], loss=params["loss"],
                              outlier_class=outlier_class, seed=batch_seed)
        elif attack == "jsma":
            adv = attacks.jsma_untargeted(model, xb, target_mode=params["target_mode"],
                                          seed=batch_seed, outlier_class=outlier_class,
                                          theta=params["theta"], gamma=params["gamma"]).x_adv
        elif attack == "cw":
            adv = attacks.carlini_wagner_l2(
                model, xb, confidence=params["confidence"], optimizer=params["optimizer"],
                learning_rate=params["learning_rate"],
                binary_search_steps=params["binary_search_steps"],
                max_iterations=params["max_iterations"], initial_const=params["initial_const"],
                outlier_class=outlier_class)
        else:
            raise ValueError(f"attack={attack!r}: allowed values are "
                             f"{', '.join(config_lib.ATTACKS)}")
        out.append(np.asarray(adv, np.float32))
    return np.concatenate(out, axis=0)


def _norm_summary(x, x_adv):
    from keras_edd.attacks import perturbation_norms
    norms = perturbation_norms(x, x_adv)
    changed = norms["l0"] > 0
    summary = {"changed_fraction": float(changed.mean())}
    for key, values in norms.items():
        summary[f"mean_{key}"] = float(np.mean(values))
        summary[f"mean_{key}_changed"] = float(np.mean(values[changed])) if changed.any() else None
    return summary


# ------------------------------------------------------------------------ evaluation


class _Evaluation:
    """State of one evaluation: the attacked inputs, cached crafts and predictions."""

    def __init__(self, dataset, config, progress):
        self.dataset = dataset
        self.config = config
        self.progress = progress
        needed = max([config.num_examples, config.check_examples]
                     + [min(config.sweep_num_examples, config.examples_for(a))
                        for a in config.resolved_sweep_attacks])
        needed = min(needed, len(dataset.y_test))
        self.x = data_lib.to_float(dataset.x_test[:needed])
        self.y = np.asarray(dataset.y_test[:needed])
        self.cache = {}
        self.clean_predictions = {}
        self.images = {}
        self.attack_seconds = 0.0

    def log(self, message):
        if self.progress:
            print(message, flush=True)

    def count(self, attack):
        return min(self.config.examples_for(attack), len(self.y))

    def predict(self, spec, x):
        from keras_edd import training
        return training.predict_logits(spec.model, x).argmax(axis=1)

    def clean(self, spec):
        if spec.name not in self.clean_predictions:
            self.clean_predictions[spec.name] = self.predict(spec, self.x)
        return self.clean_predictions[spec.name]

    def adversarial(self, source, attack, variant, n, budget=None):
        """(x_adv, params, seconds) for the first n inputs, attacked on `source`."""
        params = attack_params(attack, self.config.attack, budget)
        outlier_class = source.attack_outlier_class(variant)
        if attack == "jsma":
            # JSMA is targeted: an attacker aims at a real class, never at the
            # outlier ("detected") class, so plain and adaptive JSMA coincide.
            outlier_class = source.outlier_class
            variant = "plain"
        key = (source.name, attack, variant, n, tuple(sorted(params.items())))
        if key not in self.cache:
            t = time.perf_counter()
            x_adv = craft(source.model, attack, self.x[:n], params,
                          outlier_class=outlier_class,
                          batch_size=self.config.attack.batch_size, seed=self.config.attack.seed)
            seconds = time.perf_counter() - t
            self.attack_seconds += seconds
            self.cache[key] = (x_adv, params, seconds)
            k = min(self.config.image_examples, n)
            if budget is None and k:
                self.images[f"{source.name}/{attack}_{variant}"] = (self.x[:k], x_adv[:k])
            self.log(f"  {attack} ({variant}) on {source.name}, {n} inputs, "
                     f"{_format_params(params)}: {seconds:.1f}s")
        return self.cache[key]

    def entry(self, setting, source, target, attack, variant, n, budget=None):
        x_adv, params, seconds = self.adversarial(source, attack, variant, n, budget)
        y = self.y[:n]
        rates = attack_rates(self.predict(target, x_adv), self.clean(target)[:n], y,
                             outlier_class=target.outlier_class)
        name, value = budget_of(attack, params)
        result = {"setting": setting, "target": target.name, "source": source.name,
                  "attack": attack, "variant": variant, "params": params,
                  "parameter": name, "value": value, "num_examples": n,
                  **rates, "success": success_rate(rates["filtered"]),
                  "norms": _norm_summary(self.x[:n], x_adv), "attack_seconds": seconds}
        if setting == "blackbox":
            result["source_rates"] = attack_rates(
                self.predict(source, x_adv), self.clean(source)[:n], y,
                outlier_class=source.outlier_class)
        return result

    def checks(self, spec):
        """Gradient-masking / logits / stochasticity checks on a few clean inputs."""
        from keras_edd import attacks, pipeline
        x = self.x[:self.config.check_examples]
        result = attacks.run_all_checks(spec.model, x, action="ignore")
        result = {k: (bool(v) if isinstance(v, (bool, np.bool_)) else float(v))
                  for k, v in result.items()}
        if spec.outlier_class is not None:
            result["zero_gradient_fraction_adaptive"] = float(attacks.zero_gradient_fraction(
                spec.model, x, outlier_class=spec.outlier_class))
        result["logits"] = pipeline.logit_statistics(spec.model, x)
        result["num_examples"] = int(len(x))
        return result

    def sweep(self, spec, attack, variant):
        parameter = SWEEP_PARAMETERS[attack]
        values = {"eps": self.config.sweep_eps, "gamma": self.config.sweep_gamma,
                  "kappa": self.config.sweep_kappa}[parameter]
        n = min(self.config.sweep_num_examples, self.count(attack))
        points = []
        for value in values:
            e = self.entry("whitebox", spec, spec, attack, variant, n, budget=value)
            points.append({"value": float(value), "filtered": e["filtered"],
                           "unfiltered": e["unfiltered"], "success": e["success"],
                           "attack_seconds": e["attack_seconds"]})
        successes = [p["success"] for p in points if p["success"] is not None]
        best = max(successes) if successes else None
        return {"target": spec.name, "attack": attack, "variant": variant,
                "parameter": parameter, "num_examples": n, "points": points,
                "max_success": best,
                "masking_suspected": None if best is None else best < self.config.masking_threshold}


def _format_params(params):
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def evaluate_models(dataset, targets, surrogates=(), config=None, *, progress=False):
    """Run every evaluation of `config` and collect the numbers.

    Args:
      dataset: a keras_edd.data.Dataset (the test split is attacked).
      targets: ModelSpecs attacked white-box (and scored in black-box runs).
      surrogates: ModelSpecs the black-box attacks are computed on.
      config: an EvalConfig.
      progress: print one line per attack.
    Returns:
      (results, images): results is a JSON-ready dict ("models", "evaluations",
      "sweeps", "warnings", ...); images maps "<source>/<attack>_<variant>" to
      (clean, adversarial) arrays for TensorBoard.
    """
    config = (config or config_lib.EvalConfig()).validate()
    names = [s.name for s in list(targets) + list(surrogates)]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    ev = _Evaluation(dataset, config, progress)
    t_start = time.perf_counter()
    stage_seconds = {}
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
    stage_seconds["clean_and_checks"] = time.perf_counter() - t_start

    entries = []
    t = time.perf_counter()
    for spec in targets:
        ev.log(f"white-box on {spec.name}")
        for attack in config.attacks:
            for variant in spec.variants(config.adaptive):
                entries.append(ev.entry("whitebox", spec, spec, attack, variant, ev.count(attack)))
    stage_seconds["whitebox"] = time.perf_counter() - t
    t = time.perf_counter()
    for source in surrogates:
        ev.log(f"black-box from {source.name}")
        for attack in config.attacks:
            for variant in source.variants(config.adaptive):
                for target in targets:
                    entries.append(ev.entry("blackbox", source, target, attack, variant,
                                            ev.count(attack)))
    stage_seconds["blackbox"] = time.perf_counter() - t
    t = time.perf_counter()
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
                        f"{sweep['max_success']:.1%} over {sweep['parameter']} in "
                        f"{[p['value'] for p in sweep['points']]} (threshold "
                        f"{config.masking_threshold:.0%}): possible gradient masking")
                elif sweep["masking_suspected"] is None:
                    warnings_found.append(f"{spec.name}: {attack} ({variant}) sweep has no "
                                          "correctly classified inputs; masking not checked")
    stage_seconds["sweeps"] = time.perf_counter() - t
    stage_seconds["attacks_total"] = ev.attack_seconds
    counts = {a: ev.count(a) for a in config.attacks}
    results = {"filter": FILTER_STATEMENT, "models": models, "evaluations": entries,
               "sweeps": sweeps, "warnings": warnings_found, "num_examples": counts,
               "evaluation_settings": config.to_dict(),
               "evaluation_seconds": stage_seconds}
    return results, ev.images


# ------------------------------------------------------------------------ run helpers


def _finish(run_dir, results, images, config, dataset, t_start, kind, seeds=None):
    results.update({
        "kind": kind, "run_dir": os.path.abspath(run_dir), "dataset": dataset.summary(),
        "settings": config.to_dict(),
        "seeds": {"attack": config.evaluation.attack.seed, **(seeds or {})},
        "versions": runs.versions(), "wall_seconds": time.perf_counter() - t_start})
    reporting.write_report(run_dir, results, images)
    return results


def _open_run(output_dir, run_name, flags):
    run_dir, finished = runs.prepare_run_dir(output_dir, run_name, flags)
    if finished:
        return run_dir, runs.read_json(os.path.join(run_dir, "results.json"))
    return run_dir, None


def run_whitebox(config):
    """bin/eval_whitebox: attack the model with its own gradients; write the report.

    Everything that can fail on bad input (settings, data, the model file) is
    checked before the run directory is created. Returns results.json's dict.
    """
    from keras_edd import pipeline
    config.validate()
    t_start = time.perf_counter()
    dataset = pipeline.load_data(config.data)
    spec = load_model_spec("target", config.model_path, dataset)
    run_name = config.run_name or f"whitebox-{model_label(config.model_path)}"
    run_dir, done = _open_run(config.output_dir, run_name, config.to_dict())
    if done:
        return done
    results, images = evaluate_models(dataset, [spec], (), config.evaluation,
                                      progress=config.progress)
    return _finish(run_dir, results, images, config, dataset, t_start, "whitebox")


def run_blackbox(config):
    """bin/eval_blackbox: attacks computed on surrogates, scored on the target."""
    from keras_edd import pipeline
    config.validate()
    t_start = time.perf_counter()
    dataset = pipeline.load_data(config.data)
    target = load_model_spec("target", config.target_path, dataset)
    surrogates = [load_model_spec(name, path, dataset) for name, path in config.surrogates]
    run_name = config.run_name or f"blackbox-{model_label(config.target_path)}"
    run_dir, done = _open_run(config.output_dir, run_name, config.to_dict())
    if done:
        return done
    # The target is scored on the surrogates' attacks only: no white-box sweeps of it.
    evaluation = dataclasses.replace(config.evaluation, sweeps=False)
    results, images = evaluate_models(dataset, [target], surrogates, evaluation,
                                      progress=config.progress)
    results["evaluations"] = [e for e in results["evaluations"] if e["setting"] == "blackbox"]
    return _finish(run_dir, results, images, config, dataset, t_start, "blackbox")


# Roles of the models trained by run_reproduce, in training order.
REPRODUCE_MODELS = ("undefended", "extended", "distillation", "surrogate_U", "surrogate_D")


def reproduce_run_configs(config, dataset_name):
    """The pipeline.RunConfig of every model bin/reproduce trains (or reuses).

    The models use exactly the settings (and default run names) of `bin/train`
    with the same flags, so runs already made with bin/train in `model_dir` are
    reused. As in the paper, the undefended classifier f is trained like a
    teacher (`teacher_epochs`) and is the teacher of the extended model.
    Surrogates: U = undefended with seed + 1; D = extended distillation
    distilled from U's model with seed + 2.
    """
    from keras_edd.config import DefenseConfig, RunConfig
    model_dir = config.resolved_model_dir
    train = config.train
    ext = config.extended
    # Settings irrelevant to a model keep bin/train's defaults, so that runs made
    # with bin/train match.

    def run(defense, seed_offset=0, prefix="", epochs=None):
        seeded = dataclasses.replace(train, seed=train.seed + seed_offset,
                                     epochs=epochs or train.epochs)
        rc = RunConfig(data=config.data, train=seeded, defense=defense, output_dir=model_dir,
                       progress=config.progress)
        if prefix:
            rc = dataclasses.replace(rc, run_name=f"{prefix}-{rc.resolved_run_name(dataset_name)}")
        return rc

    def model_path(run_config):
        return os.path.join(model_dir, run_config.resolved_run_name(dataset_name), "model.keras")

    undefended = DefenseConfig(defense="none")
    configs = {"undefended": run(undefended, epochs=ext.teacher_epochs)}
    configs["extended"] = run(dataclasses.replace(
        ext, teacher_path=model_path(configs["undefended"])))
    configs["distillation"] = run(DefenseConfig(defense="distillation", temperature=config.distillation_temperature,
                                                teacher_epochs=ext.teacher_epochs))
    configs["surrogate_U"] = run(undefended, 1, "surrogate_U", epochs=ext.teacher_epochs)
    configs["surrogate_D"] = run(dataclasses.replace(
        ext, teacher_path=model_path(configs["surrogate_U"])), 2, "surrogate_D")
    return configs


def run_reproduce(config):
    """bin/reproduce: train (or reuse) every model, attack them all, write one report.

    Targets (white-box, and scored in black-box): undefended, extended,
    distillation. Surrogates (black-box): surrogate_U, surrogate_D.
    """
    from keras_edd import pipeline
    config.validate()
    t_start = time.perf_counter()
    dataset = pipeline.load_data(config.data)
    if len(dataset.y_train) < config.train.batch_size:
        raise ValueError(f"batch_size={config.train.batch_size} exceeds the "
                         f"{len(dataset.y_train)} training examples")
    run_configs = reproduce_run_configs(config, dataset.name)
    run_dir, done = _open_run(config.output_dir, config.resolved_run_name(dataset.name),
                              config.to_dict())
    if done:
        return done
    training_report = {}
    specs = {}
    t = time.perf_counter()
    for role in REPRODUCE_MODELS:
        rc = run_configs[role]
        name = rc.resolved_run_name(dataset.name)
        reused = os.path.exists(os.path.join(rc.output_dir, name, "results.json"))
        if config.progress:
            print(f"{'reusing' if reused else 'training'} {role}: "
                  f"{os.path.join(rc.output_dir, name)}", flush=True)
        t_model = time.perf_counter()
        trained = pipeline.train_run(rc)
        path = os.path.join(trained["run_dir"], trained["deployed_model"])
        specs[role] = load_model_spec(role, path, dataset)
        training_report[role] = {
            "run_dir": trained["run_dir"], "run_name": name, "reused": reused,
            "defense": trained["defense"], "temperature": trained["temperature"],
            "seed": trained["seed"], "deployed_model": path,
            "clean_test_accuracy": trained["clean_test_accuracy"],
            "clean_test_detected": trained.get("clean_test_detected"),
            "dataset": trained["dataset"], "settings": trained["settings"],
            "training_wall_seconds": trained["wall_seconds"],
            "seconds_here": time.perf_counter() - t_model}
    training_seconds = time.perf_counter() - t
    targets = [specs[r] for r in ("undefended", "extended", "distillation")]
    surrogates = [specs[r] for r in ("surrogate_U", "surrogate_D")]
    results, images = evaluate_models(dataset, targets, surrogates, config.evaluation,
                                      progress=config.progress)
    results["training"] = training_report
    results["evaluation_seconds"]["training"] = training_seconds
    seeds = {role: training_report[role]["seed"] for role in REPRODUCE_MODELS}
    return _finish(run_dir, results, images, config, dataset, t_start, "reproduce", seeds)
