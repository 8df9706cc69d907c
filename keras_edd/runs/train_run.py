"""One training run: data -> teacher -> labels -> distilled model, in a run directory.

`train_run(config)` is what `bin/train` calls. It validates the settings and
loads the data before it writes anything, then works in a run directory
(keras_edd.runs.run_dirs) stage by stage. Each stage's output is kept (`teacher.keras`,
`labels/*.npy`, checkpoints), so a rerun after a crash or a kill resumes where
it stopped.
"""

import glob
import os
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_edd import config as config_lib
from keras_edd import data as data_lib
from keras_edd import distribute, files, models
from keras_edd.attacks import checks
from keras_edd.defense import adversarial_training as at
from keras_edd.defense import labeling, training
from keras_edd.evaluation.metrics import logit_statistics
from keras_edd.reporting import tensorboard
from keras_edd.runs import run_dirs
from keras_edd.validation import check_batch_size


class _Run:
    """One run directory and the dataset/config it trains on."""

    def __init__(self, config, dataset, run_dir, distribution=distribute.LOCAL):
        self.config = config
        self.dataset = dataset
        self.run_dir = run_dir
        self.report = {}
        self.distribution = distribution

    def path(self, *parts):
        return os.path.join(self.run_dir, *parts)

    def train_stage(self, name, num_outputs, targets, *, epochs, temperature=1.0,
                    penalty_weight=0.0, outlier_class=None, seed_offset=0, adversary=None,
                    pgd_eval=None, lr_schedule="constant", learning_rate=None,
                    keep_best=False):
        """Train (or, if `<name>.keras` exists, load) one model of the run.

        adversary, pgd_eval, lr_schedule, keep_best: adversarial training (see
        training.fit); learning_rate: instead of the run's (None: the run's).
        """
        final = self.path(f"{name}.keras")
        ds = self.dataset
        dist = self.distribution
        if dist.agree(os.path.exists(final)):  # the chief's file decides
            model = _shared_model(dist, final, num_outputs, ds.input_shape)
            history = _saved_history(self.path("checkpoints", name))
        else:
            train = self.config.train
            keras.utils.set_random_seed(train.seed + seed_offset)
            with dist.scope():
                model = models.cleverhans_cnn(num_outputs, ds.input_shape,
                                              precision=train.precision)
            history = training.fit(
                model, ds.x_train, targets, epochs=epochs, batch_size=train.batch_size,
                optimizer=train.optimizer,
                learning_rate=learning_rate or train.resolved_learning_rate,
                lr_schedule=lr_schedule, keep_best=keep_best,
                seed=train.seed + seed_offset, temperature=temperature,
                penalty_weight=penalty_weight, eval_data=(ds.x_test, ds.y_test),
                outlier_class=outlier_class, checkpoint_dir=self.path("checkpoints", name),
                log_dir=self.path("logs", name), progress=self.config.progress and dist.is_chief,
                log_epochs=dist.is_chief, description=name, adversary=adversary, pgd_eval=pgd_eval,
                distribution=dist)
            # Saved, evaluated and used as a teacher in float32, whatever it trained in.
            model = models.with_precision(model, "float32")
            files.save_model(model, final)
        clean = models.evaluate_clean(model, ds.x_test, ds.y_test, outlier_class=outlier_class)
        entry = {"path": f"{name}.keras", "outputs": num_outputs,
                 "train_temperature": temperature, "penalty_weight": penalty_weight,
                 "clean_accuracy": clean["accuracy"],
                 "logits_at_T1": logit_statistics(model, ds.x_test),
                 "parameters": int(model.count_params())}
        if outlier_class is not None:
            entry["outlier_class"] = outlier_class
            entry["clean_detected"] = clean["detected"]
        if history is not None:
            entry["history"] = history
        self.report[name] = entry
        return model

    def cached_array(self, name, compute):
        """Load `labels/<name>.npy`, or compute and store it (atomically)."""
        path = self.path("labels", f"{name}.npy")
        dist = self.distribution
        if dist.agree(os.path.exists(path)):  # the chief's file decides
            value = np.load(path) if dist.is_chief else None
            shape = dist.broadcast_json(list(value.shape) if dist.is_chief else None)
            return dist.broadcast(value if dist.is_chief else np.zeros(shape, np.float32))
        value = np.asarray(compute())
        files.atomic_write(path, lambda f: np.save(f, value), binary=True)
        return value


# Training inputs on which a reused teacher's outputs are checked to be logits.
TEACHER_CHECK_EXAMPLES = 100


