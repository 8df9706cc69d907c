"""The typed result of `robustness_curve`: eps* per digit, robust accuracy over an eps grid.

Light (no TensorFlow). A frozen dataclass with read-only arrays; `summary()` renders
it as a short table, `to_dict()` / `to_json()` as JSON (every field but the
adversarial images; an infinite eps* or median, "never broken", is null).
"""

import dataclasses
import json
import math

import numpy as np

from keras_edd.robustness.rates import Rate
from keras_edd.robustness.result import frozen_array

# summary() shows at most this many grid points (evenly spread, the ends included).
SUMMARY_ROWS = 11


def _finite_or_none(value):
    return float(value) if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class RobustnessCurve:
    """What `keras_edd.robustness_curve` measured; see it for the definitions.

    model: what was evaluated (a name, a path or the model's name).
    norm: "linf" or "l2"; perturbations stay in the box [0, 1].
    attacks: the attacks run, in order (minimum-norm first, then the fixed-eps
      attacks at every grid point); settings: attack name -> its keyword settings.
    outlier_class: the "detected" logit, or None for a plain model.
    n: the number of digits; clean_accuracy: argmax of all logits = y.
    eps_grid: float64 [g], increasing; robust_accuracy: one Rate per grid point,
      #{digits with eps* > eps} of n (non-increasing; at eps = 0 the clean accuracy).
    eps_star: float64 [n], per digit the smallest norm of an adversarial example
      found (0 for a digit wrong when clean, inf where none was found): an upper
      bound of the digit's true minimal adversarial norm.
    found_by: per digit "clean", the attack that found eps*, or None (inf).
    x_adv: float32 [n, ...], the adversarial example of norm eps* (x where none).
    median_eps: the median of eps* (the ceil(n/2)-th smallest, inf included): the
      smallest eps at which at most half of the digits are robust.
    checks, warnings: what the sanity checks measured; every warning issued.
    seed, seconds: the seed of the attacks and the wall time.
    """
    model: str
    norm: str
    attacks: tuple[str, ...]
    settings: dict
    outlier_class: int | None
    n: int
    clean_accuracy: Rate
    eps_grid: np.ndarray
    robust_accuracy: tuple[Rate, ...]
    eps_star: np.ndarray
    found_by: tuple
    x_adv: np.ndarray
    median_eps: float
    checks: dict
    warnings: tuple[str, ...]
    seed: int
    seconds: float

    def __post_init__(self):
        for name in ("eps_grid", "eps_star", "x_adv"):
            object.__setattr__(self, name, frozen_array(getattr(self, name)))

    def summary(self) -> str:
        """A short table: clean accuracy, median eps*, robust accuracy on the grid."""
        lines = [f"{self.model}: robustness curve, {self.norm}, n={self.n}"
                 + (f", outlier class {self.outlier_class}"
                    if self.outlier_class is not None else "")
                 + f"; attacks {', '.join(self.attacks)}",
                 f"clean accuracy    {self.clean_accuracy}"]
        if math.isfinite(self.median_eps):
            lines.append(f"median eps*       {self.median_eps:.4g} (at most half of the digits "
                         "robust from there on)")
        else:
            lines.append("median eps*       inf (more than half of the digits never broken)")
        shown = np.unique(np.linspace(0, len(self.eps_grid) - 1,
                                      min(SUMMARY_ROWS, len(self.eps_grid))).round().astype(int))
        lines.append(f"{'eps':<10}  robust accuracy [95 % interval]"
                     + ("" if len(shown) == len(self.eps_grid)
                        else f" ({len(shown)} of {len(self.eps_grid)} grid points)"))
        for index in shown:
            lines.append(f"{self.eps_grid[index]:<10.4g}  {self.robust_accuracy[index]}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Every field as JSON-ready values, except x_adv; inf (never broken) as None."""
        return {
            "model": self.model, "norm": self.norm, "attacks": list(self.attacks),
            "settings": self.settings, "outlier_class": self.outlier_class, "n": self.n,
            "clean_accuracy": self.clean_accuracy.to_dict(),
            "curve": [{"eps": float(eps), **rate.to_dict()}
                      for eps, rate in zip(self.eps_grid, self.robust_accuracy)],
            "median_eps": _finite_or_none(self.median_eps),
            "eps_star": [_finite_or_none(value) for value in self.eps_star],
            "found_by": list(self.found_by),
            "checks": self.checks, "warnings": list(self.warnings),
            "seed": self.seed, "seconds": self.seconds,
        }

    def to_json(self, **kwargs) -> str:
        """`to_dict()` as JSON text (keyword arguments go to json.dumps)."""
        return json.dumps(self.to_dict(), **kwargs)
