"""bin/reproduce: the whole pipeline, the only module that both trains and evaluates.

Trains (or reuses, through keras_edd.train_run with bin/train's run names) the
undefended model f, extended distillation, the defensive-distillation baseline
and the black-box surrogates U and D, and (keras_edd.substitute_run) one
surrogate J per target, then evaluates them all with keras_edd.evaluation and
writes one report.
"""

import dataclasses
import os
import time

from keras_edd import data as data_lib
from keras_edd import distribute, runs, substitute_run, train_run
from keras_edd.eval_run import announce, crafts_dir, finish_run, open_shared_run
from keras_edd.evaluation import evaluate_models
from keras_edd.models import load_model_spec
from keras_edd.validation import check_batch_size

# Roles of the models trained by run_reproduce, in training order.
REPRODUCE_MODELS = ("undefended", "extended", "distillation", "adversarial", "surrogate_U",
                    "surrogate_D")
TARGETS = ("undefended", "extended", "distillation", "adversarial")
# Models beyond the paper's Figure 1 (with the surrogates J): `extra` ModelSpecs, whose
# slow attacks use at most --num_examples_extra inputs.
EXTRA_ROLES = ("adversarial",)
# Surrogate J against each target is seeded with the training seed + this.
SUBSTITUTE_SEED_OFFSET = 3


def reproduce_run_configs(config, dataset_name):
    """The run_config.RunConfig of every model bin/reproduce trains (or reuses).

    The models use exactly the settings (and default run names) of `bin/train`
    with the same flags, so runs already made with bin/train in `model_dir` are
    reused. As in the paper, the undefended classifier f is trained like a
    teacher (`teacher_epochs`) and is the teacher of the extended model.
    Surrogates: U = undefended with seed + 1; D = extended distillation
    distilled from U's model with seed + 2.
    """
    from keras_edd.config import DefenseConfig
    from keras_edd.run_config import RunConfig
    model_dir = config.resolved_model_dir
    train = config.train
    ext = config.extended
    # Settings irrelevant to a model keep bin/train's defaults, so that runs made
    # with bin/train match.

    def run(defense, seed_offset=0, prefix="", epochs=None):
        seeded = dataclasses.replace(train, seed=train.seed + seed_offset,
                                     epochs=epochs or train.epochs)
        rc = RunConfig(data=config.data, train=seeded, defense=defense, output_dir=model_dir,
                       distribution=config.distribution, progress=config.progress)
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
    # The adversarial-training baseline trains as long as f, the model it hardens.
    configs["adversarial"] = run(config.adversarial, epochs=ext.teacher_epochs)
    configs["surrogate_U"] = run(undefended, 1, "surrogate_U", epochs=ext.teacher_epochs)
    configs["surrogate_D"] = run(dataclasses.replace(
        ext, teacher_path=model_path(configs["surrogate_U"])), 2, "surrogate_D")
    return configs


def run_reproduce(config):
    """bin/reproduce: train (or reuse) every model, attack them all, write one report.

    Targets (white-box, and scored in black-box): undefended, extended,
    distillation, adversarial. Surrogates (black-box): surrogate_U, surrogate_D,
    and with config.jacobian_substitute J_<target> for each target, trained
    against it (seed + 3) and scored on it alone.
    """
    config.validate()
    t_start = time.perf_counter()
    dist = distribute.start(config.distribution)
    if not dist.is_chief:  # another worker works in private copies of the folders
        config = dataclasses.replace(
            config, output_dir=dist.private_dir(config.output_dir),
            model_dir=dist.private_dir(config.resolved_model_dir), progress=False)
    dataset = data_lib.load_data(config.data)
    check_batch_size(config.train.batch_size, len(dataset.y_train))
    run_configs = reproduce_run_configs(config, dataset.name)
    # The models' folder is checked before flags.json is written.
    runs.check_writable_dir(config.resolved_model_dir, "model_dir")
    run_name = config.resolved_run_name(dataset.name)
    if config.jacobian_substitute:
        substitute_run.check_test_size(dataset, config.evaluation.num_examples,
                                       config.substitute,
                                       os.path.join(config.output_dir, run_name))
    run_dir, done = open_shared_run(dist, config.output_dir, run_name, config.to_dict())
    if done:
        return done
    announce(config, run_dir)
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
        trained = train_run.train_run(rc)
        path = os.path.join(trained["run_dir"], trained["deployed_model"])
        specs[role] = dataclasses.replace(load_model_spec(role, path, dataset),
                                          extra=role in EXTRA_ROLES)
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
    targets = [specs[r] for r in TARGETS]
    surrogates = [specs[r] for r in ("surrogate_U", "surrogate_D")]
    substitutes = {}
    seeds = {role: training_report[role]["seed"] for role in REPRODUCE_MODELS}
    if config.jacobian_substitute:
        for target in targets:
            name = f"J_{target.name}"
            seeds[name] = config.train.seed + SUBSTITUTE_SEED_OFFSET
            spec, substitutes[name] = substitute_run.jacobian_surrogate(
                name, target, dataset, config.substitute, seed=seeds[name],
                num_examples=config.evaluation.num_examples, run_dir=run_dir,
                progress=config.progress)
            dist.broadcast_variables(spec.model.variables)  # the chief's J
            surrogates.append(dataclasses.replace(spec, extra=True))
    results, images = evaluate_models(dataset, targets, surrogates, config.evaluation,
                                      progress=config.progress, cache_dir=crafts_dir(run_dir),
                                      distribution=dist)
    substitute_run.add_to_results(results, substitutes)
    results["training"] = training_report
    # Per model: the training run's own recorded seconds (also when reused here).
    results["stage_seconds"]["training"] = {
        "seconds_here": training_seconds,
        "seconds_total": sum(t["training_wall_seconds"] for t in training_report.values()),
        "models": {role: {"seconds": t["training_wall_seconds"], "seconds_here": t["seconds_here"],
                          "reused": t["reused"]} for role, t in training_report.items()}}
    return finish_run(run_dir, results, images, config, dataset, t_start, "reproduce", seeds,
                      distribution=dist)
