"""One evaluation run in a run directory: what bin/eval_whitebox and bin/eval_blackbox call.

`run_whitebox(config)` and `run_blackbox(config)` check everything that can fail on
bad input (settings, data, model files) before the run directory is created
(keras_edd.runs.run_dirs), call keras_edd.evaluation.engine.evaluate_models with the crafts kept in
the run directory (`crafts_dir`, keras_edd.evaluation.attack_cache, so a killed run resumes),
and write the report (`finish_run`, keras_edd.reporting.results_files; results.json last). With
--attacks=standard the white-box run is keras_edd.evaluate's standard list instead
(`results["standard"]`).
keras_edd.runs.reproduce uses `announce`, `crafts_dir` and `finish_run` too.
"""

import dataclasses
import os
import time

from keras_edd import attack_registry, distribute, pretrained
from keras_edd import data as data_lib
from keras_edd.evaluation.engine import evaluate_models
from keras_edd.models import load_model_spec, model_label
from keras_edd.reporting import results_files
from keras_edd.results_schema import write_results
from keras_edd.robustness import evaluate
from keras_edd.robustness.result import summary_text
from keras_edd.runs import run_dirs, substitute_run
from keras_edd.runs.run_config import JACOBIAN_SURROGATE


def announce(config, run_dir):
    """One line at the start of a run: where it writes and which preset it uses."""
    if config.progress:
        preset = config.preset or "none (defaults and flags)"
        print(f"run directory {run_dir}; preset {preset}", flush=True)


def crafts_dir(run_dir):
    """Where an evaluation run keeps its crafts (keras_edd.evaluation.attack_cache)."""
    return os.path.join(run_dir, "attacks")


def run_context(run_dir, config, dataset, t_start, kind, seeds=None,
                distribution=distribute.LOCAL):
    """What results.json says about the run itself: kind, folder, data, settings, seeds,
    versions, wall time (and the distribution when not one process)."""
    context = {"distribution": distribution.describe()} if distribution.kind != "none" else {}
    context.update({
        "kind": kind, "run_dir": os.path.abspath(run_dir), "dataset": dataset.summary(),
        "settings": config.to_dict(),
        "seeds": {"attack": config.evaluation.attack.seed, **(seeds or {})},
        "versions": run_dirs.versions(), "wall_seconds": time.perf_counter() - t_start})
    return context


def finish_run(run_dir, results, images, config, dataset, t_start, kind, seeds=None,
               distribution=distribute.LOCAL):
    """Add the run's context to `results` and write the report (results.json last; on
    the chief only, for a multi-worker `distribution`)."""
    results.update(run_context(run_dir, config, dataset, t_start, kind, seeds, distribution))
    if distribution.is_chief:  # the dict written to results.json, in the current schema
        results = results_files.write_report(run_dir, results, images)
    return results


def open_shared_run(distribution, output_dir, run_name, flags):
    """run_dirs.open_run in the user's folder (the chief) or a private one (the other
    workers); a run the chief finished is finished for all (its results.json)."""
    run_dir, done = run_dirs.open_run(distribution.private_dir(output_dir), run_name, flags)
    if distribution.agree(done is not None):
        done = distribution.broadcast_json(done)
        if not distribution.is_chief:
            done = dict(done, distribution=distribution.describe())
        return run_dir, done
    return run_dir, None


def run_whitebox(config):
    """bin/eval_whitebox: attack the model with its own gradients; write the report.

    Everything that can fail on bad input (settings, data, the model file) is
    checked before the run directory is created. Returns results.json's dict.
    """
    config.validate()
    t_start = time.perf_counter()
    dist = distribute.start(config.distribution)
    dataset = data_lib.load_data(config.data)
    config.evaluation.attack.check_input_shape(dataset.input_shape)
    spec = load_model_spec("target", config.model_path, dataset)
    pretrained.check_not_trained_on(pretrained.resolve_model(config.model_path), dataset)
    run_name = config.run_name or f"whitebox-{model_label(config.model_path)}"
    run_dir, done = open_shared_run(dist, config.output_dir, run_name, config.to_dict())
    if done:
        return done
    progress = config.progress and dist.is_chief
    if progress:
        announce(config, run_dir)
    if config.standard:
        return _run_standard(config, dataset, spec, run_dir, t_start, progress)
    results, images = evaluate_models(dataset, [spec], (), config.evaluation,
                                      progress=progress, cache_dir=crafts_dir(run_dir),
                                      distribution=dist)
    return finish_run(run_dir, results, images, config, dataset, t_start, "whitebox",
                      distribution=dist)


