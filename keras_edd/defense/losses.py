"""Losses (pure math on logits; no Keras objects).

Temperature softmax: p_T(z) = softmax(z / T). The distilled model is trained with
p_T and deployed at T = 1, so its T=1 logits are T times "sharper" than the ones
it was trained on: this is why defensive distillation needs a large T and why
the extended defense adds a logit penalty.
"""

import tensorflow as tf


def temperature_cross_entropy(soft_labels, logits, temperature=1.0):
    """Mean over the batch of -sum_j k_j log softmax(z / T)_j.

    Args:
      soft_labels: [batch, classes] rows of a probability distribution k(x)
        (one-hot rows give ordinary cross-entropy).
      logits: [batch, classes] model logits z.
      temperature: T > 0; T = 1 is ordinary softmax cross-entropy.
    """
    logits = tf.convert_to_tensor(logits)
    soft_labels = tf.cast(soft_labels, logits.dtype)
    log_probs = tf.nn.log_softmax(logits / tf.cast(temperature, logits.dtype), axis=-1)
    return -tf.reduce_mean(tf.reduce_sum(soft_labels * log_probs, axis=-1))


def logit_penalty(logits):
    """Mean squared logit norm, (1 / batch) sum_i ||z(x_i)||^2 / classes.

    A weight-decay-like term on the *outputs*: training at temperature T only
    constrains z / T, so without it the deployed (T = 1) logits may grow without
    bound and saturate the softmax. It is zero only for all-zero logits and its
    gradient, 2 z / classes, shrinks every logit toward 0 in proportion to its size.
    """
    logits = tf.convert_to_tensor(logits)
    return tf.reduce_mean(tf.square(logits))


def temperature_cross_entropy_per_example(soft_labels, logits, temperature=1.0):
    """[batch] -sum_j k_j log softmax(z / T)_j: `temperature_cross_entropy` before the
    mean, for losses averaged over a global batch split across replicas."""
    logits = tf.convert_to_tensor(logits)
    soft_labels = tf.cast(soft_labels, logits.dtype)
    log_probs = tf.nn.log_softmax(logits / tf.cast(temperature, logits.dtype), axis=-1)
    return -tf.reduce_sum(soft_labels * log_probs, axis=-1)
