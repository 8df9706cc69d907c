"""The optimisers of the Carlini-Wagner L2 attack (keras_edd.attacks.carlini_wagner_l2).

With early_exit="sample" every slot of the search keeps its own optimiser state and
restarts it alone when its input starts a new binary-search step, so AdaDelta and
Adam are written out on tensors with explicit state (`adadelta_update`,
`adam_update`: Keras' update rules, checked against Keras in tests/test_attacks_cw.py).
early_exit="batch" uses the Keras optimisers themselves (`make_optimizer`).
AdaDelta: rho 0.95, epsilon 1e-6 (Zeiler 2012); Adam: Keras' defaults.
"""

import keras
import tensorflow as tf

_ADADELTA_RHO = 0.95
_ADADELTA_EPSILON = 1e-6
_ADAM_BETA_1 = 0.9
_ADAM_BETA_2 = 0.999
_ADAM_EPSILON = 1e-7


def make_optimizer(name, learning_rate):
    """A Keras optimiser for the batch search: "adam", else AdaDelta (rho 0.95, eps 1e-6)."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    return keras.optimizers.Adadelta(learning_rate=learning_rate, rho=_ADADELTA_RHO,
                                     epsilon=_ADADELTA_EPSILON)


def adadelta_update(w, grad, accumulated_grad, accumulated_delta, learning_rate):
    """Keras' AdaDelta step (rho 0.95, epsilon 1e-6) with explicit state.

    Returns (w, accumulated_grad, accumulated_delta) after one step.
    """
    rho = _ADADELTA_RHO
    rms = lambda value: tf.sqrt(value + _ADADELTA_EPSILON)
    accumulated_grad = rho * accumulated_grad + (1 - rho) * tf.square(grad)
    delta = -(rms(accumulated_delta) * grad) / rms(accumulated_grad)
    accumulated_delta = rho * accumulated_delta + (1 - rho) * tf.square(delta)
    return w + learning_rate * delta, accumulated_grad, accumulated_delta


def adam_update(w, grad, momentum, velocity, step, learning_rate):
    """Keras' Adam step with explicit state; `step` [batch] counts from 1 per row.

    The bias correction uses each row's own step count, so rows can restart
    independently. Returns (w, momentum, velocity).
    """
    step = tf.cast(step, w.dtype)
    alpha = (learning_rate * tf.sqrt(1 - tf.pow(_ADAM_BETA_2, step))
             / (1 - tf.pow(_ADAM_BETA_1, step)))
    momentum = momentum + (grad - momentum) * (1 - _ADAM_BETA_1)
    velocity = velocity + (tf.square(grad) - velocity) * (1 - _ADAM_BETA_2)
    alpha = tf.reshape(alpha, [-1] + [1] * (w.shape.rank - 1))
    return w - momentum * alpha / (tf.sqrt(velocity) + _ADAM_EPSILON), momentum, velocity
