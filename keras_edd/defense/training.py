"""The custom training loop: one `tf.function` step with `GradientTape`.

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
"""

import contextlib
import os
import time
import weakref

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_edd import progress as progress_lib
from keras_edd.config import DEFAULT_LEARNING_RATES
from keras_edd.data import make_pipeline
from keras_edd.defense import losses
from keras_edd.runs import run_dirs
from keras_edd.validation import check_batch_size

EVAL_BATCH_SIZE = 1000
STEPS_PER_CALL = 16  # train steps run per tf.function call


def make_optimizer(name, learning_rate):
    """A fresh Keras optimizer (one per model: Keras 3 optimizers bind to variables)."""
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


def predict_logits(model, images, batch_size=EVAL_BATCH_SIZE):
    """Logits of a model at inference (training=False) for uint8 or float images."""
    ds = make_pipeline(images, np.zeros(len(images), np.int32), batch_size)
    step = _inference_step(model)
    return np.concatenate([step(x).numpy() for x, _ in ds], axis=0)


_INFERENCE_STEPS = weakref.WeakKeyDictionary()


def _inference_step(model):
    """One compiled inference function per model (traced once, reused)."""
    if model not in _INFERENCE_STEPS:
        _INFERENCE_STEPS[model] = tf.function(lambda x: model(x, training=False))
    return _INFERENCE_STEPS[model]


def evaluate(model, images, labels, *, outlier_class=None, batch_size=EVAL_BATCH_SIZE):
    """Clean accuracy and, for models with an outlier class, the detected rate."""
    predictions = predict_logits(model, images, batch_size).argmax(axis=1)
    result = {"accuracy": float(np.mean(predictions == np.asarray(labels)))}
    if outlier_class is not None:
        result["detected"] = float(np.mean(predictions == outlier_class))
    return result