def train_run(config, *, allow_probability_teacher=False):
    """Run the training pipeline of `config.defense.defense`; returns results.json's dict.

    A reused teacher (`config.defense.teacher_path`) must output logits: one whose
    outputs look like softmax probabilities gives a tiny MC-dropout sigma and
    meaningless outlier labels, so it is refused (ValueError naming the file)
    unless `allow_probability_teacher`, which only warns (also in results.json).
    """
    config.validate()
    t_start = time.perf_counter()
    dist = distribute.start(config.distribution)
    dataset = data_lib.load_data(config.data)
    check_batch_size(config.train.batch_size, len(dataset.y_train))
    defense = config.defense
    # A reused teacher is checked before the run directory exists.
    teacher, run_warnings = _reused_teacher(defense, dataset, allow_probability_teacher)
    # A worker other than the chief works in its private copy of the folders.
    run_dir, finished = run_dirs.prepare_run_dir(dist.private_dir(config.output_dir),
                                                 config.resolved_run_name(dataset.name),
                                                 config.to_dict())
    if dist.agree(finished):
        return _finished_results(dist, run_dir, dataset)
    run = _Run(config, dataset, run_dir, dist)
    stages = {}
    one_hot = training.one_hot(dataset.y_train, dataset.num_classes)
    extra = {}

    if defense.defense == "none":
        run.train_stage("model", dataset.num_classes, one_hot, epochs=config.train.epochs)
    elif defense.defense == "adversarial":
        extra = _train_adversarial(run, one_hot)
    elif defense.defense == "distillation":
        teacher, extra = _train_distillation(run, one_hot, teacher, stages)
    else:
        teacher, extra = _train_extended(run, one_hot, teacher, stages)

    if defense.teacher_path:
        run.report["teacher"] = {"path": os.path.abspath(defense.teacher_path), "reused": True,
                                 "clean_accuracy": models.evaluate_clean(
                                     teacher, dataset.x_test, dataset.y_test)["accuracy"],
                                 "outputs_probabilities": bool(run_warnings)}
    deployed = "model" if defense.defense in ("none", "adversarial") else "distilled"
    results = {
        "run_dir": os.path.abspath(run_dir),
        "defense": defense.defense,
        "temperature": defense.resolved_temperature,
        "dataset": dataset.summary(),
        "seed": config.train.seed,
        "settings": config.to_dict(),
        "models": run.report,
        "deployed_model": run.report[deployed]["path"],
        "clean_test_accuracy": run.report[deployed]["clean_accuracy"],
        "versions": run_dirs.versions(),
        "stage_seconds": stages,
        "wall_seconds": time.perf_counter() - t_start,
        "warnings": run_warnings,
        **extra,
    }
    if dist.kind != "none":
        results["distribution"] = dist.describe()
    if defense.defense == "extended":
        results["clean_test_detected"] = run.report["distilled"]["clean_detected"]
    _log_hparams(run.path("logs"), config, results)
    files.write_json(os.path.join(run_dir, "results.json"), results)
    return results


def _reused_teacher(defense, dataset, allow_probability_teacher):
    """(teacher, warnings): the model at `defense.teacher_path`, or (None, []) without one.

    A teacher whose outputs look like probabilities is refused (ValueError) unless
    `allow_probability_teacher`, which warns instead (the warning is also returned).
    """
    if not defense.teacher_path:
        return None, []
    teacher = models.load_model(defense.teacher_path, num_outputs=dataset.num_classes,
                                input_shape=dataset.input_shape)
    if not _outputs_probabilities(teacher, dataset.x_train[:TEACHER_CHECK_EXAMPLES]):
        return teacher, []
    message = (f"teacher {defense.teacher_path!r}: its outputs look like probabilities "
               "(rows in [0, 1] summing to 1), not logits, so MC-dropout sigma(x) and "
               "the labels made from it are meaningless; remove the final softmax")
    if not allow_probability_teacher:
        raise ValueError(f"{message}, or pass --allow_probability_teacher to use it "
                         "anyway")
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return teacher, [message]


