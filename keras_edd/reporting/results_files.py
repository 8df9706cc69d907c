"""Evaluation outputs: results.json, results.csv, PNG plots, TensorBoard, report.md.

`write_report(run_dir, results, images)` writes, in this order,

  results.csv      one row per number: clean rates, attack rates (filtered and
                   unfiltered), sweep points, with the attacks' mean L0 / L2 / L_inf
                   and seconds, the worst case per digit ("any attack") and the
                   accuracy at a fixed clean false-detection rate; the same numbers
                   as results.json
  whitebox.png/pdf Figure-1-style stacked bars recovered / detected / misclassified
                   (filtered rates), one panel per target, ending with "any attack"
  blackbox.png/pdf the same for transfer attacks, a row per target, a column per surrogate
  sweeps.png/pdf   success (1 - recovered) and detected against each sweep's budget
                   (eps, Gamma, kappa, ...), a panel per attack and budget
  roc.png/pdf      the outlier class as a detector: ROC of clean vs adversarial
                   inputs, a panel per target, up to three white-box attacks
  robustness.png/pdf  robust accuracy against eps, one curve per target (bin/reproduce's
                   robustness curves; keras_edd.reporting.robustness_curve_figure)
  logs/evaluation/ TensorBoard (keras_edd.reporting.tensorboard): every rate as a
                   scalar grouped by target (<target>/<origin>/<attack>-<variant>/...),
                   each sweep as a curve over its budget, clean vs adversarial image
                   grids captioned with the predicted labels, detection AUROCs and PR
                   curves, report.md (tf.summary.text)
  report.md        the tables, the filter, detection, warnings and timings
                   (keras_edd.reporting.markdown)
  results.json     last, so its presence means the evaluation finished

The figures (PNG at 200 dpi and PDF) are drawn by keras_edd.reporting.figures. A
--preset=quick run carries a banner in report.md and a mark in every figure's title: its
numbers are illustrative. Every file is written to a temporary name in the same folder and renamed
(keras_edd.files.atomic_write).
"""

import csv
import io
import os

from keras_edd.reporting import figures, tensorboard
from keras_edd.reporting.robustness_curve_figure import plot_robustness_curves
from keras_edd.reporting.robustness_tables import ordered
from keras_edd.reporting.markdown import markdown_report, quick_note
from keras_edd import files, stats
from keras_edd.results_schema import as_results, read_results, write_results

# Columns are only ever added at the end (distortions of x_adv - x and crafting seconds, empty
# on clean rows; then the 95 % Wilson interval of every rate column over `count`), so readers
# that index columns still work.
RATE_KEYS = ("recovered", "detected", "misclassified")
INTERVAL_RATES = RATE_KEYS + ("attack_failed", "false_detection", "accuracy_detection_correct",
                              "accuracy_rejection_error")
CSV_COLUMNS = ("kind", "setting", "target", "source", "attack", "variant", "parameter", "value",
               "subset", "num_examples", "count", "recovered", "detected", "misclassified",
               "attack_failed", "mean_l0", "mean_l2", "mean_linf", "attack_seconds",
               "threshold", "false_detection", "accuracy_detection_correct",
               "accuracy_rejection_error") + tuple(
                   f"{rate}_{end}" for rate in INTERVAL_RATES for end in ("low", "high"))
NORM_KEYS = ("mean_l0", "mean_l2", "mean_linf")


# -------------------------------------------------------------------------------- CSV


def _rate_row(kind, setting, target, source, attack, variant, parameter, value, subset,
              num_examples, rates=None, norms=None, seconds=None, **columns):
    """A CSV row; `rates` (OutcomeRates) fill count and the rate columns, `columns` the
    others by name; every rate column gets its 95 % Wilson interval over `count`
    (<rate>_low, <rate>_high)."""
    norms = norms or {}
    row = {"kind": kind, "setting": setting, "target": target, "source": source,
           "attack": attack, "variant": variant, "parameter": parameter, "value": value,
           "subset": subset, "num_examples": num_examples,
           **{k: norms.get(k) for k in NORM_KEYS}, "attack_seconds": seconds}
    if rates is not None:
        row.update(count=rates.count, **{k: rates.rate(k) for k in RATE_KEYS},
                   attack_failed=getattr(rates, "attack_failed", None))
    row.update(columns)
    for rate in INTERVAL_RATES:  # from the rate and its count alone
        interval = stats.interval_of(row.get(rate), row.get("count"))
        row[f"{rate}_low"], row[f"{rate}_high"] = interval or (None, None)
    return {k: row.get(k) for k in CSV_COLUMNS}


def _worst_case_rows(results):
    """CSV rows of the "any attack" rows (keras_edd.evaluation.worst_case): subsets filtered and
    unfiltered over every attacked digit, and *_common over the digits every attack
    covered."""
    rows = []
    for w in results.worst_case:
        for subset, rates, n in (
                ("filtered", w.filtered, w.num_examples),
                ("unfiltered", w.unfiltered, w.num_examples),
                ("filtered_common", w.common["filtered"], w.common_num_examples),
                ("unfiltered_common", w.common["unfiltered"], w.common_num_examples)):
            rows.append(_rate_row("worst_case", w.setting, w.target, w.source, w.attack,
                                  w.variant, "", "", subset, n, rates))
    return rows


