"""TensorBoard of an evaluation (logs/evaluation/) and the hparams of a training run.

`write_evaluation(log_dir, results, images, report_text)` groups every number by the model
it was measured on, so a target's rates sit under one heading of the scalars dashboard:

  <model>/clean/accuracy, detected            on the whole clean test set
  <model>/checks/zero_gradient_fraction       the gradient-masking check
  <target>/<origin>/<attack>-<variant>/recovered, detected, misclassified
                                              filtered rates of one attack run; origin is
                                              `whitebox` or `blackbox_from_<source>`, and
                                              the worst case per digit is `any_attack`
  <target>/<origin>/<attack>-<variant>/auroc_<score>
                                              the outlier class as a detector (softmax,
                                              margin), with a PR curve `.../detection_<score>`
  <target>/whitebox_sweep_<parameter>/<attack>-<variant>/success, detected, misclassified,
                                              <parameter>: one curve per sweep; step i is the
                                              sweep's i-th budget, whose value is the scalar
                                              `<parameter>` at step i (and in the description)
  images/<source>/<attack>_<variant>          clean inputs above adversarial ones, captioned
                                              with the predicted labels
  report                                      report.md (tf.summary.text)

A single run is one point per tag (step 0) except the sweeps. `write_hparams` writes a
training run's hparams and final numbers for the hparams dashboard. TensorFlow and
matplotlib are imported inside the functions, so importing this module is cheap.
"""

import numpy as np

from keras_edd.evaluation.detection import SCORES
from keras_edd.reporting.figures import pyplot

RATE_KEYS = ("recovered", "detected", "misclassified")
FILTERED = "over the test inputs the target classifies correctly when clean"


def origin(entry):
    """The tag part saying where an entry's adversarial inputs came from."""
    if entry["setting"] == "whitebox":
        return "whitebox"
    return f"blackbox_from_{entry['source']}"


def run_name(entry):
    """'<attack>-<variant>', or 'any_attack' for the worst case per digit."""
    return "any_attack" if entry["attack"] == "any" else f"{entry['attack']}-{entry['variant']}"


def entry_tag(entry):
    """'<target>/<origin>/<attack>-<variant>': the heading of one attack run's numbers."""
    return f"{entry['target']}/{origin(entry)}/{run_name(entry)}"


def sweep_tag(sweep):
    """'<target>/whitebox_sweep_<parameter>/<attack>-<variant>': one sweep's curves."""
    return (f"{sweep['target']}/whitebox_sweep_{sweep['parameter']}/"
            f"{sweep['attack']}-{sweep['variant']}")


def sweep_description(sweep, what):
    """The text under a sweep's tag: what it plots and which budget each step is."""
    steps = ", ".join(f"{i}: {p['value']:g}" for i, p in enumerate(sweep["points"]))
    return (f"{what} {FILTERED}, against {sweep['parameter']} ({sweep['attack']}, "
            f"{sweep['variant']}); step = index of the budget value ({steps})")


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
    plt = pyplot()
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


def _write_detection(detection):
    """AUROC scalars and PR curves (adversarial = positive) of each detection entry.

    tensorboard.plugins.pr_curve builds a tf.compat.v1 Summary protobuf from raw
    counts; tf.summary.experimental.write_raw_pb writes it under TF2.
    """
    import tensorflow as tf
    from tensorboard.plugins.pr_curve import summary as pr_summary
    for e in (detection or {}).get("entries", []):
        for score in SCORES:
            if e[score].get("auroc") is not None:
                tf.summary.scalar(f"{entry_tag(e)}/auroc_{score}", e[score]["auroc"], step=0,
                                  description=f"AUROC of the outlier-class score {score}: "
                                              "adversarial vs the same inputs clean")
            if "roc" not in e[score]:
                continue
            data = pr_curve_data(e[score]["roc"], e["count"], e["count"])
            pb = pr_summary.raw_data_pb(
                f"{entry_tag(e)}/detection_{score}", num_thresholds=len(data["recall"]),
                description=f"outlier-class score {score}: adversarial (positive) vs clean; "
                            "points of the ROC curve, not evenly spaced thresholds", **data)
            tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=0)


def _write_sweep(sweep):
    """A sweep as curves over its budget: step i is the i-th budget value."""
    import tensorflow as tf
    tag = sweep_tag(sweep)
    for step, point in enumerate(sweep["points"]):
        tf.summary.scalar(f"{tag}/{sweep['parameter']}", point["value"], step=step,
                          description=sweep_description(sweep, "the budget"))
        if point["success"] is None:
            continue
        tf.summary.scalar(f"{tag}/success", point["success"], step=step,
                          description=sweep_description(sweep, "attack success = 1 - recovered"))
        for key in ("detected", "misclassified"):
            if point["filtered"][key] is not None:
                tf.summary.scalar(f"{tag}/{key}", point["filtered"][key], step=step,
                                  description=sweep_description(sweep, key))


def _write_images(images):
    import tensorflow as tf
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


def write_evaluation(log_dir, results, images=None, report_text=None):
    """An evaluation's numbers, sweeps, image grids, detection and report in `log_dir`,
    grouped by model (see the module docstring).

    `images` maps a tag to keras_edd.evaluation.engine's image dict (a plain (clean,
    adversarial) pair gives the grid without captions).
    """
    import tensorflow as tf
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for name, model in results.get("models", {}).items():
            clean = model["clean_test_set"]
            for key, value in (("accuracy", clean["accuracy"]), ("detected", clean["detected"])):
                tf.summary.scalar(f"{name}/clean/{key}", value, step=0,
                                  description=f"{key} on the whole clean test set")
            tf.summary.scalar(f"{name}/checks/zero_gradient_fraction",
                              model["checks"]["zero_gradient_fraction"], step=0)
        for e in results.get("evaluations", []) + results.get("worst_case", []):
            for key in RATE_KEYS:
                if e["filtered"][key] is not None:
                    tf.summary.scalar(f"{entry_tag(e)}/{key}", e["filtered"][key], step=0,
                                      description=f"{key} {FILTERED}")
        for sweep in results.get("sweeps", []):
            _write_sweep(sweep)
        _write_images(images)
        _write_detection(results.get("detection"))
        if report_text:
            tf.summary.text("report", report_text, step=0,
                            description="report.md of this evaluation")
    writer.close()
