"""The compiled training step of keras_edd.defense.training.fit.

One step: gather the batch by index from the training set held in memory, let the
optional training-time adversary replace x by x_adv (gradient stopped through it),
then the temperature cross-entropy plus lambda times the logit penalty
(keras_edd.defense.losses), its gradients and the optimizer's update; the running
means of the epoch (`EpochMeans`) take the loss, its parts and the accuracy.
`compiled_steps` runs several steps per call of one tf.function.

Over the replicas of a tf.distribute strategy, each step runs with `strategy.run`,
replica r of k taking the slice [r * batch / k, (r + 1) * batch / k) of the global
batch; per-replica losses are sums divided by the global batch size, so the summed
gradients (the Keras optimizer all-reduces them) are those of the global mean loss.
"""

import keras
import tensorflow as tf

from keras_edd.defense import losses


class EpochMeans:
    """The running means of one epoch: train/loss, cross_entropy, logit_penalty, accuracy."""

    def __init__(self):
        self.loss = keras.metrics.Mean()
        self.cross_entropy = keras.metrics.Mean()
        self.penalty = keras.metrics.Mean()
        self.accuracy = keras.metrics.Mean()

    def reset(self):
        for metric in (self.loss, self.cross_entropy, self.penalty, self.accuracy):
            metric.reset_state()

    def update(self, loss, cross_entropy, penalty, accuracy):
        self.loss.update_state(loss)
        self.cross_entropy.update_state(cross_entropy)
        self.penalty.update_state(penalty)
        self.accuracy.update_state(accuracy)

    def results(self):
        return {"train/loss": float(self.loss.result()),
                "train/cross_entropy": float(self.cross_entropy.result()),
                "train/logit_penalty": float(self.penalty.result()),
                "train/accuracy": float(self.accuracy.result())}


class _BatchData:
    """The training set as tensors, and a batch of it gathered by index.

    The training set stays in memory as one tensor; each step gathers its batch
    by index, so shuffling costs a permutation, not a copy of every image.
    """

    def __init__(self, images, targets, batch_size):
        self.all_images = tf.convert_to_tensor(images)
        self.all_targets = tf.convert_to_tensor(targets)
        # uint8 batches are scaled inside the compiled step (multiplied by 1/255, which
        # rounds unlike data.to_float's division for half of the values: kept, so trained
        # weights stay those of earlier runs).
        self.scale = 1.0 / 255.0 if self.all_images.dtype == tf.uint8 else 1.0
        self.batch_size = batch_size

    def gather(self, indices):
        x = tf.cast(tf.gather(self.all_images, indices), tf.float32) * self.scale
        return x, tf.gather(self.all_targets, indices)


def _train_step(model, opt, batch, temperature, penalty_weight, means, adversary):
    """One single-device step on the batch `indices` (adversary: on its x_adv)."""

    def train_step(indices, step_seed):
        x, target = batch.gather(indices)
        if adversary is not None:
            x = tf.stop_gradient(adversary(model, x, target, step_seed))
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)  # no-op for float32 logits
            ce = losses.temperature_cross_entropy(target, logits, temperature)
            penalty = losses.logit_penalty(logits)
            loss = ce + penalty_weight * penalty if penalty_weight else ce
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)
        means.update(loss, ce, penalty, tf.cast(
            tf.equal(tf.argmax(logits, -1), tf.argmax(target, -1)), tf.float32))

    return train_step


def _distributed_step(strategy, model, opt, batch, temperature, penalty_weight, means,
                      adversary):
    """One step over the replicas of `strategy` (see the module docstring)."""
    batch_size = batch.batch_size

    def replica_step(indices, step_seed):
        """train_step's work on this replica's slice of the global batch `indices`;
        returns its share of the global means (summed over replicas by the caller)."""
        context = tf.distribute.get_replica_context()
        replica, replicas = context.replica_id_in_sync_group, context.num_replicas_in_sync
        mine = indices[replica * batch_size // replicas:(replica + 1) * batch_size // replicas]
        x, target = batch.gather(mine)
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
        means.update(loss, ce, penalty, correct)

    return distributed_step


def compiled_steps(model, opt, images, targets, *, batch_size, seed, temperature,
                   penalty_weight, means, adversary=None, strategy=None):
    """The tf.function train_steps(batches, first_step) of keras_edd.defense.training.fit:
    one step per row of `batches` ([steps, batch_size] indices into images and targets),
    single-device or over the replicas of `strategy`, each adding to `means`."""
    batch = _BatchData(images, targets, batch_size)
    if strategy is None:
        step_fn = _train_step(model, opt, batch, temperature, penalty_weight, means, adversary)
    else:
        step_fn = _distributed_step(strategy, model, opt, batch, temperature, penalty_weight,
                                    means, adversary)

    @tf.function(input_signature=[tf.TensorSpec([None, batch_size], tf.int32),
                                  tf.TensorSpec([], tf.int64)])
    def train_steps(batches, first_step):
        """Several steps per call (an in-graph loop) to keep Python off the hot path;
        `first_step` is the global index of the first one (keys the adversary's RNG)."""
        for i in tf.range(tf.shape(batches)[0]):
            step_seed = tf.stack([tf.constant(seed, tf.int64), first_step + tf.cast(i, tf.int64)])
            step_fn(batches[i], step_seed)

    return train_steps
