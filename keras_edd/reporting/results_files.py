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
  logs/evaluation/ TensorBoard: every rate as a scalar, clean vs adversarial
                   image grids per attack captioned with the predicted labels
                   (tf.summary.image), detection PR curves, report.md (tf.summary.text)
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

import numpy as np

from keras_edd.reporting import figures
from keras_edd.reporting.markdown import markdown_report, quick_note
from keras_edd import files

# The columns added last (distortions of x_adv - x, crafting seconds) are empty on clean rows;
# the earlier ones keep their order, so readers that index columns still work.
CSV_COLUMNS = ("kind", "setting", "target", "source", "attack", "variant", "parameter", "value",
               "subset", "num_examples", "count", "recovered", "detected", "misclassified",
               "attack_failed", "mean_l0", "mean_l2", "mean_linf", "attack_seconds",
               "threshold", "false_detection", "accuracy_detection_correct",
               "accuracy_rejection_error")
RATE_KEYS = ("recovered", "detected", "misclassified")
NORM_KEYS = ("mean_l0", "mean_l2", "mean_linf")


# -------------------------------------------------------------------------------- CSV


def _rate_row(kind, setting, target, source, attack, variant, parameter, value, subset,
              num_examples, rates, norms=None, seconds=None):
    norms = norms or {}
    return {"kind": kind, "setting": setting, "target": target, "source": source,
            "attack": attack, "variant": variant, "parameter": parameter, "value": value,
            "subset": subset, "num_examples": num_examples, "count": rates.get("count"),
            **{k: rates.get(k) for k in RATE_KEYS}, "attack_failed": rates.get("attack_failed"),
            **{k: norms.get(k) for k in NORM_KEYS}, "attack_seconds": seconds,
            **{k: rates.get(k) for k in CSV_COLUMNS[-4:]}}


def _worst_case_rows(results):
    """CSV rows of the "any attack" rows (keras_edd.evaluation.worst_case): subsets filtered and
    unfiltered over every attacked digit, and *_common over the digits every attack
    covered."""
    rows = []
    for w in results.get("worst_case", []):
        for subset, rates, n in (
                ("filtered", w["filtered"], w["num_examples"]),
                ("unfiltered", w["unfiltered"], w["num_examples"]),
                ("filtered_common", w["all_attacks"]["filtered"],
                 w["all_attacks"]["num_examples"]),
                ("unfiltered_common", w["all_attacks"]["unfiltered"],
                 w["all_attacks"]["num_examples"])):
            rows.append(_rate_row("worst_case", w["setting"], w["target"], w["source"],
                                  w["attack"], w["variant"], "", "", subset, n, rates))
    return rows


def _fixed_fpr_rows(results):
    """CSV rows of the accuracy at a fixed clean false-detection rate: subset = the
    false-detection target (or 'argmax'); clean rows (kind at_fixed_fpr_clean) give tau,
    the test set's false detection and clean accuracy."""
    rows = []
    for target, t in (results.get("at_fixed_fpr") or {}).get("targets", {}).items():
        for label, th in t["thresholds"].items():
            rows.append(_rate_row("at_fixed_fpr_clean", "clean", target, "", "", "", "", "",
                                  label, th["count"], {
                                      "count": th["count"], "threshold": th["threshold"],
                                      "false_detection": th["false_detection"],
                                      "accuracy_rejection_error": th["clean_accuracy"]}))
        for r in t["rows"]:
            for label, at in r["at"].items():
                rows.append(_rate_row("at_fixed_fpr", r["setting"], target, r["source"],
                                      r["attack"], r["variant"], "", "", label,
                                      r["num_examples"], {
                                          "count": at["count"],
                                          "threshold": t["thresholds"][label]["threshold"],
                                          "accuracy_detection_correct": at["detection_correct"],
                                          "accuracy_rejection_error": at["rejection_error"]}))
    return rows


def result_rows(results):
    """Every rate in `results` as a flat row (dicts with CSV_COLUMNS keys).

    Attack and sweep rows also carry the mean L0 / L2 / L_inf of x_adv - x over all
    attacked inputs (`norms` in results.json, the same in both subsets) and the
    attack's crafting seconds; clean rows leave those empty.
    """
    rows = []
    for name, model in results.get("models", {}).items():
        for subset in ("clean_test_set", "clean_attacked"):
            clean = model[subset]
            rates = {"count": clean["count"], "recovered": clean["accuracy"],
                     "detected": clean["detected"], "misclassified": clean["misclassified"]}
            rows.append(_rate_row("clean", "clean", name, "", "", "", "", "", subset,
                                  clean["count"], rates))
    for e in results.get("evaluations", []):
        for subset in ("filtered", "unfiltered"):
            rows.append(_rate_row("attack", e["setting"], e["target"], e["source"], e["attack"],
                                  e["variant"], e["parameter"], e["value"], subset,
                                  e["num_examples"], e[subset], e.get("norms"),
                                  e.get("attack_seconds")))
    for s in results.get("sweeps", []):
        for point in s["points"]:
            for subset in ("filtered", "unfiltered"):
                rows.append(_rate_row("sweep", "whitebox", s["target"], s["target"], s["attack"],
                                      s["variant"], s["parameter"], point["value"], subset,
                                      s["num_examples"], point[subset], point.get("norms"),
                                      point.get("attack_seconds")))
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


