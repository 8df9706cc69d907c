"""`robustness_curve`: per digit the smallest adversarial norm found, and robust accuracy
over a grid of radii from one pass.

Per digit, eps* is the smallest norm ||x_adv - x|| of an adversarial example any of
the attacks found (0 for a digit wrong when clean, inf when none was found):

  1. the minimum-norm attacks (FAB untargeted "fab" and FAB-T "fab_t", Croce & Hein
     2020) run once per digit with early_stop=False, so they keep shrinking the
     perturbation for all their iterations, targets and restarts, and return the
     smallest one they found;
  2. optionally, fixed-radius attacks (apgd_ce, apgd_t, square, ...) run at each
     grid radius eps, in increasing order, on the digits not yet broken at eps; a
     point they return inside the eps-ball lowers eps* to its norm.

Every point is checked as `evaluate` checks it (keras_edd.robustness.points): the
model is called on it, it lies in [0, 1], and the attacker wins (argmax != y; with
an outlier class a real class other than y on top, the attacks being the adaptive
forms). So eps* is an upper bound of the digit's true minimal adversarial norm, and
the robust accuracy at eps, #{eps* > eps} / n (with evaluate's tolerance:
eps* <= eps (1 + 1e-6) + 1e-5 counts as broken), an upper bound of the true robust
accuracy: a digit counts as non-robust at eps as soon as any attack found an
adversarial example of norm <= eps. The curve is non-increasing by construction.
"""

import math
import time

import numpy as np

from keras_edd import data
from keras_edd import progress as progress_bars
from keras_edd import validation as v
from keras_edd.attacks import utils
from keras_edd.robustness import inputs, suite
from keras_edd.robustness.curve_result import RobustnessCurve
from keras_edd.robustness.points import (CHECK_EXAMPLES, attacker_wins, in_box, logits,
                                         norms, sanity_checks, warn, within)
from keras_edd.robustness.rates import Rate

# The attacks that minimise the norm (suite rows of keras_edd.attacks.fab).
MINIMUM_NORM = ("fab", "fab_t")
DEFAULT_ATTACKS = ("fab", "fab_t")
# Points of the default grid, 0 to eps_max.
GRID_POINTS = 51


def robustness_curve(model, x, y, *, norm: str = "linf", eps_grid=None,
                     eps_max: float | None = None, outlier_class: int | None = None,
                     attacks=DEFAULT_ATTACKS, batch_size: int = 250, seed: int = 0,
                     progress: bool = True) -> RobustnessCurve:
    """Per-digit smallest adversarial norm eps* and robust accuracy over an eps grid.

    Args:
      model, x, y, outlier_class, batch_size, seed, progress: as in
        `keras_edd.evaluate` (the same checks, the same one-line errors).
      norm: "linf" or "l2".
      eps_grid: the radii at which robust accuracy is reported (sorted, duplicates
        removed; each in [0, 1] for L_inf, [0, sqrt(d)] for L2). None: GRID_POINTS
        evenly spaced radii from 0 to eps_max.
      eps_max: the end of the default grid; None: the largest finite eps* the
        minimum-norm attacks found (so the curve reaches its floor). Not together
        with eps_grid.
      attacks: names, at least one minimum-norm attack ("fab": FAB over all
        classes; "fab_t": FAB-T over the 9 best-ranked other classes; both 100
        iterations, AutoAttack's settings), run first, and optionally fixed-radius
        ones from `keras_edd.evaluate`'s list (apgd_ce, apgd_t, apgd_dlr, square,
        ...), run in the order given at every grid radius > 0. "standard":
        AutoAttack's list (fab_t; apgd_ce, apgd_t, square at every radius).
    Returns:
      A RobustnessCurve (frozen): eps_star, found_by and x_adv per digit, the grid
      and one Rate (with its 95 % Wilson interval) per grid point, median_eps,
      summary() and to_dict(). Nothing is written to disk.

    See the module docstring for how eps* and the curve are defined.
    Raises ValueError (one line) on bad arguments.
    """
    started = time.perf_counter()
    norm = v.check_choice("norm", norm, suite.NORMS)
    batch_size = v.check_int("batch_size", batch_size, low=1)
    seed = v.check_int("seed", seed, low=0, high=2**31 - 1)
    if not isinstance(progress, bool):
        raise ValueError(f"progress={progress!r}: expected True or False")
    if eps_grid is not None and eps_max is not None:
        raise ValueError(f"eps_grid and eps_max={eps_max!r}: give one of them (eps_max is the "
                         "end of the default grid)")
    x = data.to_float(x)
    model, description = inputs.resolve_model(model)
    x = inputs.fit_to_model(model, x)
    issued = []
    minimum_rows, fixed_names = _split_attacks(attacks, norm, x.shape, issued)
    size = int(np.prod(x.shape[1:]))
    if eps_grid is not None:
        eps_grid = _check_grid(eps_grid, norm, size)
    if eps_max is not None:
        eps_max = v.check_eps("eps_max", eps_max, norm, size=size)
        v.require(eps_max > 0, f"eps_max={eps_max!r}: must be > 0")

    model_fn = utils.as_model_fn(model)
    clean_logits = logits(model_fn, x, batch_size)
    if clean_logits.ndim != 2 or clean_logits.shape[1] < 2:
        raise ValueError(f"the model outputs shape {clean_logits.shape[1:]} per example: "
                         "expected a vector of at least 2 logits")
    outlier_class = inputs.check_outlier_class(outlier_class, clean_logits.shape[1])
    y = inputs.check_labels(y, len(x), clean_logits.shape[1], outlier_class)

    sanity = sanity_checks(model_fn, x[:CHECK_EXAMPLES], y[:CHECK_EXAMPLES], outlier_class,
                           issued)
    clean_correct = clean_logits.argmax(axis=1) == y
    found = _Found(x, clean_correct)
    settings = {row.name: dict(row.settings) for row in minimum_rows}
    judge = dict(model_fn=model_fn, x=x, y=y, outlier_class=outlier_class, norm=norm,
                 batch_size=batch_size)
    # FAB minimises the norm whatever eps is; its eps only caps the restarts' radius.
    box_radius = 1.0 if norm == "linf" else math.sqrt(size)
    grid_known = eps_grid is not None
    bar = progress_bars.bar(total=len(x) * len(minimum_rows), desc="robustness curve",
                            progress=progress, unit="digit")
    try:
        for row in minimum_rows:
            todo = np.flatnonzero(clean_correct)
            bar.update(len(x) - len(todo))
            for position in range(0, len(todo), batch_size):
                batch = todo[position:position + batch_size]
                details = row.run(model_fn, x[batch], y[batch], eps=box_radius, norm=norm,
                                  outlier_class=outlier_class, seed=(seed + position) % 2**31,
                                  early_stop=False, return_details=True)
                found.offer(batch, np.asarray(details.x_min, np.float32), row.name, **judge)
                bar.update(len(batch))
        if not grid_known:
            eps_grid = _default_grid(eps_max, found.eps_star, box_radius)
        positive = eps_grid[eps_grid > 0]
        bar.total += len(x) * len(fixed_names) * len(positive)
        bar.refresh()
        for eps in positive if fixed_names else ():
            for row in suite.resolve(fixed_names, norm, float(eps))[0]:
                settings.setdefault(row.name, dict(row.settings))
                todo = np.flatnonzero(clean_correct & ~within(found.eps_star, eps))
                bar.update(len(x) - len(todo))
                for position in range(0, len(todo), batch_size):
                    batch = todo[position:position + batch_size]
                    points = np.asarray(row.run(model_fn, x[batch], y[batch], eps=float(eps),
                                                norm=norm, outlier_class=outlier_class,
                                                seed=(seed + position) % 2**31), np.float32)
                    found.offer(batch, points.reshape(x[batch].shape), row.name, radius=eps,
                                **judge)
                    bar.update(len(batch))
    finally:
        bar.close()

    n = len(x)
    ordered = np.sort(found.eps_star)
    return RobustnessCurve(
        model=description, norm=norm,
        attacks=tuple(row.name for row in minimum_rows) + tuple(fixed_names),
        settings=settings, outlier_class=outlier_class, n=n,
        clean_accuracy=Rate(int(clean_correct.sum()), n), eps_grid=eps_grid,
        robust_accuracy=tuple(Rate(int((~within(found.eps_star, eps)).sum()), n)
                              for eps in eps_grid),
        eps_star=found.eps_star, found_by=tuple(found.found_by), x_adv=found.x_adv,
        median_eps=float(ordered[math.ceil(n / 2) - 1]), checks=sanity,
        warnings=tuple(issued), seed=seed, seconds=time.perf_counter() - started)


