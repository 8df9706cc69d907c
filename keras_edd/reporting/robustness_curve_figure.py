"""The figure of a robustness curve: robust accuracy against the perturbation size.

  plot_robustness_curves  one line per keras_edd.robustness.RobustnessCurve (one per
                          target in a report), its 95 % Wilson band, and its median
                          eps* marked where the curve crosses 50 %

Written as a PNG (DPI dots per inch) and a PDF (vector) through keras_edd.files;
matplotlib is imported inside the function (Agg backend), so importing this module
is cheap. Returns False and writes nothing when there is nothing to draw.
"""

import math
import os

import numpy as np

from keras_edd import files

DPI = 200
NORM_NAMES = {"linf": "L∞", "l2": "L2"}


def plot_robustness_curves(curves, path_png, path_pdf=None, *, labels=None, note=None):
    """Robust accuracy (%) against eps for each curve, with its 95 % interval band.

    curves: a RobustnessCurve or a sequence of them, all of the same norm.
    labels: one legend label per curve (default: each curve's model).
    note: a line printed under the title (e.g. a quick run's mark).
    Returns True when the PNG and the PDF (default: the PNG's name, .pdf) were written.
    """
    if not isinstance(curves, (list, tuple)):
        curves = [curves]
    if not curves:
        return False
    norms = {curve.norm for curve in curves}
    if len(norms) != 1:
        raise ValueError(f"curves of norms {sorted(norms)}: plot one norm per figure")
    labels = [curve.model for curve in curves] if labels is None else list(labels)
    if len(labels) != len(curves):
        raise ValueError(f"labels: {len(labels)} given for {len(curves)} curves")
    norm = NORM_NAMES[norms.pop()]

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for index, (curve, label) in enumerate(zip(curves, labels)):
        color = f"C{index % 10}"
        eps = np.asarray(curve.eps_grid)
        value = 100 * np.array([rate.value for rate in curve.robust_accuracy])
        low, high = (100 * np.array([rate.interval[side] for rate in curve.robust_accuracy])
                     for side in (0, 1))
        ax.fill_between(eps, low, high, color=color, alpha=0.18, linewidth=0)
        median = curve.median_eps
        shown = math.isfinite(median) and median <= eps[-1]
        ax.plot(eps, value, color=color, linewidth=1.6, marker="o" if len(eps) <= 25 else None,
                markersize=3, label=f"{label} (n={curve.n}" + (
                    f", median ε* = {median:.3g})" if shown else ", median ε* beyond the grid)"))
        if shown:
            ax.axvline(median, color=color, linestyle=":", linewidth=1.0)
            ax.plot([median], [50], marker="D", color=color, markersize=5)
    ax.axhline(50, color="0.6", linewidth=0.7, linestyle="--")
    ax.set_xlabel(f"perturbation size ε ({norm} norm)")
    ax.set_ylabel("robust accuracy (% of digits)")
    ax.set_ylim(-2, 102)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    title = "Robust accuracy against the perturbation size"
    ax.set_title(f"{title}\n{note}" if note else title, fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False,
              title="shaded: 95 % interval\ndotted: median ε*", title_fontsize=8)
    for path in (path_png, path_pdf or os.path.splitext(path_png)[0] + ".pdf"):
        kind = os.path.splitext(path)[1].lstrip(".")
        files.atomic_write(path, lambda f, kind=kind: fig.savefig(
            f, format=kind, dpi=DPI, bbox_inches="tight"), binary=True)
    plt.close(fig)
    return True