# ------------------------------------------------------------------------ TensorBoard


def _budget_step(parameter, value):
    """Integer TensorBoard step for a sweep point: eps and Gamma in thousandths, kappa as is."""
    return int(round(value * 1000)) if parameter in ("eps", "gamma") else int(round(value))


def image_grid(clean, adversarial):
    """[1, 2H, kW, C] float32 grid: clean inputs on top, adversarial below."""
    clean = np.clip(np.asarray(clean, np.float32), 0, 1)
    adversarial = np.clip(np.asarray(adversarial, np.float32), 0, 1)
    top = np.concatenate(list(clean), axis=1)
    bottom = np.concatenate(list(adversarial), axis=1)
    return np.concatenate([top, bottom], axis=0)[None]


def prediction_text(prediction, outlier_class=None):
    """'pred 7', or 'pred 10 (outlier)' for the outlier class: an image grid's caption."""
    prediction = int(prediction)
    return f"pred {prediction}" + (" (outlier)" if prediction == outlier_class else "")


def labelled_grid(grid, title=""):
    """[1, H, W, 3] uint8: the clean inputs (top row, captioned with the true label y) and
    adversarial ones (bottom row), each captioned with the model's prediction
    (keras_edd.evaluation.engine's image dict): black = the true label, red = another real
    class, blue = the outlier class."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = (("clean", grid["clean"], grid["clean_predictions"]),
            ("adversarial", grid["adversarial"], grid["adversarial_predictions"]))
    k = len(grid["clean"])
    fig, axes = plt.subplots(2, k, figsize=(0.9 * k + 0.5, 2.6), squeeze=False, dpi=100)
    for r, (name, images, predictions) in enumerate(rows):
        for i in range(k):
            ax = axes[r][i]
            image = np.clip(np.asarray(images[i], np.float32), 0, 1)
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                      vmin=0, vmax=1)
            p = int(predictions[i])
            color = ("tab:blue" if p == grid.get("outlier_class")
                     else "black" if p == int(grid["labels"][i]) else "tab:red")
            caption = prediction_text(p, grid.get("outlier_class"))
            if r == 0:
                caption = f"y={int(grid['labels'][i])} {caption}"
            ax.set_title(caption, fontsize=7, color=color)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(name, fontsize=7)
    fig.suptitle(title, fontsize=7)
    fig.tight_layout(pad=0.3)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return pixels[None]


def write_hparams(log_dir, hparams, metrics, step=0):
    """TensorBoard hparams of one run (its session is `log_dir`, subfolders included)
    and its final numbers as scalars, so the hparams dashboard can compare runs."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        hp.hparams(hparams)
        for tag, value in metrics.items():
            if value is not None:
                tf.summary.scalar(tag, value, step=step)
    writer.close()


def pr_curve_data(roc, positives, negatives):
    """The pr_curve plugin's raw data (TP, FP, TN, FN, precision, recall) from ROC points.

    Ordered by increasing threshold, as the plugin expects (recall decreasing).
    """
    tpr = np.asarray(roc["tpr"], np.float64)[::-1]
    fpr = np.asarray(roc["fpr"], np.float64)[::-1]
    tp, fp = tpr * positives, fpr * negatives
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-12), 1.0)
    return {"true_positive_counts": tp, "false_positive_counts": fp,
            "true_negative_counts": negatives - fp, "false_negative_counts": positives - tp,
            "precision": precision, "recall": tpr}


def _write_pr_curves(detection):
    """Detection PR curves (adversarial = positive) into the default summary writer.

    tensorboard.plugins.pr_curve builds a tf.compat.v1 Summary protobuf from raw
    counts; tf.summary.experimental.write_raw_pb writes it under TF2.
    """
    import tensorflow as tf
    from tensorboard.plugins.pr_curve import summary as pr_summary
    for e in (detection or {}).get("entries", []):
        where = e["target"] if e["setting"] == "whitebox" else f"{e['target']}/{e['source']}"
        for score in ("softmax", "margin"):
            if "roc" not in e[score]:
                continue
            data = pr_curve_data(e[score]["roc"], e["count"], e["count"])
            pb = pr_summary.raw_data_pb(
                f"detection/{e['setting']}/{where}/{e['attack']}_{e['variant']}/{score}",
                num_thresholds=len(data["recall"]),
                description=f"outlier-class score {score}: adversarial (positive) vs clean; "
                            "points of the ROC curve, not evenly spaced thresholds", **data)
            tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=0)


