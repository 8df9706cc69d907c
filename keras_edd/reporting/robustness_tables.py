"""The standard evaluation and the robustness curves of a bin/reproduce run, as Markdown.

  standard_table     per target: clean accuracy, robust accuracy [95 % interval], the
                     cumulative robust accuracy after each attack in the order run, and
                     for a model with an outlier class the robust accuracy at 5 % clean
                     false detection (a detection counted correct / as an error)
  standard_lines     one line per target: robust accuracy and its interval
  curve_lines        one line per target: median eps* and robust accuracy at the standard eps

Read from the typed results (keras_edd.results_schema: `standard`, `robustness_curves`);
no TensorFlow. Used by report.md (keras_edd.reporting.markdown) and the README's
`standard` block (keras_edd.reporting.readme_tables). Rates in percent.
"""

from keras_edd.formatting import percent_interval

TARGET_ORDER = ("undefended", "extended", "distillation", "adversarial")
FALSE_DETECTION = 0.05  # the detector's operating point shown: 5 % clean false detection
NORM_NAMES = {"linf": "L∞", "l2": "L2"}
NOT_COMPUTED = ("Not yet computed: this results.json has no standard evaluation (run "
                "bin/reproduce again with --standard, the default, to add it).")


def ordered(section):
    """(target, entry) of a per-target section, the paper's targets first."""
    return sorted(section.items(), key=lambda item: (
        TARGET_ORDER.index(item[0]) if item[0] in TARGET_ORDER else len(TARGET_ORDER),
        item[0]))


def rate_cell(rate, unit=""):
    """'30.5 [27.7, 33.5]': a keras_edd.stats.Rate in percent with its 95 % Wilson interval."""
    return percent_interval(rate.value, rate.interval, unit=unit)


def budget(entry):
    """'L∞ ε = 0.3, n = 1000': the threat model and the digits of a standard evaluation."""
    return f"{NORM_NAMES.get(entry.norm, entry.norm)} ε = {entry.eps:g}, n = {entry.n}"


def standard_table(results, unit=""):
    """The table of the standard evaluation (see the module docstring); NOT_COMPUTED when
    `results` has none."""
    if not results.standard:
        return NOT_COMPUTED
    attacks = list(dict.fromkeys(a for _, e in ordered(results.standard) for a in e.attacks))
    header = (["target", "threat model", "clean accuracy", "robust accuracy [95 % interval]"]
              + [f"after {a}" for a in attacks]
              + [f"robust at {100 * FALSE_DETECTION:g} % false detection (detection correct / "
                 "rejection error)"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for target, e in ordered(results.standard):
        variant = "adaptive" if e.outlier_class is not None else "plain"
        cells = [target, f"{budget(e)}, {variant}", rate_cell(e.clean_accuracy, unit),
                 rate_cell(e.robust_accuracy, unit)]
        cells += [rate_cell(e.robust_accuracy_by_attack[a], unit)
                  if a in e.robust_accuracy_by_attack else "" for a in attacks]
        at = e.threshold(FALSE_DETECTION)
        cells.append("" if at is None else
                     f"{rate_cell(at.robust_accuracy_detection_correct, unit)} / "
                     f"{rate_cell(at.robust_accuracy_rejection_error, unit)} "
                     f"(clean {rate_cell(at.clean_accuracy, unit)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def standard_lines(results, unit=" %"):
    """'- target: robust accuracy 84.0 % [81.6, 86.1] (clean ...; L∞ ε = 0.3, n = 1000)'
    per target ([] without a standard evaluation)."""
    lines = []
    for target, e in ordered(results.standard):
        line = (f"- {target}: robust accuracy {rate_cell(e.robust_accuracy, unit)}, clean "
                f"{rate_cell(e.clean_accuracy, unit)} ({budget(e)}"
                f"{', adaptive' if e.outlier_class is not None else ''})")
        at = e.threshold(FALSE_DETECTION)
        if at is not None:
            line += (f"; at {100 * FALSE_DETECTION:g} % clean false detection "
                     f"{rate_cell(at.robust_accuracy_detection_correct, unit)} counting a "
                     "detection as correct, "
                     f"{rate_cell(at.robust_accuracy_rejection_error, unit)} as an error")
        lines.append(line + ".")
    return lines


def curve_lines(results, unit=" %"):
    """'- target: median ε* 0.12, robust accuracy at ε 0.3 ...' per robustness curve ([]
    without curves); the standard eps is the standard evaluation's (any target's)."""
    eps = next((e.eps for e in results.standard.values()), None)
    lines = []
    for target, c in ordered(results.robustness_curves):
        median = ("beyond every attack found (more than half of the digits never broken)"
                  if c.median_eps == float("inf") else f"{c.median_eps:.3g}")
        line = (f"- {target}: median ε* {median}; n = {c.n}, clean "
                f"{rate_cell(c.clean_accuracy, unit)}, attacks {', '.join(c.attacks)}"
                f"{', adaptive' if c.outlier_class is not None else ''}")
        at = None if eps is None else c.at(eps)
        if at is not None:
            line += f"; robust accuracy at ε = {eps:g}: {rate_cell(at, unit)}"
        lines.append(line + ".")
    return lines
