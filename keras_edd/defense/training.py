"""The custom training loop around one `tf.function` step (keras_edd.defense.train_step).

`fit` trains any logits model on (image, soft label) pairs with a temperature
softmax cross-entropy plus an optional logit penalty (keras_edd.defense.losses), so the
same loop trains the undefended model (one-hot labels, T = 1), the defensive
distillation baseline and the extended-distillation model. It checkpoints every
epoch with `tf.train.CheckpointManager` and, rerun with the same settings,
resumes from the last finished epoch with the same data order and dropout state.

Reduced precision comes with the model: a model built with
`precision="mixed_bfloat16"` (keras_edd.models) trains here unchanged. Its
variables, and so the gradients, the Adam/Adadelta slots and the checkpoints,
stay float32; only the hidden layers' arithmetic is bfloat16, and the logits
and the loss are float32. bfloat16 has float32's exponent range, so no loss
scaling is needed.

An adversary (keras_edd.defense.adversarial_training) is a callable
(model, x, target, seed) -> x_adv run inside the compiled step with the model in
inference mode; the step then trains on x_adv only (gradient stopped through it),
so `train/accuracy` is on x_adv. `seed` is [run seed, global step]: the random
starts are stateless, so a resumed run draws the same ones.

With a distribution (a keras_edd.distribute.Distribution with a strategy; None, or
one without, is the single-device loop) `model` must have been built in its scope,
and each step runs on every replica (keras_edd.defense.train_step). After a resume,
every worker takes the chief's restored state. Each worker writes where
`checkpoint_dir` and `log_dir` point (a non-chief worker is given a private folder
by its caller, keras_edd.runs.train_run).
"""

import contextlib
import glob
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_edd import files, models
from keras_edd import progress as progress_lib
from keras_edd.config import LR_SCHEDULES, TRAIN_LEARNING_RATES
from keras_edd.defense.train_step import EpochMeans, compiled_steps
from keras_edd.validation import check_batch_size

STEPS_PER_CALL = 16  # train steps run per tf.function call


CYCLIC_PEAK_AT = 0.4  # of the steps: Wong, Rice & Kolter (2020)


@keras.saving.register_keras_serializable(package="keras_edd")
class CyclicLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle schedule of Wong, Rice & Kolter (2020): the learning rate rises
    linearly from 0 to `peak` over the first 40 % of `total_steps`, then falls
    linearly to 0 at `total_steps`. A function of the optimizer's step count, which
    the checkpoints keep, so a resumed run follows the same schedule."""

    def __init__(self, peak, total_steps):
        self.peak = float(peak)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rise = max(CYCLIC_PEAK_AT * self.total_steps, 1.0)
        fall = max(self.total_steps - rise, 1.0)
        up = step / rise
        down = (self.total_steps - step) / fall
        return self.peak * tf.clip_by_value(tf.minimum(up, down), 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps}


def make_optimizer(name, learning_rate):
    """A fresh Keras optimizer (one per model: Keras 3 optimizers bind to variables);
    `learning_rate` a number or a LearningRateSchedule."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adadelta":
        return keras.optimizers.Adadelta(learning_rate)
    raise ValueError(f"optimizer={name!r}: allowed values are adam, adadelta")


def one_hot(labels, num_classes):
    """Integer labels -> float32 one-hot rows."""
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels)]


def epoch_order(num_examples, batch_size, seed, epoch):
    """[steps, batch_size] int32 example indices of one epoch, a function of
    (seed, epoch) only, so a resumed run sees the same order. The remainder
    (fewer than batch_size examples, different each epoch) is dropped."""
    rng = np.random.default_rng([seed, epoch])
    steps = num_examples // batch_size
    return rng.permutation(num_examples)[:steps * batch_size].reshape(steps, batch_size).astype(
        np.int32)