class _Found:
    """Per digit the smallest adversarial example so far: eps_star, found_by, x_adv."""

    def __init__(self, x, clean_correct):
        self.eps_star = np.where(clean_correct, np.inf, 0.0)
        self.found_by = [None if correct else "clean" for correct in clean_correct]
        self.x_adv = x.copy()

    def offer(self, batch, points, name, *, model_fn, x, y, outlier_class, norm, batch_size,
              radius=None):
        """Keep each point that is adversarial, in the box (and within `radius` if
        given) and smaller than the digit's eps* so far."""
        size = norms(points - x[batch], norm)
        keep = (attacker_wins(logits(model_fn, points, batch_size), y[batch], outlier_class)
                & in_box(points) & (size < self.eps_star[batch]))
        if radius is not None:
            keep &= within(size, radius)
        self.eps_star[batch[keep]] = size[keep]
        self.x_adv[batch[keep]] = points[keep]
        for index in batch[keep]:
            self.found_by[index] = name


def _split_attacks(attacks, norm, shape, issued):
    """(the minimum-norm suite rows, the fixed-radius names), both in the order given;
    "standard" is AutoAttack's list (FAB-T, and APGD-CE, APGD-T, Square at each radius)."""
    standard = isinstance(attacks, str) and attacks == "standard"
    rows, skipped = suite.resolve(attacks, norm, 0.0)  # unknown, repeated, unavailable: raise
    rows, skipped = suite.drop_unfit(rows, skipped, shape, named=not standard)
    minimum = tuple(row for row in rows if row.name in MINIMUM_NORM)
    if not minimum:
        raise ValueError(f"attacks={attacks!r}: a robustness curve needs a minimum-norm "
                         f"attack, one of {', '.join(MINIMUM_NORM)}")
    for _, reason in skipped:
        warn(issued, f"standard attack not run: {reason}; the curve is an upper bound of the "
                     "one with it")
    return minimum, tuple(row.name for row in rows if row.name not in MINIMUM_NORM)


def _check_grid(eps_grid, norm, size):
    values = np.atleast_1d(np.asarray(eps_grid, dtype=object))
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"eps_grid={eps_grid!r}: expected a non-empty list of radii")
    for value in values:
        v.check_eps("eps_grid", value, norm, size=size)
    return np.unique(values.astype(np.float64))


def _default_grid(eps_max, eps_star, box_radius):
    if eps_max is None:
        finite = eps_star[np.isfinite(eps_star)]
        eps_max = float(finite.max()) if finite.size and finite.max() > 0 else box_radius
    return np.linspace(0.0, eps_max, GRID_POINTS)