def write_tensorboard(log_dir, results, images=None, report_text=None):
    """Rates as scalars, image grids with predicted labels (tf.summary.image), detection
    PR curves and report.md's text (tf.summary.text), in `log_dir`.

    `images` maps a tag to keras_edd.evaluation.engine's image dict (a plain (clean,
    adversarial) pair gives the grid without captions).
    """
    import tensorflow as tf
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for name, model in results.get("models", {}).items():
            clean = model["clean_test_set"]
            tf.summary.scalar(f"clean/{name}/accuracy", clean["accuracy"], step=0)
            tf.summary.scalar(f"clean/{name}/detected", clean["detected"], step=0)
            tf.summary.scalar(f"checks/{name}/zero_gradient_fraction",
                              model["checks"]["zero_gradient_fraction"], step=0)
        # The worst case per digit ("any attack") under worst_case/<setting>/...
        for e in results.get("evaluations", []) + results.get("worst_case", []):
            where = e["target"] if e["setting"] == "whitebox" else f"{e['target']}/{e['source']}"
            tag = (f"worst_case/{e['setting']}/{where}" if e["attack"] == "any" else
                   f"{e['setting']}/{where}/{e['attack']}_{e['variant']}")
            for key in RATE_KEYS:
                if e["filtered"][key] is not None:
                    tf.summary.scalar(f"{tag}/{key}", e["filtered"][key], step=0)
        for s in results.get("sweeps", []):
            tag = f"sweep/{s['target']}/{s['attack']}_{s['variant']}"
            description = (f"{s['parameter']} sweep; step = {s['parameter']} x 1000"
                           if s["parameter"] in ("eps", "gamma") else "kappa sweep; step = kappa")
            for point in s["points"]:
                step = _budget_step(s["parameter"], point["value"])
                if point["success"] is not None:
                    tf.summary.scalar(f"{tag}/success", point["success"], step=step,
                                      description=description)
                    tf.summary.scalar(f"{tag}/detected", point["filtered"]["detected"],
                                      step=step, description=description)
        for tag, grid in (images or {}).items():
            if isinstance(grid, (tuple, list)):
                tf.summary.image(f"images/{tag}", image_grid(*grid), step=0,
                                 description="top: clean test inputs; bottom: adversarial")
                continue
            tf.summary.image(
                f"images/{tag}", labelled_grid(grid, f"{tag}: predictions of {grid['model']}"),
                step=0, description=f"top: clean test inputs; bottom: adversarial; captions: "
                f"{grid['model']}'s predicted labels (black = true label, red = another "
                "class, blue = the outlier class)")
        _write_pr_curves(results.get("detection"))
        if report_text:
            tf.summary.text("report", report_text, step=0,
                            description="report.md of this evaluation")
    writer.close()

# ------------------------------------------------------------------------------- all


def write_report(run_dir, results, images=None):
    """Write every output of an evaluation into `run_dir`; results.json last.

    Each figure is written as a PNG (200 dpi) and a PDF (vector) of the same name;
    a --preset=quick run marks them, and report.md, as illustrative (quick_note).
    """
    os.makedirs(run_dir, exist_ok=True)
    written = ["results.json", "results.csv"]
    write_csv(os.path.join(run_dir, "results.csv"), result_rows(results))
    # Each panel of the rate figures ends with its "any attack" bar (keras_edd.evaluation.worst_case).
    entries = results.get("evaluations", []) + results.get("worst_case", [])
    threshold = results.get("evaluation_settings", {}).get("masking_threshold")
    note = quick_note(results)

    def path(name):
        return os.path.join(run_dir, name)

    if figures.plot_whitebox([e for e in entries if e["setting"] == "whitebox"],
                             path("whitebox.png"), note=note):
        written += ["whitebox.png", "whitebox.pdf"]
    if figures.plot_blackbox([e for e in entries if e["setting"] == "blackbox"],
                             path("blackbox.png"), note=note):
        written += ["blackbox.png", "blackbox.pdf"]
    if figures.plot_sweeps(results.get("sweeps", []), path("sweeps.png"), threshold, note=note):
        written += ["sweeps.png", "sweeps.pdf"]
    if figures.plot_roc(results.get("detection"), path("roc.png"), path("roc.pdf"), note=note):
        written += ["roc.png", "roc.pdf"]
    written += ["report.md", "logs/evaluation"]
    results["files"] = written
    text = markdown_report(results)
    write_tensorboard(path(os.path.join("logs", "evaluation")), results, images, text)
    files.atomic_write(path("report.md"), lambda f: f.write(text))
    files.write_json(path("results.json"), results)
    return results


def read_csv(path):
    """results.csv back as a list of dicts of strings (for checks and notebooks)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(io.StringIO(f.read())))