def _fixed_fpr_rows(results):
    """CSV rows of the accuracy at a fixed clean false-detection rate: subset = the
    false-detection target (or 'argmax'); clean rows (kind at_fixed_fpr_clean) give tau,
    the test set's false detection and clean accuracy."""
    rows = []
    targets = results.at_fixed_fpr.targets if results.at_fixed_fpr else {}
    for target, t in targets.items():
        for label, th in t.thresholds.items():
            rows.append(_rate_row("at_fixed_fpr_clean", "clean", target, "", "", "", "", "",
                                  label, th.count, count=th.count, threshold=th.threshold,
                                  false_detection=th.false_detection,
                                  accuracy_rejection_error=th.clean_accuracy))
        for r in t.rows:
            for label, at in r.at.items():
                rows.append(_rate_row("at_fixed_fpr", r.setting, target, r.source, r.attack,
                                      r.variant, "", "", label, r.num_examples, count=at.count,
                                      threshold=t.thresholds[label].threshold,
                                      accuracy_detection_correct=at.detection_correct,
                                      accuracy_rejection_error=at.rejection_error))
    return rows


def result_rows(results):
    """Every rate in `results` (a Results or its dict) as a flat row (dicts with
    CSV_COLUMNS keys).

    Attack and sweep rows also carry the mean L0 / L2 / L_inf of x_adv - x over all
    attacked inputs (`norms` in results.json, the same in both subsets) and the
    attack's crafting seconds; clean rows leave those empty.
    """
    results = as_results(results)
    rows = []
    for name, model in results.models.items():
        for subset in ("clean_test_set", "clean_attacked"):
            clean = getattr(model, subset)
            rows.append(_rate_row("clean", "clean", name, "", "", "", "", "", subset,
                                  clean.count, clean))
    for e in results.evaluations:
        for subset in ("filtered", "unfiltered"):
            rows.append(_rate_row("attack", e.setting, e.target, e.source, e.attack,
                                  e.variant, e.parameter, e.value, subset, e.num_examples,
                                  getattr(e, subset), e.norms, e.attack_seconds))
    for s in results.sweeps:
        for point in s.points:
            for subset in ("filtered", "unfiltered"):
                rows.append(_rate_row("sweep", "whitebox", s.target, s.target, s.attack,
                                      s.variant, s.parameter, point.value, subset,
                                      s.num_examples, getattr(point, subset), point.norms,
                                      point.attack_seconds))
    return rows + _worst_case_rows(results) + _fixed_fpr_rows(results)


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def write_csv(path, rows):
    def write(f):
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row[k]) for k in CSV_COLUMNS})
    files.atomic_write(path, write)


# ------------------------------------------------------------------------------- all


def write_report(run_dir, results, images=None):
    """Write every output of an evaluation into `run_dir`; results.json last.

    `results` is a Results (keras_edd.results_schema) or its dict; every file is rendered
    from the one typed object, and results.json is written by its one writer
    (results_schema.write_results). Returns the dict written to results.json. Each figure is
    written as a PNG (200 dpi) and a PDF (vector) of the same name; a --preset=quick run
    marks them, and report.md, as illustrative (quick_note).
    """
    typed = as_results(results)
    os.makedirs(run_dir, exist_ok=True)
    written = ["results.json", "results.csv"]
    write_csv(os.path.join(run_dir, "results.csv"), result_rows(typed))
    data = typed.to_dict()  # the figures and TensorBoard read results.json's dict
    # Each panel of the rate figures ends with its "any attack" bar (keras_edd.evaluation.worst_case).
    entries = data["evaluations"] + data["worst_case"]
    threshold = data.get("evaluation_settings", {}).get("masking_threshold")
    note = quick_note(typed)

    def path(name):
        return os.path.join(run_dir, name)

    if figures.plot_whitebox([e for e in entries if e["setting"] == "whitebox"],
                             path("whitebox.png"), note=note):
        written += ["whitebox.png", "whitebox.pdf"]
    if figures.plot_blackbox([e for e in entries if e["setting"] == "blackbox"],
                             path("blackbox.png"), note=note):
        written += ["blackbox.png", "blackbox.pdf"]
    if figures.plot_sweeps(data["sweeps"], path("sweeps.png"), threshold, note=note):
        written += ["sweeps.png", "sweeps.pdf"]
    if figures.plot_roc(data.get("detection"), path("roc.png"), path("roc.pdf"), note=note):
        written += ["roc.png", "roc.pdf"]
    curves = ordered(typed.robustness_curves)  # one line per target
    if curves and plot_robustness_curves([c for _, c in curves], path("robustness.png"),
                                         labels=[name for name, _ in curves], note=note):
        written += ["robustness.png", "robustness.pdf"]
    written += ["report.md", "logs/evaluation"]
    typed = typed.replace(files=written)
    data["files"] = written
    text = markdown_report(typed)
    tensorboard.write_evaluation(path(os.path.join("logs", "evaluation")), data, images, text)
    files.atomic_write(path("report.md"), lambda f: f.write(text))
    return write_results(path("results.json"), typed)


def rewrite_text_outputs(run_dir):
    """Re-render results.json (in the current schema), results.csv and report.md of a
    finished evaluation from its results.json alone: nothing is recomputed, the figures
    and TensorBoard logs are left as they are. Returns the dict written."""
    typed = read_results(os.path.join(run_dir, "results.json"))
    write_csv(os.path.join(run_dir, "results.csv"), result_rows(typed))
    text = markdown_report(typed)
    files.atomic_write(os.path.join(run_dir, "report.md"), lambda f: f.write(text))
    return write_results(os.path.join(run_dir, "results.json"), typed)


def read_csv(path):
    """results.csv back as a list of dicts of strings (for checks and notebooks)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(io.StringIO(f.read())))