def _train_adversarial(run, one_hot):
    """The adversarial-training baseline: the model trained on the adversary's x_adv,
    with its PGD accuracy on held-out test inputs per epoch. Returns results' extras."""
    config, dataset = run.config, run.dataset
    defense = config.defense
    eps = defense.adv_train_eps
    options = {"step": defense.resolved_adv_train_step}
    if defense.adv_train_attack == "pgd":
        options["steps"] = defense.adv_train_steps
    # The held-out robustness check uses the last test inputs: the evaluation
    # attacks the first ones.
    held_out = slice(-min(config_lib.PGD_CHECK_EXAMPLES, len(dataset.y_test)), None)
    run.train_stage(
        "model", dataset.num_classes, one_hot, epochs=config.train.epochs,
        lr_schedule=defense.adv_train_schedule, learning_rate=(
            defense.adv_train_lr_max if defense.adv_train_schedule == "cyclic" else None),
        keep_best=defense.adv_train_keep_best,
        adversary=at.make_adversary(defense.adv_train_attack, eps, **options),
        pgd_eval=at.pgd_evaluator(data_lib.to_float(dataset.x_test[held_out]),
                                  dataset.y_test[held_out], eps=eps,
                                  seed=config.train.seed))
    return {"adversarial_training": {"attack": defense.adv_train_attack, "eps": eps,
                                     **options, "schedule": defense.adv_train_schedule,
                                     "keep_best": defense.adv_train_keep_best}}


def _train_distillation(run, one_hot, teacher, stages):
    """Defensive distillation: teacher at T (unless reused), its soft labels at T, the
    distilled model at T. Adds the stages' seconds; returns (teacher, results' extras)."""
    config, dataset = run.config, run.dataset
    n = dataset.num_classes
    temperature = config.defense.resolved_temperature
    t = time.perf_counter()
    if teacher is None:
        teacher = run.train_stage("teacher", n, one_hot, epochs=config.defense.teacher_epochs,
                                  temperature=temperature)
    stages["teacher_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    soft = run.cached_array("distillation_labels", lambda: labeling.distillation_labels(
        models.predict_logits(teacher, dataset.x_train), temperature))
    stages["labeling_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    run.train_stage("distilled", n, soft, epochs=config.train.epochs,
                    temperature=temperature, seed_offset=1)
    stages["distilled_seconds"] = time.perf_counter() - t
    return teacher, {"soft_label_max_mean": float(soft.max(axis=1).mean())}