def fit(model, images, targets, *, epochs, batch_size=128, optimizer="adam", learning_rate=None,
        seed=0, temperature=1.0, penalty_weight=0.0, eval_data=None, outlier_class=None,
        checkpoint_dir=None, log_dir=None, progress=True, log_epochs=True, description="train",
        adversary=None, pgd_eval=None, distribution=None):
    """Train `model` in place with the custom loop; resume from `checkpoint_dir`.

    Args:
      model: a Keras model returning logits, in float32 or mixed_bfloat16
        (see the module docstring); the loss is computed in float32.
      images: uint8 or float32 NHWC training images.
      targets: [n, classes] soft-label rows (use `one_hot` for hard labels).
      epochs, batch_size, optimizer, learning_rate, seed: the optimisation.
        The last partial batch is dropped so the step is traced once.
      temperature: T of the softmax in the loss; inference is always at T = 1.
      penalty_weight: weight lambda of `losses.logit_penalty` (0 disables it).
      eval_data: optional (images, labels) evaluated after every epoch.
      outlier_class: index of the outlier class, to also log the detected rate.
      checkpoint_dir: where a CheckpointManager keeps the last epochs.
      log_dir: TensorBoard folder (`train/loss`, `train/accuracy`, ...).
      progress: show a progress bar per epoch (on a terminal only, see keras_edd.progress).
      log_epochs: print one summary line per epoch.
      adversary: optional training-time adversary (keras_edd.defense.adversarial_training),
        a callable (model, x, target, seed) -> x_adv run inside the compiled step
        with the model in inference mode; the step then trains on x_adv only
        (gradient stopped through it), so `train/accuracy` is on x_adv. `seed` is
        [run seed, global step]: the random starts are stateless, so a resumed
        run draws the same ones.
      pgd_eval: optional callable model -> robust accuracy on a held-out slice
        (e.g. `adversarial_training.pgd_evaluator`), run after every epoch and
        logged as `eval/pgd_accuracy`, so catastrophic overfitting shows.
      distribution: a keras_edd.distribute.Distribution with a strategy (None, or
        one without: the single-device loop). `model` must have been built in its
        scope. Each step runs with `strategy.run`, replica r of k taking the slice
        [r * batch / k, (r + 1) * batch / k) of the global batch; per-replica
        losses are sums divided by the global batch size, so the summed gradients
        (the Keras optimizer all-reduces them) are those of the global mean loss.
        After a resume, every worker takes the chief's restored state. Each worker
        writes where `checkpoint_dir` and `log_dir` point (a non-chief worker is
        given a private folder by its caller, keras_edd.runs.train_run).
    Returns:
      A history dict: per-epoch lists of the logged values (every epoch, also
      those before a resume), `resumed_from_epoch`, `wall_seconds` of this call
      and `training_seconds`, the sum of all epochs' times.
    """
    targets = np.asarray(targets, np.float32)
    if targets.ndim != 2 or targets.shape[1] != model.output_shape[-1]:
        raise ValueError(f"targets of shape {targets.shape} do not match the model's "
                         f"{model.output_shape[-1]} outputs")
    check_batch_size(batch_size, len(images))
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES.get(optimizer)
    strategy = distribution.strategy if distribution is not None else None
    if strategy is not None and batch_size < strategy.num_replicas_in_sync:
        raise ValueError(f"batch_size={batch_size}: must be at least the "
                         f"{strategy.num_replicas_in_sync} replicas of the distribution")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        opt = make_optimizer(optimizer, learning_rate)
        opt.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    manager = None
    if checkpoint_dir:
        # Non-trainable variables hold the dropout RNG state, which tf.train.Checkpoint
        # does not reach through a Keras 3 model: list them so resuming is exact.
        ckpt = tf.train.Checkpoint(model=model, optimizer=opt, epoch=epoch_var,
                                   model_state=list(model.non_trainable_variables))
        manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=2)
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    if distribution is not None and distribution.num_workers > 1:
        distribution.broadcast_variables(
            list(model.variables) + list(opt.variables) + [epoch_var])
    writer = tf.summary.create_file_writer(log_dir) if log_dir else None

    loss_mean = keras.metrics.Mean()
    ce_mean = keras.metrics.Mean()
    penalty_mean = keras.metrics.Mean()
    accuracy = keras.metrics.Mean()
    temperature = float(temperature)
    penalty_weight = float(penalty_weight)
    # The training set stays in memory as one tensor; each step gathers its batch
    # by index, so shuffling costs a permutation, not a copy of every image.
    all_images = tf.convert_to_tensor(images)
    all_targets = tf.convert_to_tensor(targets)
    scale = 1.0 / 255.0 if all_images.dtype == tf.uint8 else 1.0

    def train_step(indices, step_seed):
        x = tf.cast(tf.gather(all_images, indices), tf.float32) * scale
        target = tf.gather(all_targets, indices)
        if adversary is not None:
            x = tf.stop_gradient(adversary(model, x, target, step_seed))
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)  # no-op for float32 logits
            ce = losses.temperature_cross_entropy(target, logits, temperature)
            penalty = losses.logit_penalty(logits)
            loss = ce + penalty_weight * penalty if penalty_weight else ce
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)
        loss_mean.update_state(loss)
        ce_mean.update_state(ce)
        penalty_mean.update_state(penalty)
        accuracy.update_state(tf.cast(
            tf.equal(tf.argmax(logits, -1), tf.argmax(target, -1)), tf.float32))

    def replica_step(indices, step_seed):
        """train_step's work on this replica's slice of the global batch `indices`;
        returns its share of the global means (summed over replicas by the caller)."""
        context = tf.distribute.get_replica_context()
        replica, replicas = context.replica_id_in_sync_group, context.num_replicas_in_sync
        mine = indices[replica * batch_size // replicas:(replica + 1) * batch_size // replicas]
        x = tf.cast(tf.gather(all_images, mine), tf.float32) * scale
        target = tf.gather(all_targets, mine)
        if adversary is not None:
            x = tf.stop_gradient(adversary(model, x, target, step_seed))
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)
            ce = tf.reduce_sum(losses.temperature_cross_entropy_per_example(
                target, logits, temperature)) / batch_size
            penalty = tf.reduce_sum(tf.square(logits)) / (
                batch_size * tf.cast(tf.shape(logits)[-1], tf.float32))
            loss = ce + penalty_weight * penalty if penalty_weight else ce
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)  # all-reduces (sums) the gradients
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(logits, -1), tf.argmax(target, -1)), tf.float32)) / batch_size
        return tf.stack([loss, ce, penalty, correct])

    def distributed_step(indices, step_seed):
        shares = strategy.run(replica_step, args=(indices, step_seed))
        loss, ce, penalty, correct = tf.unstack(
            strategy.reduce(tf.distribute.ReduceOp.SUM, shares, axis=None))
        loss_mean.update_state(loss)
        ce_mean.update_state(ce)
        penalty_mean.update_state(penalty)
        accuracy.update_state(correct)

    step_fn = train_step if strategy is None else distributed_step

    @tf.function(input_signature=[tf.TensorSpec([None, batch_size], tf.int32),
                                  tf.TensorSpec([], tf.int64)])
    def train_steps(batches, first_step):
        """Several steps per call (an in-graph loop) to keep Python off the hot path;
        `first_step` is the global index of the first one (keys the adversary's RNG)."""
        for i in tf.range(tf.shape(batches)[0]):
            step_seed = tf.stack([tf.constant(seed, tf.int64), first_step + tf.cast(i, tf.int64)])
            step_fn(batches[i], step_seed)

    history = {"epoch": [], "train/loss": [], "train/accuracy": [], "train/cross_entropy": [],
               "train/logit_penalty": [], "eval/accuracy": [], "eval/detected": [],
               "eval/pgd_accuracy": [], "epoch_seconds": []}
    start_epoch = int(epoch_var.numpy())
    # The per-epoch history is checkpointed beside the weights, so a resumed run
    # reports every epoch, not only those after the restart.
    history_path = os.path.join(checkpoint_dir, "history.json") if checkpoint_dir else None
    if start_epoch and history_path and os.path.exists(history_path):
        saved = run_dirs.read_json(history_path)
        # Epochs are stored in order, so those the checkpoint covers are a prefix.
        done = sum(e <= start_epoch for e in saved.get("epoch", []))
        for key in history:
            history[key] = saved.get(key, [])[:done]
    steps = len(images) // batch_size
    t_start = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        t_epoch = time.perf_counter()
        for metric in (loss_mean, ce_mean, penalty_mean, accuracy):
            metric.reset_state()
        order = epoch_order(len(images), batch_size, seed, epoch)
        with progress_lib.bar(total=steps, desc=f"{description} epoch {epoch + 1}/{epochs}",
                              progress=progress, unit="batch") as bar:
            for first in range(0, steps, STEPS_PER_CALL):
                chunk = order[first:first + STEPS_PER_CALL]
                train_steps(chunk, epoch * steps + first)
                bar.update(len(chunk))
        values = {"train/loss": float(loss_mean.result()),
                  "train/cross_entropy": float(ce_mean.result()),
                  "train/logit_penalty": float(penalty_mean.result()),
                  "train/accuracy": float(accuracy.result())}
        if eval_data is not None:
            clean = evaluate(model, *eval_data, outlier_class=outlier_class)
            values["eval/accuracy"] = clean["accuracy"]
            if outlier_class is not None:
                values["eval/detected"] = clean["detected"]
        if pgd_eval is not None:
            values["eval/pgd_accuracy"] = float(pgd_eval(model))
        values["epoch_seconds"] = time.perf_counter() - t_epoch
        history["epoch"].append(epoch + 1)
        for key, value in values.items():
            history[key].append(value)
        if writer:
            with writer.as_default(step=epoch + 1):
                for key, value in values.items():
                    if "/" in key:
                        tf.summary.scalar(key, value)
                tf.summary.scalar("train/learning_rate", float(opt.learning_rate.numpy()))
                tf.summary.scalar("train/images_per_second",
                                  steps * batch_size / values["epoch_seconds"])
            writer.flush()
        epoch_var.assign(epoch + 1)
        if manager:
            # History first: if a kill lands between the two writes, the resumed run
            # drops the extra epoch (filtered by the checkpoint's epoch) and redoes it.
            run_dirs.write_json(history_path, history)
            manager.save(checkpoint_number=epoch + 1)
        if log_epochs:
            shown = ", ".join(f"{k.split('/')[-1] if k.startswith('train') else k}={v:.4f}"
                              for k, v in values.items() if k != "epoch_seconds")
            tqdm.write(f"{description} epoch {epoch + 1}/{epochs}: {shown} "
                       f"({values['epoch_seconds']:.1f}s)")
    history = {k: v for k, v in history.items() if v}
    history["resumed_from_epoch"] = start_epoch
    history["wall_seconds"] = time.perf_counter() - t_start  # this call only
    history["training_seconds"] = float(sum(history.get("epoch_seconds", [])))  # all epochs
    return history
