"""Figures of an evaluation: the rate bars, the budget sweeps and the detection ROC.

  plot_whitebox  whitebox.png/.pdf: Figure-1-style stacked bars recovered / detected /
                 misclassified (filtered rates), one panel per target; an entry whose
                 attack is "any" (keras_edd.evaluation.worst_case) is the worst case per digit
  plot_blackbox  blackbox.png/.pdf: the same for transfer attacks, a panel per target
                 (row) and surrogate (column: U, D, J)
  plot_sweeps    sweeps.png/.pdf: success (1 - recovered) and detected against eps,
                 Gamma, kappa, with the gradient-masking threshold
  plot_roc       roc.png/.pdf: the outlier class as a detector, clean vs adversarial

Every figure is written twice, as a PNG at DPI dots per inch and as a PDF (vector),
with its legend outside the axes. `note` (a --preset=quick run's mark, see
keras_edd.reporting.markdown.quick_note) is printed under the title. Each function returns
False and writes nothing when there is nothing to draw. matplotlib is imported
inside the functions (Agg backend), so importing this module is cheap. Files are
written through keras_edd.files.atomic_write.
"""

import math
import os

import numpy as np

from keras_edd import files
from keras_edd.evaluation.detection import FALSE_ALARM_TARGETS, SCORES

DPI = 200
# Bar colours, in stacking order (bottom to top).
COLORS = {"recovered": "#4c9a2a", "detected": "#3b6fb6", "misclassified": "#c0392b"}
# Bar segments smaller than this (a fraction) carry no printed value: it would not fit.
MIN_LABELLED = 0.08
ADAPTIVE_HATCH = "///"
NOTE_COLOR = "#b03000"
PARAMETER_LABELS = {"eps": "eps (L∞ budget)", "gamma": "Gamma (max. fraction of pixels changed)",
                    "kappa": "kappa (CW confidence)"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save_figure(fig, path, dpi=DPI):
    """Save as the file's extension says (png, pdf)."""
    kind = os.path.splitext(path)[1].lstrip(".")
    files.atomic_write(path, lambda f: fig.savefig(f, format=kind, dpi=dpi, bbox_inches="tight"),
                      binary=True)


def _save_png_and_pdf(fig, path_png, path_pdf=None):
    _save_figure(fig, path_png)
    _save_figure(fig, path_pdf or os.path.splitext(path_png)[0] + ".pdf")


def _title(fig, title, note):
    """The figure's title above the axes and, under it, the quick-run mark in colour."""
    from matplotlib.transforms import offset_copy
    if note:
        fig.text(0.5, 1.0, note, ha="center", va="bottom", fontsize=8, color=NOTE_COLOR,
                 fontweight="bold", transform=offset_copy(fig.transFigure, fig=fig, y=2,
                                                          units="points"))
    if title:
        fig.text(0.5, 1.0, title, ha="center", va="bottom", fontsize=10,
                 transform=offset_copy(fig.transFigure, fig=fig, y=14 if note else 2,
                                       units="points"))


def _bar_legend(fig, variants):
    """One legend below the panels (the figure keeps the panels' width), in one row."""
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=c, label=k) for k, c in COLORS.items()]
    if "adaptive" in variants:
        handles += [Patch(facecolor="white", edgecolor="black", label="plain attack"),
                    Patch(facecolor="white", edgecolor="black", hatch=ADAPTIVE_HATCH,
                          label="adaptive attack (avoids the outlier class)")]
    # One row under a wide figure, three columns under a single panel.
    fig.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=len(handles) if fig.get_figwidth() >= 6 else 3, borderaxespad=0.0,
               frameon=False, handlelength=1.5, columnspacing=1.2)