def _train_extended(run, one_hot, teacher, stages):
    """Extended distillation: teacher (unless reused), MC-dropout sigma on the training
    and test inputs, the outlier labels k(x), the distilled model with n + 1 outputs.
    Adds the stages' seconds; returns (teacher, results' extras)."""
    config, dataset, dist = run.config, run.dataset, run.distribution
    defense = config.defense
    n = dataset.num_classes
    t = time.perf_counter()
    if teacher is None:
        teacher = run.train_stage("teacher", n, one_hot, epochs=defense.teacher_epochs)
    stages["teacher_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    label_logs = run.path("logs", "labeling")
    logged = bool(glob.glob(os.path.join(glob.escape(label_logs), "events.out.tfevents.*")))
    labeled = os.path.exists(run.path("labels", "sigma_test.npy"))
    sigma_train = run.cached_array("sigma_train", lambda: labeling.mc_uncertainty(
        teacher, dataset.x_train, passes=defense.mc_passes, seed=config.train.seed,
        precision=config.train.precision, progress=config.progress and dist.is_chief,
        distribution=dist))
    sigma_test = run.cached_array("sigma_test", lambda: labeling.mc_uncertainty(
        teacher, dataset.x_test, passes=defense.mc_passes, seed=config.train.seed + 1,
        precision=config.train.precision, distribution=dist))
    stages["labeling_seconds"] = time.perf_counter() - t
    sigma_max = float(sigma_train.max())
    if not sigma_max > 0:
        raise ValueError("the teacher's MC-dropout sigma is 0 on every training input: "
                         "it has no active dropout, so no outlier labels can be made")
    targets = labeling.outlier_labels(dataset.y_train, sigma_train, sigma_max,
                                      alpha=defense.alpha, num_classes=n)
    extra = {"sigma": {"sigma_max": sigma_max, "mc_passes": defense.mc_passes,
                       "train": labeling.sigma_statistics(sigma_train),
                       "test": labeling.sigma_statistics(sigma_test)},
             "outlier_mass_fraction": float(targets[:, n].mean())}
    if not (labeled and logged):  # a resumed run logs the histograms once, not twice
        _log_labels(label_logs, sigma_train, sigma_test, sigma_max,
                    extra["outlier_mass_fraction"])
    t = time.perf_counter()
    run.train_stage("distilled", n + 1, targets, epochs=config.train.epochs,
                    temperature=defense.resolved_temperature,
                    penalty_weight=defense.penalty_weight, outlier_class=n, seed_offset=1)
    stages["distilled_seconds"] = time.perf_counter() - t
    return teacher, extra


def _shared_model(dist, path, num_outputs, input_shape):
    """The model saved at `path` by the chief, on every worker: the chief loads it, the
    others build the same architecture, take its weights and save them at their `path`."""
    if dist.is_chief:
        model = models.load_model(path, num_outputs=num_outputs, input_shape=input_shape)
        dist.broadcast_variables(model.variables)
        return model
    model = models.cleverhans_cnn(num_outputs, input_shape)
    dist.broadcast_variables(model.variables)
    files.save_model(model, path)
    return model


def _finished_results(dist, run_dir, dataset):
    """results.json of a finished run: the chief's, with (on the other workers) its
    deployed model rebuilt in their private run directory."""
    results = dist.broadcast_json(files.read_json(os.path.join(run_dir, "results.json"))
                                  if dist.is_chief else None)
    if dist.num_workers > 1:
        deployed = next(entry for entry in results["models"].values()
                        if entry.get("path") == results["deployed_model"])
        _shared_model(dist, os.path.join(run_dir, results["deployed_model"]),
                      deployed["outputs"], dataset.input_shape)
        if not dist.is_chief:
            results = dict(results, run_dir=os.path.abspath(run_dir),
                           distribution=dist.describe())
    return results


def _saved_history(checkpoint_dir):
    """The history of a finished stage, from the history.json training.fit keeps beside
    its checkpoints, shaped as fit returns it (None if there is none).

    A run resumed after its teacher was saved reports the teacher's epochs as the
    uninterrupted run does; this call trained nothing (wall_seconds 0).
    """
    path = os.path.join(checkpoint_dir, "history.json")
    if not os.path.exists(path):
        return None
    history = {key: value for key, value in files.read_json(path).items() if value}
    history["resumed_from_epoch"] = len(history.get("epoch", []))
    history["wall_seconds"] = 0.0
    history["training_seconds"] = float(sum(history.get("epoch_seconds", [])))
    return history


def _outputs_probabilities(model, images):
    """True when the model's outputs on `images` look like softmax probabilities."""
    return checks.check_logits(model, data_lib.to_float(images), action="ignore")


def _log_labels(log_dir, sigma_train, sigma_test, sigma_max, outlier_fraction):
    """TensorBoard: sigma histograms and the label mass on the outlier class."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=0):
        tf.summary.histogram("labels/sigma_train", sigma_train)
        tf.summary.histogram("labels/sigma_test", sigma_test)
        tf.summary.scalar("labels/sigma_max", sigma_max)
        tf.summary.scalar("labels/outlier_mass_fraction", outlier_fraction)
    writer.close()


def run_hparams(config):
    """The settings runs are compared by in TensorBoard's hparams dashboard.

    Always the defense, epochs, seed, dataset and batch size; T for the defenses that
    train at a temperature; alpha, N (mc_passes), lambda (penalty_weight) and the
    teacher's epochs for extended distillation; the attack and eps of adversarial
    training. A setting the defense does not use is left out (a blank cell).
    """
    defense, train = config.defense, config.train
    hparams = {"defense": defense.defense, "epochs": train.epochs, "seed": train.seed,
               "dataset": config.data.dataset, "batch_size": train.batch_size}
    if defense.defense in ("distillation", "extended"):
        hparams["temperature"] = float(defense.resolved_temperature)
        hparams["teacher_epochs"] = defense.teacher_epochs
    if defense.defense == "extended":
        hparams.update(alpha=float(defense.alpha), mc_passes=defense.mc_passes,
                       penalty_weight=float(defense.penalty_weight))
    if defense.defense == "adversarial":
        hparams.update(adv_train_attack=defense.adv_train_attack,
                       adv_train_eps=float(defense.adv_train_eps))
    return hparams


def _log_hparams(log_dir, config, results):
    """TensorBoard hparams of the run in logs/ (the session; the per-model folders
    below it hold the per-epoch scalars) with its final numbers as metrics."""
    metrics = {"final/clean_accuracy": results["clean_test_accuracy"],
               "final/training_seconds": sum(
                   m.get("history", {}).get("training_seconds", 0.0)
                   for m in results["models"].values())}
    if "clean_test_detected" in results:
        metrics["final/clean_detected"] = results["clean_test_detected"]
    if "outlier_mass_fraction" in results:
        metrics["final/outlier_mass_fraction"] = results["outlier_mass_fraction"]
    tensorboard.write_hparams(log_dir, run_hparams(config), metrics, step=config.train.epochs)
