"""bin/reproduce: the whole pipeline, the only module that both trains and evaluates.

Trains (or reuses, through keras_edd.runs.train_run with bin/train's run names) the
undefended model f, extended distillation, the defensive-distillation baseline
and the black-box surrogates U and D, and (keras_edd.runs.substitute_run) one
surrogate J per target, then evaluates them all with keras_edd.evaluation.engine, adds
AutoAttack's standard evaluation and a robustness curve per target
(keras_edd.runs.standard_run) and writes one report.
"""

import dataclasses
import os
import shutil
import time

from keras_edd import data as data_lib
from keras_edd import distribute, files, pretrained
from keras_edd.config import DefenseConfig
from keras_edd.evaluation.engine import evaluate_models
from keras_edd.models import load_model_spec
from keras_edd.reporting import results_files
from keras_edd.runs import run_dirs, standard_run, substitute_run, train_run
from keras_edd.runs.eval_run import announce, crafts_dir, finish_run, open_shared_run
from keras_edd.runs.run_config import RunConfig
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
# The models distilled from another one: role -> its teacher's role.
TEACHERS = {"extended": "undefended", "surrogate_D": "surrogate_U"}
# What each model is, for the pretrained models' MANIFEST.json.
ROLE_DESCRIPTIONS = {
    "undefended": "f: the cleverhans-v1 MNIST CNN trained at T = 1, 10 logits; also the "
                  "teacher of extended",
    "extended": "f^d: extended defensive distillation, n + 1 logits (the last, class n, is "
                "'detected'), labels from MC-dropout sigma of f, trained at T with the logit "
                "penalty, deployed at T = 1",
    "distillation": "defensive distillation baseline (Papernot et al. 2016) at the "
                    "distillation temperature, 10 logits, deployed at T = 1",
    "adversarial": "adversarial-training baseline (its attack and eps in settings), 10 logits",
    "surrogate_U": "black-box surrogate U: undefended like f, seed + 1",
    "surrogate_D": "black-box surrogate D: extended distillation distilled from U, seed + 2",
}


def reproduce_run_configs(config, dataset_name):
    """The run_config.RunConfig of every model bin/reproduce trains (or reuses).

    The models use exactly the settings (and default run names) of `bin/train`
    with the same flags, so runs already made with bin/train in `model_dir` are
    reused. As in the paper, the undefended classifier f is trained like a
    teacher (`teacher_epochs`) and is the teacher of the extended model.
    Surrogates: U = undefended with seed + 1; D = extended distillation
    distilled from U's model with seed + 2.
    """
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
    # The adversarial-training baseline trains --adversarial_epochs, by default as long as
    # f, the model it hardens.
    configs["adversarial"] = run(config.adversarial,
                                 epochs=config.adversarial_epochs or ext.teacher_epochs)
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
    config.evaluation.attack.check_input_shape(dataset.input_shape)
    run_configs = reproduce_run_configs(config, dataset.name)
    # The models' folder is checked before flags.json is written.
    run_dirs.check_writable_dir(config.resolved_model_dir, "model_dir")
    run_name = config.resolved_run_name(dataset.name)
    if config.jacobian_substitute:
        substitute_run.check_test_size(dataset, config.evaluation.num_examples,
                                       config.substitute,
                                       os.path.join(config.output_dir, run_name))
    run_dir, done = open_shared_run(dist, config.output_dir, run_name, config.to_dict())
    if done:
        if config.standard and "standard" not in done and dist.is_chief:
            return _add_standard_stages(config, dataset, run_configs, run_dir, done)
        return done
    announce(config, run_dir)
    t = time.perf_counter()
    specs, training_report = _train_models(config, dataset, run_configs)
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
    if config.standard and dist.is_chief:  # one device; the other workers write nothing
        sections, stage_seconds = standard_run.run_stages(config, dataset, targets, run_dir)
        results.update(sections)
        results["stage_seconds"].update(stage_seconds)
    results["training"] = training_report
    # Per model: the training run's own recorded seconds (also when reused here).
    results["stage_seconds"]["training"] = {
        "seconds_here": training_seconds,
        "seconds_total": sum(t["training_wall_seconds"] for t in training_report.values()),
        "models": {role: {"seconds": t["training_wall_seconds"], "seconds_here": t["seconds_here"],
                          "reused": t["reused"]} for role, t in training_report.items()}}
    return finish_run(run_dir, results, images, config, dataset, t_start, "reproduce", seeds,
                      distribution=dist)


def _add_standard_stages(config, dataset, run_configs, run_dir, done):
    """A run finished before bin/reproduce had the standard evaluation: reuse its models
    (nothing is trained), compute only the standard evaluations and robustness curves
    (keras_edd.runs.standard_run) and write the report again from its results.json with
    them; every other number stays as recorded."""
    t_start = time.perf_counter()
    announce(config, run_dir)
    if config.progress:
        print("finished run without the standard evaluation: adding it", flush=True)
    specs, _ = _train_models(config, dataset, run_configs)
    sections, stage_seconds = standard_run.run_stages(config, dataset,
                                                      [specs[r] for r in TARGETS], run_dir)
    results = {**done, **sections, "run_dir": run_dir,  # where it lives now, if moved
               "stage_seconds": {**done.get("stage_seconds", {}), **stage_seconds},
               "wall_seconds": done.get("wall_seconds", 0.0) + time.perf_counter() - t_start}
    return results_files.write_report(run_dir, results)