def _rate_panel(ax, entries, title):
    """Stacked bars of `entries` (one target, one origin): an attack per group on the
    x-axis, its plain and adaptive variants side by side, values in % on the segments."""
    attacks = list(dict.fromkeys(e["attack"] for e in entries))
    has_adaptive = any(e["variant"] == "adaptive" for e in entries)
    width = 0.4 if has_adaptive else 0.7
    ticks, labels = [], []
    for i, attack in enumerate(attacks):
        group = [e for e in entries if e["attack"] == attack]
        for e in group:
            offset = 0.0 if len(group) == 1 else (-0.21 if e["variant"] == "plain" else 0.21)
            x = i + offset
            rates = e["filtered"]
            bottom = 0.0
            for key, color in COLORS.items():
                value = rates[key] or 0.0
                ax.bar(x, value, bottom=bottom, color=color, width=width, edgecolor="white",
                       linewidth=0.4,
                       hatch=ADAPTIVE_HATCH if e["variant"] == "adaptive" else None)
                if value >= MIN_LABELLED:  # on a patch of the bar's colour, over the hatch
                    ax.text(x, bottom + value / 2, f"{100 * value:.0f}", ha="center",
                            va="center", fontsize=5 if has_adaptive else 5.5, color="white",
                            fontweight="bold",
                            bbox={"boxstyle": "square,pad=0.15", "facecolor": color,
                                  "edgecolor": "none"})
                bottom += value
            if rates["recovered"] is None:  # no input left after the filter
                ax.text(x, 0.5, "n = 0", rotation=90, ha="center", va="center", fontsize=6)
        counts = sorted({e["filtered"]["count"] for e in group})
        ticks.append(i)
        name = "any attack" if attack == "any" else attack  # keras_edd.evaluation.worst_case's row
        labels.append(f"{name}\nn={'/'.join(str(c) for c in counts)}")
    ax.set_xticks(ticks, labels, fontsize=6.5)
    ax.set_xlim(-0.6, len(attacks) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25", "50", "75", "100"], fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


YLABEL = "% of the inputs the target\nclassifies correctly when clean"
# Panels per row of whitebox.png: two keep it within a page's text width.
WHITEBOX_COLUMNS = 2


def _panel_width(groups):
    """Inches of a bar panel with `groups` attacks."""
    return max(1.8, 0.42 * groups + 0.4)


def plot_whitebox(entries, path, note=None, title="White-box attacks"):
    """whitebox.png (and .pdf beside it): stacked bars, a panel per target.

    Returns False (and writes nothing) when there are no entries.
    """
    if not entries:
        return False
    plt = _pyplot()
    targets = list(dict.fromkeys(e["target"] for e in entries))
    groups = max(len({e["attack"] for e in entries if e["target"] == t}) for t in targets)
    columns = min(WHITEBOX_COLUMNS, len(targets))
    rows = math.ceil(len(targets) / columns)
    fig, axes = plt.subplots(rows, columns,
                             figsize=(_panel_width(groups) * columns + 0.6, 2.3 * rows),
                             squeeze=False, sharey=True)
    for i, ax in enumerate(axes.flat):
        if i >= len(targets):
            ax.set_axis_off()
            continue
        _rate_panel(ax, [e for e in entries if e["target"] == targets[i]],
                    f"target {targets[i]}")
        if i % columns == 0:
            ax.set_ylabel(YLABEL, fontsize=7)
    return _finish_bars(plt, fig, entries, path, title, note)


def _finish_bars(plt, fig, entries, path, title, note):
    """Lay out a rate-bar figure, add its title and legend, save PNG and PDF."""
    fig.tight_layout()
    _title(fig, title, note)
    _bar_legend(fig, {e["variant"] for e in entries})
    _save_png_and_pdf(fig, path)
    plt.close(fig)
    return True


def surrogate_kind(source):
    """The column of a black-box source: J_<target> (one per target) share column 'J'."""
    return "J" if source == "J" or source.startswith("J_") else source


def plot_blackbox(entries, path, note=None, title="Black-box transfer attacks"):
    """blackbox.png (and .pdf): stacked bars, a row per target, a column per surrogate.

    Each panel holds the attacks computed on one surrogate and scored on one target
    (surrogate J_<target> in the column "J"). Returns False when there are no entries.
    """
    if not entries:
        return False
    plt = _pyplot()
    targets = list(dict.fromkeys(e["target"] for e in entries))
    kinds = list(dict.fromkeys(surrogate_kind(e["source"]) for e in entries))
    groups = max(len({e["attack"] for e in entries if surrogate_kind(e["source"]) == k})
                 for k in kinds)
    fig, axes = plt.subplots(len(targets), len(kinds),
                             figsize=(_panel_width(groups) * len(kinds) + 0.6,
                                      2.1 * len(targets)),
                             squeeze=False, sharey=True)
    for row, target in enumerate(targets):
        for col, kind in enumerate(kinds):
            ax = axes[row][col]
            chosen = [e for e in entries
                      if e["target"] == target and surrogate_kind(e["source"]) == kind]
            if not chosen:
                ax.set_axis_off()
                continue
            source = chosen[0]["source"].removeprefix("surrogate_")
            _rate_panel(ax, chosen, f"target {target}, " + (
                "any surrogate" if source == "any" else f"surrogate {source}"))
        axes[row][0].set_ylabel(YLABEL, fontsize=7)
    return _finish_bars(plt, fig, entries, path, title, note)


def plot_sweeps(sweeps, path, threshold=None, note=None):
    """sweeps.png (and .pdf): success (1 - recovered, solid) and detected (dashed) against
    each sweep's budget, a panel per attack, a colour per target and variant; the
    gradient-masking threshold dotted. Returns False when there are no sweeps."""
    if not sweeps:
        return False
    plt = _pyplot()
    from matplotlib.lines import Line2D
    attacks = list(dict.fromkeys(s["attack"] for s in sweeps))
    curves = list(dict.fromkeys((s["target"], s["variant"]) for s in sweeps))
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(attacks), figsize=(3.0 * len(attacks), 2.8), squeeze=False,
                             sharey=True)
    any_detected = False
    for ax, attack in zip(axes[0], attacks):
        for s in (x for x in sweeps if x["attack"] == attack):
            color = colors(curves.index((s["target"], s["variant"])) % 10)
            values = [p["value"] for p in s["points"]]
            success = [np.nan if p["success"] is None else p["success"] for p in s["points"]]
            detected = [np.nan if p["filtered"]["detected"] is None else p["filtered"]["detected"]
                        for p in s["points"]]
            ax.plot(values, success, marker="o", markersize=3, linewidth=1.2, color=color)
            if any(d > 0 for d in detected if not math.isnan(d)):
                any_detected = True
                ax.plot(values, detected, marker="s", markersize=2.5, linestyle="--",
                        linewidth=1.0, color=color, alpha=0.8)
        if threshold is not None:
            ax.axhline(threshold, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"{100 * threshold:g} % threshold", xy=(0.02, threshold),
                        xycoords=("axes fraction", "data"), xytext=(0, -2),
                        textcoords="offset points", va="top", fontsize=6, color="dimgrey")
        parameter = next(s["parameter"] for s in sweeps if s["attack"] == attack)
        n = sorted({s["num_examples"] for s in sweeps if s["attack"] == attack})
        ax.set_xlabel(PARAMETER_LABELS.get(parameter, parameter), fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25", "50", "75", "100"], fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{attack} (n={'/'.join(str(c) for c in n)})", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("% of the inputs the target\nclassifies correctly when clean",
                          fontsize=7)
    fig.tight_layout()
    _title(fig, "Budget sweeps (gradient-masking check)", note)
    handles = [Line2D([], [], color=colors(i % 10), linewidth=2, label=f"{t}, {v}")
               for i, (t, v) in enumerate(curves)]
    handles.append(Line2D([], [], color="black", marker="o", markersize=3,
                          label="success = 1 - recovered"))
    if any_detected:
        handles.append(Line2D([], [], color="black", linestyle="--", marker="s", markersize=2.5,
                              label="detected (outlier class)"))
    if threshold is not None:
        handles.append(Line2D([], [], color="grey", linestyle=":",
                              label=f"masking threshold ({100 * threshold:g} %)"))
    # Below the panels, so that the figure is no wider than they are.
    fig.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(handles), 2 * len(attacks)), borderaxespad=0.0, frameon=False,
               title="colour: target, variant; line: rate", title_fontsize=7)
    _save_png_and_pdf(fig, path)
    plt.close(fig)
    return True


def _where(e):
    return "white-box" if e["setting"] == "whitebox" else f"black-box from {e['source']}"


def plot_roc(detection, path_png, path_pdf, note=None):
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
    plt = _pyplot()
    from matplotlib.lines import Line2D
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
    if note:
        _title(fig, "", note)
    handles = [Line2D([], [], color=colors(i % 10), label=a) for i, a in enumerate(attacks)]
    handles += [Line2D([], [], color="black", linestyle=style, label=variant)
                for variant, style in styles.items()]
    handles.append(Line2D([], [], color="grey", linestyle=":",
                          label="1 % / 5 % false detection"))
    fig.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.98),
               borderaxespad=0.0)
    _save_png_and_pdf(fig, path_png, path_pdf)
    plt.close(fig)
    return True
