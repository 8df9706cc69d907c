"""What `evaluate` accepts, checked once: the model, the images, the labels.

Every check raises a one-line ValueError naming the value and what is allowed.

Images: one rule. uint8 arrays are pixel values 0-255 and are divided by 255;
floating-point arrays must already lie in [0, 1] and are used as they are (a
float above 1, e.g. 0-255 values stored as float, raises rather than being
guessed at); any other dtype raises. Shapes [n, H, W] get a channel axis when
the model wants [H, W, 1].
"""

import numbers
import os

import numpy as np

from keras_edd import models, pretrained
from keras_edd import validation as v


def resolve_model(model):
    """(a Keras model or callable returning logits, a short description of it).

    `model`: an in-memory Keras model (or any callable x -> logits), a path to a
    `.keras` file, or a pretrained name `<collection>:<model>` (e.g. "paper:extended").
    """
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if pretrained.is_pretrained_name(text) and not os.path.exists(text):
            return models.load_pretrained(text), text
        return models.load_model(text), os.path.abspath(text)
    if not callable(model):
        raise ValueError(f"model={model!r}: expected a Keras model, a .keras path or a "
                         "pretrained name such as 'paper:extended'")
    return model, getattr(model, "name", type(model).__name__)


def fit_to_model(model, x: np.ndarray) -> np.ndarray:
    """x with a channel axis added when the model wants one; ValueError on other mismatches."""
    if x.ndim < 2:
        raise ValueError(f"x has shape {x.shape}: expected a batch [n, ...] of images")
    if x.shape[0] == 0:
        raise ValueError("x holds n = 0 examples: expected at least one")
    wanted = getattr(model, "input_shape", None)
    if isinstance(wanted, tuple) and all(d is None or isinstance(d, int) for d in wanted):
        wanted = tuple(wanted[1:])
        if x.shape[1:] + (1,) == wanted:
            x = x[..., None]
        if len(wanted) != x.ndim - 1 or any(
                d is not None and d != s for d, s in zip(wanted, x.shape[1:])):
            raise ValueError(f"x has examples of shape {x.shape[1:]}: the model takes {wanted}")
    return x


def check_labels(y, n: int, num_logits: int, outlier_class: int | None) -> np.ndarray:
    """Integer labels [n] of real classes from integer or one-hot labels.

    Real classes are the logit indices other than `outlier_class`. A one-hot row
    may have one entry per logit, or one per real class when the outlier class
    is the last logit (or there is none).
    """
    y = np.asarray(y)
    real = num_logits - (outlier_class is not None)
    if y.ndim == 2:
        widths = {num_logits} | ({real} if outlier_class in (None, num_logits - 1) else set())
        if y.shape[0] != n or y.shape[1] not in widths:
            raise ValueError(f"y has shape {y.shape}: one-hot labels must be [{n}, "
                             f"{' or '.join(str(w) for w in sorted(widths))}] for a model "
                             f"with {num_logits} logits")
        if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
            raise ValueError("y is 2-D but not one-hot: each row must hold a single 1 and 0s")
        y = y.argmax(axis=1)
    elif y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y has shape {y.shape}: expected [{n}] integer labels (or one-hot)")
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y has dtype {y.dtype}: labels must be integers (or one-hot rows)")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= num_logits:
        raise ValueError(f"y contains labels {y.min()}..{y.max()}: allowed range is "
                         f"[0, {num_logits - 1}] for a model with {num_logits} logits")
    if outlier_class is not None and np.any(y == outlier_class):
        raise ValueError(f"y contains outlier_class={outlier_class}: labels must be real "
                         "classes, the outlier class means 'detected'")
    return y


def check_outlier_class(outlier_class, num_logits: int) -> int | None:
    """None, or a logit index leaving at least two real classes."""
    if outlier_class is None:
        return None
    if isinstance(outlier_class, bool) or not isinstance(outlier_class, numbers.Integral):
        raise ValueError(f"outlier_class={outlier_class!r}: expected None or a logit index")
    if not 0 <= outlier_class < num_logits:
        raise ValueError(f"outlier_class={outlier_class!r}: allowed range is "
                         f"[0, {num_logits - 1}] for a model with {num_logits} logits")
    v.require(num_logits >= 3, f"outlier_class={outlier_class}: the model has {num_logits} "
              "logits; an outlier class needs at least 2 real classes besides it")
    return int(outlier_class)


def check_false_detection(rates) -> tuple[float, ...]:
    """A tuple of clean false-detection rates, each in (0, 1)."""
    if isinstance(rates, numbers.Real):
        rates = (rates,)
    rates = tuple(rates)
    for rate in rates:
        v.check_real("false_detection", rate, low=0.0, high=1.0, low_inclusive=False,
                     high_inclusive=False)
    return tuple(float(rate) for rate in rates)