def _train_models(config, dataset, run_configs):
    """Train, or reuse (a finished run, or a matching pretrained model), every model of
    REPRODUCE_MODELS in turn; returns (ModelSpecs, results["training"]) by role."""
    training_report = {}
    specs = {}
    installer = _PretrainedInstaller(config, dataset)
    for role in REPRODUCE_MODELS:
        rc = run_configs[role]
        name = rc.resolved_run_name(dataset.name)
        reused = os.path.exists(os.path.join(rc.output_dir, name, "results.json"))
        source = installer.reuse(role, rc, os.path.join(rc.output_dir, name), reused)
        if config.progress:
            doing = "reusing" if reused or source else "training"
            print(f"{doing} {role}: {os.path.join(rc.output_dir, name)}"
                  f"{f' (pretrained {source})' if source else ''}", flush=True)
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
            "pretrained": source,
            "dataset": trained["dataset"], "settings": trained["settings"],
            "training_wall_seconds": trained["wall_seconds"],
            "seconds_here": time.perf_counter() - t_model}
    return specs, training_report


class _PretrainedInstaller:
    """Reuses the models of the pretrained collection `config.pretrained` whose settings
    match (keras_edd.pretrained): installs each as a finished training run."""

    def __init__(self, config, dataset):
        self.collection = config.pretrained
        self.dataset = dataset
        self.progress = config.progress
        self.sources = {}  # role -> the pretrained name its finished run came from
        self._fingerprint = None

    def reuse(self, role, run_config, run_dir, finished):
        """The pretrained name the run of `role` comes from (installed now if it matches
        and the run has not finished), else None."""
        if finished:
            self.sources[role] = pretrained.pretrained_source(run_dir)
            return self.sources[role]
        if not self._usable():
            return None
        teacher = TEACHERS.get(role)
        if teacher is not None and self.sources.get(teacher) != f"{self.collection}:{teacher}":
            return self._skip(role, f"its teacher {teacher} is not the pretrained one")
        info, why_not = pretrained.matching_entry(self.collection, role, run_config.to_dict(),
                                                  self._fingerprint, teacher=teacher)
        if info is None:
            return self._skip(role, why_not)
        run_dirs.prepare_run_dir(os.path.dirname(run_dir), os.path.basename(run_dir),
                                 run_config.to_dict())
        results = pretrained.install_run(self.collection, role, info, run_dir,
                                         run_config.to_dict())
        self.sources[role] = results["pretrained"]["name"]
        return self.sources[role]

    def _usable(self):
        """Whether the collection exists and holds models of this data (checked once;
        says so once when it holds models of other data)."""
        if self._fingerprint is None:
            self._fingerprint, models = "", {}
            if self.collection != "none":
                try:
                    models = pretrained.read_manifest(self.collection)["models"]
                except pretrained.PretrainedError:
                    pass  # no such collection here: train everything, quietly
            if models:
                fingerprint = pretrained.data_fingerprint(self.dataset)
                if any(m["dataset"].get("fingerprint") == fingerprint for m in models.values()):
                    self._fingerprint = fingerprint
                elif self.progress:
                    print(f"not reusing the pretrained collection {self.collection!r}: its "
                          "models were trained on other data", flush=True)
        return bool(self._fingerprint)

    def _skip(self, role, why_not):
        if self.progress:
            print(f"not reusing pretrained {self.collection}:{role}: {why_not}", flush=True)
        return None


def export_pretrained(config, folder, *, command, machine, dataset_note):
    """Write the deployed models of `config`'s finished training runs, and their
    MANIFEST.json, into the pretrained collection `folder` (see keras_edd.pretrained).
    Entries of other roles already in the manifest (models added with
    tools/add_pretrained.py, e.g. other training seeds) are kept when their data is the same."""
    dataset = data_lib.load_data(config.data)
    fingerprint = pretrained.data_fingerprint(dataset)
    run_configs = reproduce_run_configs(config, dataset.name)
    cards = {}
    try:
        kept = pretrained.read_manifest(os.path.basename(folder),
                                        root=os.path.dirname(os.path.abspath(folder)))["models"]
    except pretrained.PretrainedError:
        kept = {}
    for role in REPRODUCE_MODELS:
        run_dir = os.path.join(config.resolved_model_dir,
                               run_configs[role].resolved_run_name(dataset.name))
        if not os.path.isfile(os.path.join(run_dir, "results.json")):
            raise ValueError(f"{role}: {run_dir} has not finished training")
        cards[role], path = pretrained.model_card(
            role, run_dir, description=ROLE_DESCRIPTIONS[role], file=f"{role}.keras",
            teacher=TEACHERS.get(role), fingerprint=fingerprint, dataset_note=dataset_note,
            machine=machine)
        with files.atomic_path(os.path.join(folder, f"{role}.keras")) as tmp:
            shutil.copyfile(path, tmp)
    manifest = {"format": pretrained.MANIFEST_FORMAT, "collection": os.path.basename(folder),
                "command": command, "machine": machine,
                "models": {**cards, **{role: card for role, card in kept.items()
                                       if role not in cards and card.get("dataset", {}).get(
                                           "fingerprint") == fingerprint}},
                "training_digits": pretrained.write_training_digits(folder, dataset)}
    pretrained.write_manifest(folder, manifest)
    return manifest
