"""Figures of an evaluation: the rate bars, the budget sweeps and the detection ROC.

  plot_whitebox  whitebox.png/.pdf: Figure-1-style stacked bars recovered / detected /
                 misclassified (filtered rates), one panel per target; an entry whose
                 attack is "any" (keras_edd.evaluation.worst_case) is the worst case per digit
  plot_blackbox  blackbox.png/.pdf: the same for transfer attacks, a panel per target
                 (row) and surrogate (column: U, D, J)
  plot_sweeps    sweeps.png/.pdf: success (1 - recovered) and detected against each
                 sweep's budget (any parameter: eps, Gamma, kappa, ...), a panel per
                 attack and budget, with the gradient-masking threshold
  plot_roc       roc.png/.pdf: the outlier class as a detector, clean vs adversarial,
                 a panel per target with at most six curves (roc_curves: the white-box
                 attacks hardest, median and easiest to detect, plain and adaptive)

Every figure is written twice, as a PNG at DPI dots per inch and as a PDF (vector),
with its legend outside the axes. `note` (a --preset=quick run's mark, see
keras_edd.reporting.markdown.quick_note) is printed under the title. Each function returns
False and writes nothing when there is nothing to draw. No text is smaller than
VALUE_FONT points (18 pixels at 200 dpi). matplotlib is imported inside the functions
(Agg backend, `pyplot()`), so importing this module is cheap. Files are
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
# Font sizes (points): at 200 dpi the smallest text is 18 pixels high in the PNG.
VALUE_FONT = 6.5
TICK_FONT = 7
LABEL_FONT = 7.5
TITLE_FONT = 8.5
LEGEND_FONT = 8
ADAPTIVE_HATCH = "///"
NOTE_COLOR = "#b03000"
# A sweep's budget parameter: its name in the paper's spelling, and what it bounds.
PARAMETER_NAMES = {"eps": "eps", "gamma": "Gamma", "kappa": "kappa"}
PARAMETER_LABELS = {"eps": "eps (L∞ budget)", "gamma": "Gamma (max. fraction of pixels changed)",
                    "kappa": "kappa (CW confidence)"}


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
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
        fig.text(0.5, 1.0, note, ha="center", va="bottom", fontsize=LEGEND_FONT,
                 color=NOTE_COLOR, fontweight="bold",
                 transform=offset_copy(fig.transFigure, fig=fig, y=2, units="points"))
    if title:
        fig.text(0.5, 1.0, title, ha="center", va="bottom", fontsize=11,
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
    fig.legend(handles=handles, fontsize=LEGEND_FONT, loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=len(handles) if fig.get_figwidth() >= 6 else 3,
               borderaxespad=0.0, frameon=False, handlelength=1.5, columnspacing=1.2)


def _rate_panel(ax, entries, title):
    """Stacked bars of `entries` (one target, one origin): an attack per group on the
    x-axis, its plain and adaptive variants side by side, values in % on the segments."""
    attacks = list(dict.fromkeys(e["attack"] for e in entries))
    has_adaptive = _has_pairs(entries)
    width = 0.4 if has_adaptive else 0.7
    ticks, labels = [], []
    for i, attack in enumerate(attacks):
        group = [e for e in entries if e["attack"] == attack]
        for e in group:
            offset = 0.0 if len(group) == 1 else (-0.205 if e["variant"] == "plain" else 0.205)
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
                            va="center", fontsize=VALUE_FONT, color="white",
                            fontweight="bold",
                            bbox={"boxstyle": "square,pad=0.15", "facecolor": color,
                                  "edgecolor": "none"})
                bottom += value
            if rates["recovered"] is None:  # no input left after the filter
                ax.text(x, 0.5, "n = 0", rotation=90, ha="center", va="center",
                        fontsize=VALUE_FONT)
        counts = sorted({e["filtered"]["count"] for e in group})
        ticks.append(i)
        name = "any attack" if attack == "any" else attack  # keras_edd.evaluation.worst_case's row
        labels.append(f"{name}\nn={'/'.join(str(c) for c in counts)}")
    ax.set_xticks(ticks, labels, fontsize=TICK_FONT)
    ax.set_xlim(-0.6, len(attacks) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25", "50", "75", "100"], fontsize=TICK_FONT)
    ax.set_title(title, fontsize=TITLE_FONT)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


YLABEL = "% of the inputs the target\nclassifies correctly when clean"
# Panels per row of whitebox.png: two keep it within a page's text width.
WHITEBOX_COLUMNS = 2


def _has_pairs(entries):
    """True when a panel draws plain and adaptive bars side by side."""
    return any(e["variant"] == "adaptive" for e in entries)


def _panel_width(entries):
    """Inches of a bar panel: wide enough that a value printed on a bar ("100" at
    VALUE_FONT) fits inside it and the attack names under the groups do not touch."""
    groups = len({e["attack"] for e in entries})
    return max(1.0, (0.56 if _has_pairs(entries) else 0.5) * groups + 0.25)


def plot_whitebox(entries, path, note=None, title="White-box attacks"):
    """whitebox.png (and .pdf beside it): stacked bars, a panel per target.

    Returns False (and writes nothing) when there are no entries.
    """
    if not entries:
        return False
    plt = pyplot()
    targets = list(dict.fromkeys(e["target"] for e in entries))
    width = max(_panel_width([e for e in entries if e["target"] == t]) for t in targets)
    columns = min(WHITEBOX_COLUMNS, len(targets))
    rows = math.ceil(len(targets) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns + 0.7, 2.5 * rows),
                             squeeze=False, sharey=True)
    for i, ax in enumerate(axes.flat):
        if i >= len(targets):
            ax.set_axis_off()
            continue
        _rate_panel(ax, [e for e in entries if e["target"] == targets[i]],
                    f"target {targets[i]}")
        if i % columns == 0:
            ax.set_ylabel(YLABEL, fontsize=LABEL_FONT)
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
    plt = pyplot()
    targets = list(dict.fromkeys(e["target"] for e in entries))
    kinds = list(dict.fromkeys(surrogate_kind(e["source"]) for e in entries))

    def panel(target, kind):
        return [e for e in entries
                if e["target"] == target and surrogate_kind(e["source"]) == kind]

    # Each column as wide as its widest panel: "any surrogate" holds a single bar.
    widths = [max(_panel_width(panel(t, k)) for t in targets if panel(t, k)) for k in kinds]
    fig, axes = plt.subplots(len(targets), len(kinds),
                             figsize=(sum(widths) + 0.7, 2.4 * len(targets)), squeeze=False,
                             sharey=True, gridspec_kw={"width_ratios": widths})
    for row, target in enumerate(targets):
        for col, kind in enumerate(kinds):
            ax = axes[row][col]
            chosen = panel(target, kind)
            if not chosen:
                ax.set_axis_off()
                continue
            source = chosen[0]["source"].removeprefix("surrogate_")
            _rate_panel(ax, chosen, f"{target} from\nany surrogate" if source == "any"
                        else f"target {target}, surrogate {source}")
        axes[row][0].set_ylabel(YLABEL, fontsize=LABEL_FONT)
    return _finish_bars(plt, fig, entries, path, title, note)


SWEEP_COLUMNS = 3
SWEEP_YLABEL = "attack success = 1 - recovered (%)\ndashed: detected (%)"


def sweep_panels(sweeps):
    """The panels of sweeps.png: one per (attack, budget parameter), in first-seen order,
    so an attack swept over two budgets (CW over kappa and over steps) gets two."""
    return list(dict.fromkeys((s["attack"], s["parameter"]) for s in sweeps))


def budget_label(parameter):
    """An axis label for a sweep's budget parameter (its own name when not known)."""
    return PARAMETER_LABELS.get(parameter, parameter)


