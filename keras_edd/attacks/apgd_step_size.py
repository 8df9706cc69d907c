"""APGD's step-size rule (Croce & Hein, ICML 2020), apart from the attack's loop.

Checkpoints w_j = ceil(p_j * nb_iter) with p_0 = 0, p_1 = 0.22 and
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) while p_j <= 1 (`checkpoints`).
At iterate w_j the step eta is halved, and the iterate replaced by x_max, when
  condition 1: fewer than rho * (w_j - w_{j-1}) of the steps since w_{j-1}
               increased the loss; or
  condition 2: eta was not halved at w_{j-1} and f_max has not increased since.
`checkpoint_update` is that rule on a batch, a pure function the compiled loop of
keras_edd.attacks.apgd calls once per iteration; `step_halvings` replays it on
one sample's loss trace (the hand-checked cases of the tests).
"""

import collections

import numpy as np
import tensorflow as tf

from keras_edd.attacks import utils

CheckpointState = collections.namedtuple(
    "CheckpointState",
    ["increases", "previous_loss", "best_loss", "best_at_checkpoint", "halved_at_checkpoint",
     "halve", "improved"])
CheckpointState.__doc__ = """Per-sample bookkeeping of the step-size rule.

increases: steps since the last checkpoint that increased the loss.
previous_loss: f of the current iterate (f_max after a restart from x_max).
best_loss: f_max. best_at_checkpoint: f_max at the last checkpoint.
halved_at_checkpoint: eta was halved at the last checkpoint.
halve: eta is halved now (and the iterate restarts from x_max).
improved: the new iterate is the new x_max.
"""


def checkpoints(nb_iter):
    """Checkpoints [w_0 = 0, w_1, ...] of `nb_iter` iterations, w_j = ceil(p_j * nb_iter).

    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), while
    p_j <= 1; computed in hundredths so that ceil(0.22 * 100) is 22, not 23.
    Repeated values (nb_iter < 17) are kept once. nb_iter = 100 gives
    [0, 22, 41, 57, 70, 80, 87, 93, 99].
    """
    nb_iter = utils.check_int("nb_iter", nb_iter, low=0)
    hundredths = [0, 22]
    while True:
        step = max(hundredths[-1] - hundredths[-2] - 3, 6)
        if hundredths[-1] + step > 100:
            break
        hundredths.append(hundredths[-1] + step)
    points = []
    for p in hundredths:
        w = -(-p * nb_iter // 100)
        if not points or w > points[-1]:
            points.append(w)
    return points


def checkpoint_windows(nb_iter):
    """int32 [nb_iter + 1]: w_j - w_{j-1} at iterate w_j (j >= 1), 0 elsewhere."""
    windows = np.zeros(nb_iter + 1, np.int32)
    points = checkpoints(nb_iter)
    for previous, current in zip(points, points[1:]):
        windows[current] = current - previous
    return windows


def checkpoint_update(increases, previous_loss, best_loss, best_at_checkpoint,
                      halved_at_checkpoint, new_loss, window, rho):
    """One iteration of the step-size rule for a batch; returns a CheckpointState.

    Args (per sample unless said): the fields of the last CheckpointState,
    `new_loss` = f(x^(k+1)), `window` = w_j - w_{j-1} if k + 1 = w_j is a
    checkpoint else 0 (a scalar), and rho. Works eagerly on numpy and in graphs.
    """
    new_loss = tf.convert_to_tensor(new_loss, tf.float32)
    increases = tf.cast(increases, tf.int32) + tf.cast(new_loss > previous_loss, tf.int32)
    improved = new_loss > best_loss
    best_loss = tf.where(improved, new_loss, best_loss)
    at_checkpoint = tf.convert_to_tensor(window) > 0
    window = tf.cast(window, tf.float32)
    few_increases = tf.cast(increases, tf.float32) < rho * window
    stalled = tf.logical_and(tf.logical_not(halved_at_checkpoint),
                             best_loss <= best_at_checkpoint)
    halve = tf.logical_and(at_checkpoint, tf.logical_or(few_increases, stalled))
    return CheckpointState(
        increases=tf.where(at_checkpoint, tf.zeros_like(increases), increases),
        previous_loss=tf.where(halve, best_loss, new_loss),
        best_loss=best_loss,
        best_at_checkpoint=tf.where(at_checkpoint, best_loss, best_at_checkpoint),
        halved_at_checkpoint=tf.where(at_checkpoint, halve, halved_at_checkpoint),
        halve=halve, improved=improved)


def step_halvings(losses, rho=0.75):
    """Replay the step-size rule on one sample's loss trace.

    losses[k] = f(x^(k)) for k = 0..N as the iterations compute them (before
    any restart from x_max), N = len(losses) - 1 iterations. Returns the list of
    iterations k (checkpoints) at which eta is halved.
    """
    losses = np.asarray(losses, np.float32)
    windows = checkpoint_windows(len(losses) - 1)
    first = tf.constant([losses[0]])
    state = CheckpointState(tf.zeros([1], tf.int32), first, first, first,
                            tf.zeros([1], tf.bool), None, None)
    halved = []
    for k in range(1, len(losses)):
        state = checkpoint_update(*state[:5], [losses[k]], windows[k], rho)
        if bool(state.halve[0]):
            halved.append(k)
    return halved