def fit(model, images, targets, *, epochs, batch_size=128, optimizer="adam", learning_rate=None,
        seed=0, temperature=1.0, penalty_weight=0.0, eval_data=None, outlier_class=None,
        checkpoint_dir=None, log_dir=None, progress=True, log_epochs=True, description="train",
        adversary=None, pgd_eval=None, distribution=None, lr_schedule="constant",
        keep_best=False):
    """Train `model` in place with the custom loop; resume from `checkpoint_dir`.

    Args:
      model: a Keras model returning logits, in float32 or mixed_bfloat16
        (see the module docstring); the loss is computed in float32.
      images: uint8 or float32 NHWC training images.
      targets: [n, classes] soft-label rows (use `one_hot` for hard labels).
      epochs, batch_size, optimizer, learning_rate, seed: the optimisation.
        The last partial batch is dropped so the step is traced once.
      lr_schedule: "constant", or "cyclic" (`CyclicLearningRate` peaking at learning_rate).
      temperature: T of the softmax in the loss; inference is always at T = 1.
      penalty_weight: weight lambda of `losses.logit_penalty` (0 disables it).
      eval_data: optional (images, labels) evaluated after every epoch.
      outlier_class: index of the outlier class, to also log the detected rate.
      checkpoint_dir: where a CheckpointManager keeps the last epochs.
      log_dir: TensorBoard folder (`train/loss`, `train/accuracy`, ...).
      progress: show a progress bar per epoch (on a terminal only, see keras_edd.progress).
      log_epochs: print one summary line per epoch.
      adversary: optional training-time adversary (keras_edd.defense.adversarial_training;
        see the module docstring).
      pgd_eval: optional callable model -> robust accuracy on a held-out slice
        (e.g. `adversarial_training.pgd_evaluator`), run after every epoch and
        logged as `eval/pgd_accuracy`, so catastrophic overfitting shows.
      keep_best: with pgd_eval, end with the weights of the epoch of highest
        `eval/pgd_accuracy` (the first of equals; history["kept_epoch"]), not the last:
        early stopping on held-out robustness (Rice et al. 2020); see `_BestEpoch`.
      distribution: a keras_edd.distribute.Distribution with a strategy, or None
        (see the module docstring).
    Returns:
      A history dict: per-epoch lists of the logged values (every epoch, also
      those before a resume), `resumed_from_epoch`, `wall_seconds` of this call
      and `training_seconds`, the sum of all epochs' times.
    """
    targets = np.asarray(targets, np.float32)
    strategy = distribution.strategy if distribution is not None else None
    _check_fit(model, images, targets, batch_size, strategy, lr_schedule, keep_best, pgd_eval)
    opt, epoch_var = _optimizer_and_epoch(
        model, optimizer, _learning_rate(optimizer, learning_rate, lr_schedule,
                                         epochs * (len(images) // batch_size)), strategy)
    manager = _restore(model, opt, epoch_var, checkpoint_dir)
    if distribution is not None and distribution.num_workers > 1:
        distribution.broadcast_variables(
            list(model.variables) + list(opt.variables) + [epoch_var])
    writer = tf.summary.create_file_writer(log_dir) if log_dir else None

    means = EpochMeans()
    train_steps = compiled_steps(model, opt, images, targets, batch_size=batch_size, seed=seed,
                                 temperature=float(temperature),
                                 penalty_weight=float(penalty_weight), means=means,
                                 adversary=adversary, strategy=strategy)

    start_epoch = int(epoch_var.numpy())
    # The per-epoch history is checkpointed beside the weights, so a resumed run
    # reports every epoch, not only those after the restart.
    history_path = os.path.join(checkpoint_dir, "history.json") if checkpoint_dir else None
    history = _resumed_history(history_path, start_epoch)
    best = _BestEpoch(model, checkpoint_dir, history) if keep_best else None
    steps = len(images) // batch_size
    t_start = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        t_epoch = time.perf_counter()
        means.reset()
        order = epoch_order(len(images), batch_size, seed, epoch)
        with progress_lib.bar(total=steps, desc=f"{description} epoch {epoch + 1}/{epochs}",
                              progress=progress, unit="batch") as bar:
            _run_epoch(train_steps, order, epoch * steps, bar)
        values = means.results()
        values.update(_evaluate_epoch(model, eval_data, outlier_class, pgd_eval))
        values["epoch_seconds"] = time.perf_counter() - t_epoch
        _record_epoch(history, epoch + 1, values, best)
        _checkpoint(epoch + 1, epoch_var, manager, history_path, history)
        if writer:  # after the checkpoint: a resumed run never logs an epoch twice
            _write_epoch_summaries(writer, epoch + 1, values, opt, steps * batch_size)
        if log_epochs:
            _log_epoch(description, epoch + 1, epochs, values)
    return _finished_history(history, start_epoch, t_start, best)


class _BestEpoch:
    """The weights of the epoch with the highest held-out PGD accuracy so far: in memory,
    and in `checkpoint_dir`/best.weights.h5 (written before the epoch's history, so a
    resumed run's history never names a best epoch whose weights were not kept)."""

    FILE = "best.weights.h5"

    def __init__(self, model, checkpoint_dir, history):
        self.model = model
        self.path = os.path.join(checkpoint_dir, self.FILE) if checkpoint_dir else None
        self.weights = None
        scores = history.get("eval/pgd_accuracy", [])
        self.epoch = history["epoch"][int(np.argmax(scores))] if scores else None
        self.score = max(scores) if scores else -np.inf

    def offer(self, epoch, score):
        if score <= self.score:
            return
        self.epoch, self.score = epoch, score
        self.weights = [np.array(w) for w in self.model.get_weights()]
        if self.path:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            temporary = os.path.join(os.path.dirname(self.path), ".tmp-" + self.FILE)
            self.model.save_weights(temporary)
            os.replace(temporary, self.path)

    def restore(self):
        """Put the best epoch's weights back into the model; returns that epoch."""
        if self.weights is not None:
            self.model.set_weights(self.weights)
        elif self.path and os.path.exists(self.path):  # found by an earlier, killed run
            self.model.load_weights(self.path)
        return self.epoch


def _learning_rate(optimizer, learning_rate, lr_schedule, total_steps):
    """The optimizer's learning rate: a number (None: the optimizer's default) or, for
    lr_schedule "cyclic", a CyclicLearningRate peaking at it over `total_steps`."""
    if learning_rate is None:
        learning_rate = TRAIN_LEARNING_RATES.get(optimizer)
    if lr_schedule == "cyclic":
        return CyclicLearningRate(learning_rate, total_steps)
    return learning_rate


def _check_fit(model, images, targets, batch_size, strategy, lr_schedule="constant",
               keep_best=False, pgd_eval=None):
    """ValueError for targets that do not fit the model, a batch too small for the
    data or for the replicas of `strategy`, an unknown schedule, or keep_best without
    the PGD check that ranks the epochs."""
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={lr_schedule!r}: allowed values are "
                         f"{', '.join(LR_SCHEDULES)}")
    if keep_best and pgd_eval is None:
        raise ValueError("keep_best needs pgd_eval: the epochs are ranked by its accuracy")
    if targets.ndim != 2 or targets.shape[1] != model.output_shape[-1]:
        raise ValueError(f"targets of shape {targets.shape} do not match the model's "
                         f"{model.output_shape[-1]} outputs")
    check_batch_size(batch_size, len(images))
    if strategy is not None and batch_size < strategy.num_replicas_in_sync:
        raise ValueError(f"batch_size={batch_size}: must be at least the "
                         f"{strategy.num_replicas_in_sync} replicas of the distribution")


def _run_epoch(train_steps, order, first_step, bar):
    """The steps of one epoch, STEPS_PER_CALL per call of the compiled `train_steps`;
    `order` is the epoch's [steps, batch] indices, `first_step` its first global step."""
    for first in range(0, len(order), STEPS_PER_CALL):
        chunk = order[first:first + STEPS_PER_CALL]
        train_steps(chunk, first_step + first)
        bar.update(len(chunk))


def _evaluate_epoch(model, eval_data, outlier_class, pgd_eval):
    """The eval/ values after an epoch: clean accuracy (and detected rate) on
    `eval_data`, PGD accuracy from `pgd_eval`, each when given."""
    values = {}
    if eval_data is not None:
        clean = models.evaluate_clean(model, *eval_data, outlier_class=outlier_class)
        values["eval/accuracy"] = clean["accuracy"]
        if outlier_class is not None:
            values["eval/detected"] = clean["detected"]
    if pgd_eval is not None:
        values["eval/pgd_accuracy"] = float(pgd_eval(model))
    return values


def _optimizer_and_epoch(model, optimizer, learning_rate, strategy):
    """A fresh optimizer built for the model's variables (a learning rate or schedule)
    and the epoch counter, in the strategy's scope if any."""
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        opt = make_optimizer(optimizer, learning_rate)
        opt.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    return opt, epoch_var


def _checkpoint(epoch, epoch_var, manager, history_path, history):
    """Mark `epoch` finished: the epoch counter, then, with a checkpoint manager,
    history.json and the checkpoint.

    History first: if a kill lands between the two writes, the resumed run drops the
    extra epoch (filtered by the checkpoint's epoch) and redoes it.
    """
    epoch_var.assign(epoch)
    if manager:
        try:
            files.write_json(history_path, history)
            manager.save(checkpoint_number=epoch)
        except (OSError, tf.errors.OpError) as exc:  # e.g. ResourceExhaustedError: disk full
            folder = manager.directory
            for leftover in glob.glob(os.path.join(glob.escape(folder), f"ckpt-{epoch}_temp*")):
                shutil.rmtree(leftover, ignore_errors=True)
            reason = getattr(exc, "strerror", None) or getattr(exc, "message", None) or str(exc)
            raise ValueError(
                f"checkpoint folder {folder!r}: cannot write the checkpoint of epoch {epoch} "
                f"({reason.splitlines()[0] if reason else type(exc).__name__}); make room and "
                "rerun the same command to resume") from None


def _record_epoch(history, epoch, values, best):
    """Append one epoch's values to the history; offer its weights to `best` (if any)
    first, so that they are kept before the history names the epoch."""
    if best is not None:
        best.offer(epoch, values["eval/pgd_accuracy"])
    history["epoch"].append(epoch)
    for key, value in values.items():
        history[key].append(value)


def _finished_history(history, start_epoch, t_start, best=None):
    """fit's return value: the logged lists, the epoch resumed from, the seconds; with
    `best`, the model gets the best epoch's weights back and `kept_epoch` names it."""
    history = {k: v for k, v in history.items() if v}
    if best is not None:
        history["kept_epoch"] = best.restore()
    history["resumed_from_epoch"] = start_epoch
    history["wall_seconds"] = time.perf_counter() - t_start  # this call only
    history["training_seconds"] = float(sum(history.get("epoch_seconds", [])))  # all epochs
    return history


def _restore(model, opt, epoch_var, checkpoint_dir):
    """A CheckpointManager over checkpoint_dir (None without one), restored from its
    latest checkpoint when there is one."""
    if not checkpoint_dir:
        return None
    # Non-trainable variables hold the dropout RNG state, which tf.train.Checkpoint
    # does not reach through a Keras 3 model: list them so resuming is exact.
    ckpt = tf.train.Checkpoint(model=model, optimizer=opt, epoch=epoch_var,
                               model_state=list(model.non_trainable_variables))
    manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    return manager


def _resumed_history(history_path, start_epoch):
    """The per-epoch history lists, with the epochs a resumed run already finished."""
    history = {"epoch": [], "train/loss": [], "train/accuracy": [], "train/cross_entropy": [],
               "train/logit_penalty": [], "eval/accuracy": [], "eval/detected": [],
               "eval/pgd_accuracy": [], "epoch_seconds": []}
    if start_epoch and history_path and os.path.exists(history_path):
        saved = files.read_json(history_path)
        # Epochs are stored in order, so those the checkpoint covers are a prefix.
        done = sum(e <= start_epoch for e in saved.get("epoch", []))
        for key in history:
            history[key] = saved.get(key, [])[:done]
    return history


def _write_epoch_summaries(writer, epoch, values, opt, images_per_epoch):
    """TensorBoard scalars of one epoch: the logged values, the learning rate, the
    throughput."""
    with writer.as_default(step=epoch):
        for key, value in values.items():
            if "/" in key:
                tf.summary.scalar(key, value)
        tf.summary.scalar("train/learning_rate", float(opt.learning_rate.numpy()))
        tf.summary.scalar("train/images_per_second", images_per_epoch / values["epoch_seconds"])
    writer.flush()


def _log_epoch(description, epoch, epochs, values):
    """One summary line per epoch, above the progress bars."""
    shown = ", ".join(f"{k.split('/')[-1] if k.startswith('train') else k}={v:.4f}"
                      for k, v in values.items() if k != "epoch_seconds")
    tqdm.write(f"{description} epoch {epoch}/{epochs}: {shown} "
               f"({values['epoch_seconds']:.1f}s)")
