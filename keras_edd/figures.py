"""Figures of an evaluation: the rate bars, the budget sweeps and the detection ROC.

  plot_rates   whitebox.png / blackbox.png: Figure-1-style stacked bars recovered /
               detected / misclassified (filtered rates), one panel per target
  plot_sweeps  sweeps.png: success (1 - recovered) and detected against eps, Gamma, kappa
  plot_roc     roc.png, roc.pdf: the outlier class as a detector, clean vs adversarial

Each returns False and writes nothing when there is nothing to draw. matplotlib is
imported inside the functions (Agg backend), so importing this module is cheap.
Files are written through keras_edd.runs.atomic_write.
"""

import math
import os

import numpy as np

from keras_edd import runs

# Bar colours, in stacking order (bottom to top).
COLORS = {"recovered": "#4c9a2a", "detected": "#3b6fb6", "misclassified": "#c0392b"}

def _save_figure(fig, path, dpi=100):
    """Save as the file's extension says (png, pdf)."""
    kind = os.path.splitext(path)[1].lstrip(".")
    runs.atomic_write(path, lambda f: fig.savefig(f, format=kind, dpi=dpi, bbox_inches="tight"),
                      binary=True)


def plot_rates(entries, path, title):
    """Stacked bars recovered / detected / misclassified (filtered), a panel per target.

    Returns False (and writes nothing) when there are no entries.
    """
    if not entries:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    targets = list(dict.fromkeys(e["target"] for e in entries))
    widths = [max(2.0, 0.55 * sum(e["target"] == t for e in entries)) for t in targets]
    fig, axes = plt.subplots(1, len(targets), figsize=(sum(widths) + 1.5, 4.2),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax, target in zip(axes[0], targets):
        chosen = [e for e in entries if e["target"] == target]
        labels = []
        for i, e in enumerate(chosen):
            rates = e["filtered"]
            bottom = 0.0
            for key, color in COLORS.items():
                value = rates[key] or 0.0
                ax.bar(i, value, bottom=bottom, color=color, width=0.75,
                       label=key if i == 0 else None)
                bottom += value
            source = "" if e["source"] == e["target"] else f"{e['source']}: "
            labels.append(f"{source}{e['attack']}\n{e['variant']} (n={rates['count']})")
        ax.set_xticks(range(len(chosen)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(target, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("fraction of correctly classified inputs")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=10)
    _save_figure(fig, path)
    plt.close(fig)
    return True


def plot_sweeps(sweeps, path, threshold=None):
    """Success (1 - recovered, solid) and detected (dashed) against each sweep's budget."""
    if not sweeps:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    attacks = list(dict.fromkeys(s["attack"] for s in sweeps))
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.0 * len(attacks), 3.6), squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        for i, s in enumerate(x for x in sweeps if x["attack"] == attack):
            values = [p["value"] for p in s["points"]]
            success = [np.nan if p["success"] is None else p["success"] for p in s["points"]]
            detected = [np.nan if p["filtered"]["detected"] is None else p["filtered"]["detected"]
                        for p in s["points"]]
            line, = ax.plot(values, success, marker="o", label=f"{s['target']} {s['variant']}")
            if any(d > 0 for d in detected if not math.isnan(d)):
                ax.plot(values, detected, linestyle="--", color=line.get_color(), alpha=0.7)
        if threshold is not None:
            ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
        parameter = next(s["parameter"] for s in sweeps if s["attack"] == attack)
        ax.set_xlabel({"eps": "eps", "gamma": "Gamma", "kappa": "kappa"}.get(parameter, parameter))
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{attack} (solid: 1 - recovered, dashed: detected)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    _save_figure(fig, path)
    plt.close(fig)
    return True


def _where(e):
    return "white-box" if e["setting"] == "whitebox" else f"black-box from {e['source']}"


def plot_roc(detection, path_png, path_pdf):
    """ROC curves of the outlier-class scores.

    A row per target with an outlier class and origin of the attacks (white-box,
    black-box from each surrogate), a column per score; in each panel a curve per
    attack (colour) and variant (solid plain, dashed adaptive), one legend outside
    the axes (AUROCs in report.md), the false-detection targets as dotted lines.
    PNG at 200 dpi and PDF. Returns False (no file) when there is no curve.
    """
    entries = [e for e in (detection or {}).get("entries", []) if "roc" in e["softmax"]]
    if not entries:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from keras_edd.detection import FALSE_ALARM_TARGETS, SCORES
    titles = {"softmax": "softmax(z)_n", "margin": "z_n - max_{i<n} z_i"}
    panels = list(dict.fromkeys((e["target"], _where(e)) for e in entries))
    attacks = list(dict.fromkeys(e["attack"] for e in entries))
    colors = plt.get_cmap("tab10")
    styles = {"plain": "-", "adaptive": "--"}
    fig, axes = plt.subplots(len(panels), len(SCORES),
                             figsize=(4.0 * len(SCORES), 3.4 * len(panels)), squeeze=False)
    for row, (target, where) in enumerate(panels):
        for col, score in enumerate(SCORES):
            ax = axes[row][col]
            for e in entries:
                if (e["target"], _where(e)) != (target, where):
                    continue
                ax.plot(e[score]["roc"]["fpr"], e[score]["roc"]["tpr"],
                        linestyle=styles.get(e["variant"], ":"), linewidth=1.2,
                        color=colors(attacks.index(e["attack"]) % 10))
            for alpha in FALSE_ALARM_TARGETS:
                ax.axvline(alpha, color="grey", linestyle=":", linewidth=0.8)
            ax.plot([0, 1], [0, 1], color="lightgrey", linewidth=0.8)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            ax.set_xlabel("false detection rate (clean)", fontsize=8)
            ax.set_ylabel("true detection rate (adversarial)", fontsize=8)
            ax.set_title(f"{target}, {where}: score {titles[score]}", fontsize=8)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    handles = [Line2D([], [], color=colors(i % 10), label=a) for i, a in enumerate(attacks)]
    handles += [Line2D([], [], color="black", linestyle=style, label=variant)
                for variant, style in styles.items()]
    handles.append(Line2D([], [], color="grey", linestyle=":",
                          label="1 % / 5 % false detection"))
    fig.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.98),
               borderaxespad=0.0)
    _save_figure(fig, path_png, dpi=200)
    _save_figure(fig, path_pdf, dpi=200)
    plt.close(fig)
    return True