def plot_sweeps(sweeps, path, threshold=None, note=None):
    """sweeps.png (and .pdf): success (1 - recovered, solid) and detected (dashed) against
    each sweep's budget, a panel per attack and budget parameter (any parameter: eps,
    Gamma, kappa, ...), a colour per target and variant; the gradient-masking threshold
    dotted. Rates are over the inputs each target classifies correctly when clean.
    Returns False when there are no sweeps."""
    if not sweeps:
        return False
    plt = pyplot()
    from matplotlib.lines import Line2D
    panels = sweep_panels(sweeps)
    curves = list(dict.fromkeys((s["target"], s["variant"]) for s in sweeps))
    colors = plt.get_cmap("tab10")
    columns = min(SWEEP_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns + 0.4, 3.0 * rows),
                             squeeze=False, sharey=True)
    any_detected = False
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_axis_off()
            continue
        attack, parameter = panels[i]
        mine = [s for s in sweeps if (s["attack"], s["parameter"]) == (attack, parameter)]
        for s in mine:
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
                        textcoords="offset points", va="top", fontsize=TICK_FONT,
                        color="dimgrey")
        n = sorted({s["num_examples"] for s in mine})
        ax.set_xlabel(budget_label(parameter), fontsize=LABEL_FONT)
        ax.set_ylim(-0.02, 1.02)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25", "50", "75", "100"],
                      fontsize=TICK_FONT)
        ax.tick_params(axis="x", labelsize=TICK_FONT)
        ax.set_title(f"{attack}, budget {PARAMETER_NAMES.get(parameter, parameter)}\n"
                     f"(n = {'/'.join(str(c) for c in n)} inputs)", fontsize=TITLE_FONT)
        ax.grid(alpha=0.3)
        if i % columns == 0:
            ax.set_ylabel(SWEEP_YLABEL, fontsize=LABEL_FONT)
    fig.tight_layout()
    _title(fig, "Budget sweeps (gradient-masking check), over the inputs each target "
                "classifies correctly when clean", note)
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
    fig.legend(handles=handles, fontsize=LEGEND_FONT, loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 2 * columns),
               borderaxespad=0.0, frameon=False, title="colour: target, attack variant",
               title_fontsize=LEGEND_FONT)
    _save_png_and_pdf(fig, path)
    plt.close(fig)
    return True


ROC_SCORE = "margin"
SCORE_NAMES = {"margin": "outlier logit minus the largest class logit",
               "softmax": "softmax probability of the outlier class"}
