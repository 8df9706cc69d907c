"""Rates with their uncertainty: k successes out of n, and a 95 % Wilson interval.

Light (no TensorFlow), in the lowest layer: the one implementation of the interval,
used by results.json and its renderers (keras_edd.results_schema), the gradient-masking
check (keras_edd.evaluation.metrics.success_upper_bound) and keras_edd.evaluate. A `Rate`
holds only the counts; its value and interval are derived, so a rate and its interval
can never disagree. `interval_of` gives the interval of a stored fraction and its n.

Wilson score interval (Wilson 1927; Newcombe 1998, method 3), for p = k / n and
z the normal quantile (1.959964 for 95 %):
  centre     = (p + z^2 / (2n)) / (1 + z^2 / n)
  half-width = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
It stays inside [0, 1] and is not degenerate at k = 0 or k = n, unlike the
normal-approximation interval p +- z sqrt(p (1 - p) / n).
"""

import dataclasses
import math
import numbers

# Two-sided 95 %: the 0.975 quantile of the standard normal distribution.
Z_95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval (low, high) of the proportion k / n; see the module docstring."""
    k, n = _check_counts(k, n)
    return wilson_bounds(k / n, n, z)


def wilson_bounds(p: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval (low, high) of an observed proportion p over n trials:
    the formula of the module docstring, for callers that hold p rather than k."""
    if not (isinstance(z, numbers.Real) and math.isfinite(z) and z > 0):
        raise ValueError(f"z={z!r}: expected a finite real number > 0")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"p={p!r}: expected a proportion in [0, 1]")
    _check_counts(0, n)
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def interval_of(rate, n, z=Z_95):
    """The Wilson interval (low, high) of a rate stored as a fraction of n trials (results.json
    keeps the fraction and n); None when there is no rate (None, or n = 0). A rate a
    rounding error outside [0, 1] (1 - 0.9 - 0.1) counts as 0 or 1."""
    if rate is None or not n:
        return None
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) \
            or not -1e-9 <= rate <= 1 + 1e-9:
        raise ValueError(f"rate={rate!r}: expected a fraction in [0, 1]")
    return wilson_bounds(min(1.0, max(0.0, float(rate))), n, z)


def _check_counts(k, n):
    for name, value in (("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name}={value!r}: expected an integer count")
    if n < 1:
        raise ValueError(f"n={n!r}: a rate needs at least one trial (n >= 1)")
    if not 0 <= k <= n:
        raise ValueError(f"k={k!r}: allowed range is [0, n] = [0, {n}]")
    return int(k), int(n)


@dataclasses.dataclass(frozen=True)
class Rate:
    """k of n: `value` = k / n and `interval` = its 95 % Wilson interval."""
    k: int
    n: int

    def __post_init__(self):
        k, n = _check_counts(self.k, self.n)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "n", n)

    @property
    def value(self) -> float:
        return self.k / self.n

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.value:.2%} [{low:.2%}, {high:.2%}] ({self.k}/{self.n})"

    def to_dict(self) -> dict:
        low, high = self.interval
        return {"k": self.k, "n": self.n, "value": self.value, "low": low, "high": high}
