"""The typed result of `evaluate`: rates with Wilson intervals, per-digit arrays, JSON.

Light (no TensorFlow). The result is a frozen dataclass; its arrays are read-only.
`summary()` renders it as a short table and `to_dict()` / `to_json()` as JSON
(every field except the adversarial images themselves).
"""

import dataclasses
import json

import numpy as np

from keras_edd.robustness.rates import Rate


def frozen_array(array):
    """A read-only copy of `array` (the results' arrays cannot change after the fact)."""
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclasses.dataclass(frozen=True, kw_only=True)
class ThresholdResult:
    """The outlier class as a detector at one clean false-detection rate.

    The outlier score is s(x) = Z_out(x) - max_{i real} Z_i(x); at threshold tau
    an input is rejected ("detected") when s(x) > tau, else classified as the
    best real class.

    target_false_detection: the requested fraction f of clean inputs to reject.
    tau: the (floor(f n) + 1)-th largest clean score, so exactly floor(f n) clean
      inputs score above it (fewer when scores tie at tau).
    false_detection: the clean inputs actually rejected at tau (k of n).
    clean_accuracy: clean inputs accepted (s <= tau) AND classified as y.
    robust_accuracy_detection_correct: digits accepted and correct when clean for
      which no attack found a point in the ball that is accepted (s <= tau) and
      classified as a real class != y; a detected adversarial counts as correct.
      The attacks are the adaptive ones, run on the logits with Z_out shifted by
      -tau, so they aim at the detector at this threshold, not at tau = 0.
    robust_accuracy_rejection_error: the same digits for which no attack found a
      point that is rejected OR misclassified (plain attacks on the shifted logits:
      any point that is not "accepted as y" wins); a rejection counts as an error.
      Always <= robust_accuracy_detection_correct.
    """
    target_false_detection: float
    tau: float
    false_detection: Rate
    clean_accuracy: Rate
    robust_accuracy_detection_correct: Rate
    robust_accuracy_rejection_error: Rate

    def to_dict(self) -> dict:
        return {"target_false_detection": self.target_false_detection, "tau": self.tau,
                "false_detection": self.false_detection.to_dict(),
                "clean_accuracy": self.clean_accuracy.to_dict(),
                "robust_accuracy_detection_correct":
                    self.robust_accuracy_detection_correct.to_dict(),
                "robust_accuracy_rejection_error": self.robust_accuracy_rejection_error.to_dict()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RobustnessResult:
    """What `keras_edd.evaluate` measured; see `evaluate` for the definitions.

    model: what was evaluated (a name, a path or the model's name).
    norm, eps: the threat model, ||x_adv - x||_norm <= eps, x_adv in [0, 1].
    attacks: the attacks run, in order. attacks_skipped: ((name, reason), ...) of
      attacks of the standard list that could not run here.
    settings: attack name -> the keyword settings it ran with.
    outlier_class: the "detected" logit, or None for a plain model.
    n: the number of digits.
    clean_accuracy: argmax of all logits = y (with an outlier class, a clean
      detection is an error).
    robust_accuracy: correct when clean and after every attack (AutoAttack).
    robust_accuracy_by_attack: attack name -> robust accuracy after the attacks up
      to and including it, in the order run (non-increasing).
    clean_correct, robust: bool [n] per digit; robust.sum() == robust_accuracy.k.
    broken_by: per digit None (robust), "clean" (wrong when clean) or the name of
      the first attack that broke it.
    x_adv: float32 [n, ...] per digit the first adversarial example found (the
      worst case, as AutoAttack keeps it), x itself where none was found.
    perturbation_norm: float [n], ||x_adv - x||_norm (0 where none was found).
    norm_violations: attack name -> returned points outside the eps-ball or the
      box (each counted as a failure of the attack, with a warning).
    thresholds: per clean false-detection rate a ThresholdResult (outlier models).
    checks: what the sanity checks measured; warnings: every warning issued.
    seed, seconds: the seed of the attacks and the wall time.
    seconds_by_attack: attack name -> wall seconds of that attack on the digits
      still robust (the thresholds' re-runs not included).
    """
    model: str
    norm: str
    eps: float
    attacks: tuple[str, ...]
    attacks_skipped: tuple[tuple[str, str], ...]
    settings: dict
    outlier_class: int | None
    n: int
    clean_accuracy: Rate
    robust_accuracy: Rate
    robust_accuracy_by_attack: dict
    clean_correct: np.ndarray
    robust: np.ndarray
    broken_by: tuple
    x_adv: np.ndarray
    perturbation_norm: np.ndarray
    norm_violations: dict
    thresholds: tuple[ThresholdResult, ...]
    checks: dict
    warnings: tuple[str, ...]
    seed: int
    seconds: float
    seconds_by_attack: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for name in ("clean_correct", "robust", "x_adv", "perturbation_norm"):
            object.__setattr__(self, name, frozen_array(getattr(self, name)))

    def summary(self) -> str:
        """A short table: clean and robust accuracy, per attack, per threshold."""
        return summary_text(self.to_dict())

    def to_dict(self) -> dict:
        """Every field as JSON-ready values, except x_adv (the images)."""
        return {
            "model": self.model, "norm": self.norm, "eps": self.eps,
            "attacks": list(self.attacks),
            "attacks_skipped": [{"attack": a, "reason": r} for a, r in self.attacks_skipped],
            "settings": self.settings, "outlier_class": self.outlier_class, "n": self.n,
            "clean_accuracy": self.clean_accuracy.to_dict(),
            "robust_accuracy": self.robust_accuracy.to_dict(),
            "robust_accuracy_by_attack": {name: rate.to_dict()
                                          for name, rate in self.robust_accuracy_by_attack.items()},
            "clean_correct": self.clean_correct.tolist(), "robust": self.robust.tolist(),
            "broken_by": list(self.broken_by),
            "perturbation_norm": [float(value) for value in self.perturbation_norm],
            "norm_violations": dict(self.norm_violations),
            "thresholds": [row.to_dict() for row in self.thresholds],
            "checks": self.checks, "warnings": list(self.warnings),
            "seed": self.seed, "seconds": self.seconds,
            "seconds_by_attack": dict(self.seconds_by_attack),
        }

    def to_json(self, **kwargs) -> str:
        """`to_dict()` as JSON text (keyword arguments go to json.dumps)."""
        return json.dumps(self.to_dict(), **kwargs)


def _rate(data):
    return Rate(data["k"], data["n"])


def summary_text(data: dict) -> str:
    """RobustnessResult.summary() from its `to_dict()`, so that a results file saved as
    JSON (bin/eval_whitebox --attacks=standard) prints the same table."""
    attacks = data["robust_accuracy_by_attack"]
    width = max([len("robust (all attacks)")] + [len(f"  after {a}") for a in attacks])
    lines = [f"{data['model']}: {data['norm']} eps={data['eps']:g}, n={data['n']}"
             + (f", outlier class {data['outlier_class']}"
                if data["outlier_class"] is not None else ""),
             f"{'clean accuracy':<{width}}  {_rate(data['clean_accuracy'])}"]
    for name, rate in attacks.items():
        lines.append(f"{'  after ' + name:<{width}}  {_rate(rate)}")
    lines.append(f"{'robust (all attacks)':<{width}}  {_rate(data['robust_accuracy'])}")
    for skipped in data["attacks_skipped"]:
        lines.append(f"not run: {skipped['reason']}")
    for row in data["thresholds"]:
        lines.append(
            f"false detection {row['target_false_detection']:g} (tau={row['tau']:.4g}, "
            f"actual {row['false_detection']['value']:.2%}): clean "
            f"{row['clean_accuracy']['value']:.2%}, robust "
            f"{row['robust_accuracy_detection_correct']['value']:.2%} (detection correct), "
            f"{row['robust_accuracy_rejection_error']['value']:.2%} (rejection an error)")
    if any(data["norm_violations"].values()):
        lines.append(f"norm violations (counted as failures): {data['norm_violations']}")
    return "\n".join(lines)