ROC_ATTACKS = 3
ROC_COLUMNS = 3
ROC_XLABEL = "false detections: clean test inputs flagged (%)"
ROC_YLABEL = "adversarial examples detected (%)"


def _check_score(score):
    if score not in SCORES:
        raise ValueError(f"score {score!r}: not one of the detection scores {SCORES}")


def _hardness(entries, score):
    """An attack's lowest AUROC over its variants: how well it evades the detector."""
    return min(e[score]["auroc"] for e in entries)


def roc_curves(entries, score=ROC_SCORE, attacks=ROC_ATTACKS):
    """The detection entries one target's ROC panel draws, and how many attacks it had.

    The white-box entries (else those of the first black-box source); of their attacks,
    ordered by their lowest AUROC over the variants, the hardest to detect, the median
    and the easiest (all of them when there are `attacks` or fewer), each with its plain
    and adaptive variant: at most 2 * `attacks` curves, hardest attack first.
    """
    _check_score(score)
    entries = [e for e in entries if "roc" in e[score]]
    if not entries:
        return [], 0
    first = entries[0]
    origin = "whitebox" if any(e["setting"] == "whitebox" for e in entries) else (
        first["setting"], first["source"])
    entries = [e for e in entries if (e["setting"] if origin == "whitebox"
                                      else (e["setting"], e["source"])) == origin]
    by_attack = {}
    for e in entries:
        by_attack.setdefault(e["attack"], []).append(e)
    ranked = sorted(by_attack, key=lambda a: _hardness(by_attack[a], score))
    if len(ranked) > attacks:
        picks = np.unique(np.linspace(0, len(ranked) - 1, attacks).round().astype(int))
        ranked = [ranked[i] for i in picks]
    order = {"plain": 0, "adaptive": 1}
    chosen = [e for a in ranked
              for e in sorted(by_attack[a], key=lambda e: order.get(e["variant"], 2))]
    return chosen, len(by_attack)


def _where(e):
    return "white-box" if e["setting"] == "whitebox" else f"black-box from {e['source']}"


def plot_roc(detection, path_png, path_pdf, note=None, score=ROC_SCORE):
    """roc.png (and .pdf): the outlier class as a detector, a panel per target.

    Each panel draws roc_curves(): a colour per attack, solid for the plain attack and
    dashed for the adaptive one, with its AUROC in the panel's legend (every AUROC is
    in report.md), the false-detection targets dotted; axes in %. Returns False (no
    file) when there is no curve.
    """
    _check_score(score)
    entries = (detection or {}).get("entries", [])
    targets = list(dict.fromkeys(e["target"] for e in entries if "roc" in e[score]))
    if not targets:
        return False
    plt = pyplot()
    columns = min(ROC_COLUMNS, len(targets))
    rows = math.ceil(len(targets) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 5.4 * rows),
                             squeeze=False)
    colors = plt.get_cmap("tab10")
    styles = {"plain": "-", "adaptive": "--"}
    for i, ax in enumerate(axes.flat):
        if i >= len(targets):
            ax.set_axis_off()
            continue
        chosen, total = roc_curves([e for e in entries if e["target"] == targets[i]], score)
        attacks = list(dict.fromkeys(e["attack"] for e in chosen))
        for j, e in enumerate(chosen):
            roc = e[score]["roc"]
            # An adaptive attack that changed nothing draws exactly over the plain one.
            same = j > 0 and chosen[j - 1]["attack"] == e["attack"] and \
                chosen[j - 1][score]["roc"] == roc
            ax.plot(100 * np.asarray(roc["fpr"]), 100 * np.asarray(roc["tpr"]),
                    linestyle=styles.get(e["variant"], ":"), linewidth=1.4,
                    color=colors(attacks.index(e["attack"]) % 10),
                    label=f"{e['attack']}, {e['variant']} (AUROC {e[score]['auroc']:.2f}"
                          + (", the same curve)" if same else ")"))
        for alpha in FALSE_ALARM_TARGETS:
            ax.axvline(100 * alpha, color="grey", linestyle=":", linewidth=0.8)
        ax.plot([0, 100], [0, 100], color="lightgrey", linewidth=0.8,
                label="chance (a coin flip)")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 101)
        ax.tick_params(labelsize=TICK_FONT)
        ax.set_xlabel(ROC_XLABEL, fontsize=LABEL_FONT)
        ax.set_ylabel(ROC_YLABEL, fontsize=LABEL_FONT)
        shown = (f"{len(attacks)} of {total} attacks: hardest, median and easiest to detect"
                 if total > len(attacks) else f"{total} attacks")
        ax.set_title(f"target {targets[i]}, {_where(chosen[0])}\n{shown}",
                     fontsize=TITLE_FONT)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=TICK_FONT, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                  ncol=1, frameon=False, title="dotted: 1 % and 5 % false detections",
                  title_fontsize=TICK_FONT)
    fig.tight_layout()
    _title(fig, "The outlier class as a detector (ROC)\nscore: "
                f"{SCORE_NAMES.get(score, score)}", note)
    _save_png_and_pdf(fig, path_png, path_pdf)
    plt.close(fig)
    return True
