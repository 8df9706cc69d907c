"""Argument checks shared by the configs and the attacks; light (no TensorFlow).

Every check raises ValueError naming the value and what is allowed, and returns
the value (converted where useful), so a check reads as an assignment.
"""

import math
import numbers
import warnings


def require(condition, message):
    """Raise ValueError(message) unless `condition` holds."""
    if not condition:
        raise ValueError(message)


def choices(enum_class):
    """The string values of an enum of choices, in definition order."""
    return tuple(member.value for member in enum_class)


def check_real(name, value, *, low=-math.inf, high=math.inf,
               low_inclusive=True, high_inclusive=True):
    """Raise ValueError unless `value` is a finite real number in the range."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value)):
        raise ValueError(f"{name}={value!r}: expected a finite real number")
    low_ok = value >= low if low_inclusive else value > low
    high_ok = value <= high if high_inclusive else value < high
    if not (low_ok and high_ok):
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        raise ValueError(f"{name}={value!r}: allowed range is {left}{low}, {high}{right}")
    return float(value)


def check_eps(name, value, norm, *, width=1.0, size=None):
    """Check a perturbation radius: one range per norm, stated the same way.

    linf: [0, width] (the width of the input box, clip_max - clip_min); l2: [0, the
    box's diameter] = width * sqrt(size) for inputs of `size` values (28 for MNIST);
    while the input size is not known yet (flags), only the lower end. An L2 radius <= 1 is allowed
    but warned about: it reads like an L_inf budget (an L2 one on MNIST is ~1.5-3).
    """
    if norm == "linf":
        high = width
    else:
        high = math.inf if size is None else width * math.sqrt(size)
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value)):
        raise ValueError(f"{name}={value!r}: expected a finite real number")
    if not 0.0 <= value <= high:
        upper = f"{high:g}" if norm == "linf" or size is not None else \
            "the diameter of the input box (28 for MNIST)"
        what = ", the diameter of the input box" if norm != "linf" and size is not None else ""
        raise ValueError(f"{name}={value!r}: allowed range for norm={norm!r} is "
                         f"[0, {upper}]{what}")
    if norm == "l2" and size is None and 0.0 < value <= 1.0:
        warnings.warn(f"{name}={value!r} with norm='l2' looks like an L_inf budget; an L2 "
                      "radius on MNIST is typically 1.5 to 3 (the diameter of its box is 28)",
                      UserWarning, stacklevel=2)
    return float(value)


def check_int(name, value, *, low=0, high=None):
    """Raise ValueError unless `value` is an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={value!r}: expected an integer")
    if value < low or (high is not None and value > high):
        upper = "inf)" if high is None else f"{high}]"
        raise ValueError(f"{name}={value!r}: allowed range is [{low}, {upper}")
    return int(value)


def check_choice(name, value, choices):
    """Raise ValueError unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}: allowed values are {sorted(choices)}")
    return value


def check_box(clip_min, clip_max):
    """Check the input box [clip_min, clip_max] and return it as floats."""
    clip_min = check_real("clip_min", clip_min)
    clip_max = check_real("clip_max", clip_max)
    if not clip_min < clip_max:
        raise ValueError(f"clip_min={clip_min!r}, clip_max={clip_max!r}: "
                         "need clip_min < clip_max")
    return clip_min, clip_max


def check_reals(name, values, **bounds):
    """A non-empty tuple of numbers, each passing `check_real(name, value, **bounds)`."""
    require(isinstance(values, tuple) and len(values) > 0,
            f"{name}={values!r}: must be a non-empty list of numbers")
    return tuple(check_real(name, value, **bounds) for value in values)


def check_batch_size(batch_size, num_examples):
    """A training batch must fit in the training set (the last partial batch is dropped)."""
    require(batch_size <= num_examples,
            f"batch_size={batch_size} exceeds the {num_examples} training examples")