def _run_standard(config, dataset, spec, run_dir, t_start, progress):
    """--attacks=standard: keras_edd.evaluate's standard list on the first num_examples
    test digits at apgd_ce's eps and norm (adaptive with an outlier class). results.json
    holds it under "standard", {target name: RobustnessResult.to_dict()}, and the run's
    context, written by the one results writer (results_schema.write_results, typed as
    StandardEvaluation); no report.md or figures (the engine's, for the registry attacks)."""
    params = attack_registry.attack_params("apgd_ce", config.evaluation.attack)
    n = config.evaluation.num_examples
    result = evaluate(spec.model, dataset.x_test[:n], dataset.y_test[:n], eps=params["eps"],
                      norm=params["norm"], attacks="standard", outlier_class=spec.outlier_class,
                      batch_size=config.evaluation.attack.batch_size,
                      seed=config.evaluation.attack.seed, progress=progress)
    results = {"standard": {spec.name: dict(result.to_dict(), model=config.model_path)},
               **run_context(run_dir, config, dataset, t_start, "whitebox"),
               "files": ["results.json"]}
    return write_results(os.path.join(run_dir, "results.json"), results)


def standard_summaries(results):
    """The summary table of each standard evaluation in a run's results (none without)."""
    return [summary_text(entry) for entry in results.get("standard", {}).values()]


def run_blackbox(config):
    """bin/eval_blackbox: attacks computed on surrogates, scored on the target.

    With config.jacobian_substitute, surrogate "J" is first trained against the
    target (or reloaded from the run directory) by keras_edd.runs.substitute_run, seeded
    with the attack seed; the one model an evaluation run makes itself.
    """
    config.validate()
    t_start = time.perf_counter()
    dist = distribute.start(config.distribution)
    dataset = data_lib.load_data(config.data)
    config.evaluation.attack.check_input_shape(dataset.input_shape)
    target = load_model_spec("target", config.target_path, dataset)
    pretrained.check_not_trained_on(pretrained.resolve_model(config.target_path), dataset)
    surrogates = [load_model_spec(name, path, dataset) for name, path in config.surrogates]
    run_name = config.run_name or f"blackbox-{model_label(config.target_path)}"
    if config.jacobian_substitute:
        substitute_run.check_test_size(dataset, config.evaluation.num_examples,
                                       config.substitute,
                                       os.path.join(config.output_dir, run_name))
    run_dir, done = open_shared_run(dist, config.output_dir, run_name, config.to_dict())
    if done:
        return done
    progress = config.progress and dist.is_chief
    if progress:
        announce(config, run_dir)
    records, seeds = {}, {}
    if config.jacobian_substitute:
        name = JACOBIAN_SURROGATE
        seeds[name] = config.evaluation.attack.seed
        spec, records[name] = substitute_run.jacobian_surrogate(
            name, target, dataset, config.substitute, seed=seeds[name],
            num_examples=config.evaluation.num_examples, run_dir=run_dir,
            progress=progress)
        dist.broadcast_variables(spec.model.variables)  # the chief's J, trained or reloaded
        surrogates.append(spec)
    # The target is scored on the surrogates' attacks only: no white-box attacks or sweeps.
    evaluation = dataclasses.replace(config.evaluation, sweeps=False)
    results, images = evaluate_models(dataset, [target], surrogates, evaluation,
                                      progress=progress, cache_dir=crafts_dir(run_dir),
                                      whitebox=False, distribution=dist)
    if records:
        substitute_run.add_to_results(results, records)
    return finish_run(run_dir, results, images, config, dataset, t_start, "blackbox", seeds,
                      distribution=dist)
