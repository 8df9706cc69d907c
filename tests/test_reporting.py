"""results.csv / PNG / TensorBoard / report.md from a hand-made results dict."""

import glob
import os

import numpy as np
import pytest

from conftest import event_hparams
from keras_edd.reporting import markdown, results_files, tensorboard
from keras_edd import files, stats
from keras_edd.results_schema import as_results


def _rates(count, recovered, detected):
    return {"count": count, "recovered": recovered, "detected": detected,
            "misclassified": None if recovered is None else 1.0 - recovered - detected}


def _norms(l0, l2, linf):
    return {"changed_fraction": 1.0, "mean_l0": l0, "mean_l0_changed": l0, "mean_l2": l2,
            "mean_l2_changed": l2, "mean_linf": linf, "mean_linf_changed": linf}


def _entry(setting, target, source, attack, variant, filtered, unfiltered, value=0.2,
           norms=(700.5, 1.5, 0.2), seconds=0.25):
    return {"setting": setting, "target": target, "source": source, "attack": attack,
            "variant": variant, "params": {"eps": value}, "parameter": "eps", "value": value,
            "num_examples": 10, "filtered": filtered, "unfiltered": unfiltered,
            "success": None if filtered["recovered"] is None else 1 - filtered["recovered"],
            "norms": _norms(*norms), "attack_seconds": seconds}


def _clean(accuracy, detected):
    return {"count": 10, "accuracy": accuracy, "detected": detected,
            "misclassified": 1 - accuracy - detected}


def _results():
    models = {name: {"role": "target", "outputs": outputs, "outlier_class": outlier,
                     "clean_test_set": _clean(0.9, det), "clean_attacked": _clean(0.8, det),
                     "checks": {"probabilities": False, "stochastic": False,
                                "zero_gradient_fraction": 0.0}}
              for name, outputs, outlier, det in (("undefended", 10, None, 0.0),
                                                  ("extended", 11, 10, 0.1))}
    evaluations = [
        _entry("whitebox", "undefended", "undefended", "fgsm", "plain",
               _rates(8, 0.25, 0.0), _rates(10, 0.3, 0.0)),
        _entry("whitebox", "extended", "extended", "fgsm", "adaptive",
               _rates(8, 0.125, 0.5), _rates(10, 0.2, 0.4), norms=(650.0, 2.25, 0.3),
               seconds=1.75),
        _entry("blackbox", "extended", "U", "fgsm", "plain",
               _rates(0, None, None), _rates(10, 0.5, 0.1)),
        _entry("blackbox", "undefended", "J_undefended", "fgsm", "plain",
               _rates(9, 0.5, 0.0), _rates(10, 0.4, 0.0)),
    ]
    sweeps = [{"target": "extended", "attack": "fgsm", "variant": "plain", "parameter": "eps",
               "num_examples": 10, "max_success": 0.875, "masking_suspected": True,
               "points": [{"value": v, "filtered": _rates(8, r, 0.25),
                           "unfiltered": _rates(10, r, 0.2), "success": 1 - r,
                           "norms": _norms(600.0, l2, v), "attack_seconds": 0.5}
                          for v, r, l2 in ((0.1, 0.5, 1.0), (0.5, 0.125, 4.0))]}]
    return {"kind": "test", "settings": {"preset": None},
            "dataset": {"name": "toy", "num_classes": 10, "train_size": 100, "test_size": 20},
            "models": models,
            "evaluations": evaluations, "sweeps": sweeps, "filter": "FILTER TEXT",
            "warnings": ["extended: fgsm looks masked"], "num_examples": {"fgsm": 10},
            "evaluation_settings": {"masking_threshold": 0.95}, "wall_seconds": 1.0,
            "stage_seconds": {"whitebox": {"seconds_here": 0.5, "seconds_total": 0.75}},
            "crafts": {"computed": 1, "loaded": 1}, "versions": {"numpy": np.__version__}}


@pytest.fixture
def results():
    """A fresh hand-made results dict (tests may change it)."""
    return _results()


def _is_png(path):
    import matplotlib.image
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    return image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def _png_dpi(path):
    from PIL import Image
    with Image.open(path) as image:
        return image.info["dpi"]


FIGURES = ("whitebox", "blackbox", "sweeps")


def _write_recording_texts(run_dir, results, images=None):
    """write_report, recording every text drawn on each figure it saves.

    Returns {PNG name: [texts]}."""
    import matplotlib.text
    from keras_edd.reporting import figures
    texts = {}
    save = figures._save_png_and_pdf

    def record(fig, path_png, path_pdf=None):
        texts[os.path.basename(path_png)] = [t.get_text()
                                             for t in fig.findobj(matplotlib.text.Text)]
        save(fig, path_png, path_pdf)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "_save_png_and_pdf", record)
        results_files.write_report(str(run_dir), results, images)
    return texts


# Drawing every figure (PNG and PDF) and the TensorBoard files takes seconds: the tests that
# only read a report's outputs share one written run folder per preset.
@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """(run folder, the results it was written from, figure texts): a --preset=paper run
    with one image grid."""
    run_dir = tmp_path_factory.mktemp("paper_run")
    results = _results()
    results["settings"]["preset"] = "paper"
    roc = {"fpr": [0.0, 0.0, 0.25, 1.0], "tpr": [0.0, 0.5, 1.0, 1.0]}
    results["detection"] = {"entries": [{
        "setting": "whitebox", "target": "extended", "source": "extended", "attack": "fgsm",
        "variant": variant, "count": 8, "num_examples": 10,
        **{score: {"auroc": 0.75, "roc": roc, "at_fpr": {}} for score in ("softmax", "margin")}}
        for variant in ("plain", "adaptive")]}
    images = {"extended/fgsm_adaptive": (np.zeros((3, 28, 28, 1)), np.ones((3, 28, 28, 1)))}
    texts = _write_recording_texts(run_dir, results, images)
    return run_dir, results, texts


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """(run folder, the results it was written from, figure texts): a --preset=quick run."""
    run_dir = tmp_path_factory.mktemp("quick_run")
    results = _results()
    results["settings"]["preset"] = "quick"
    return run_dir, results, _write_recording_texts(run_dir, results)


def test_write_report_files_and_csv_matches_json(paper_run):
    tmp_path, _, _ = paper_run
    for name in ("results.json", "results.csv", "report.md"):
        assert (tmp_path / name).is_file(), name
    assert not glob.glob(str(tmp_path / ".tmp-*"))
    stored = files.read_json(tmp_path / "results.json")
    for figure in (*FIGURES, "roc"):  # roc: the detection section's curves
        assert _is_png(tmp_path / f"{figure}.png")
        assert _png_dpi(tmp_path / f"{figure}.png") == pytest.approx((200, 200), abs=0.5)
        pdf = (tmp_path / f"{figure}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and len(pdf) > 1000, figure
        assert b"/Subtype /Image" not in pdf, figure  # vector, not an embedded bitmap
        assert {f"{figure}.png", f"{figure}.pdf"} <= set(stored["files"])
    assert stored["files"][:2] == ["results.json", "results.csv"]
    rows = results_files.read_csv(tmp_path / "results.csv")
    # 2 models x 2 clean subsets + 4 entries x 2 subsets + 2 sweep points x 2 subsets
    assert len(rows) == 4 + 8 + 4
    # results.json is written with sorted keys, so compare the rows as sorted lists.
    def text(value):
        if value is None:
            return ""
        return repr(value) if isinstance(value, float) else str(value)

    from_csv = sorted(tuple(row[k] for k in results_files.CSV_COLUMNS) for row in rows)
    from_json = sorted(tuple(text(row[k]) for k in results_files.CSV_COLUMNS)
                       for row in results_files.result_rows(stored))
    assert from_csv == from_json
    extended = [r for r in rows if r["kind"] == "attack" and r["target"] == "extended"
                and r["variant"] == "adaptive" and r["subset"] == "filtered"]
    assert len(extended) == 1 and float(extended[0]["detected"]) == 0.5
    report = (tmp_path / "report.md").read_text()
    assert "FILTER TEXT" in report and "possible masking" in report
    assert "| extended | extended | fgsm | adaptive |" in report
    assert "12.5 %" in report  # recovered of the adaptive white-box attack
    assert report.startswith("# keras_edd evaluation") and "ILLUSTRATIVE" not in report


def test_csv_has_the_distortions_and_seconds_of_results_json(paper_run):
    tmp_path, _, _ = paper_run
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header == list(results_files.CSV_COLUMNS)
    # The columns readers knew keep their places; the new ones come last.
    assert header[:15] == ["kind", "setting", "target", "source", "attack", "variant",
                           "parameter", "value", "subset", "num_examples", "count", "recovered",
                           "detected", "misclassified", "attack_failed"]
    assert header[15:23] == ["mean_l0", "mean_l2", "mean_linf", "attack_seconds", "threshold",
                             "false_detection", "accuracy_detection_correct",
                             "accuracy_rejection_error"]
    # Then the 95 % Wilson interval of every rate column, over `count`.
    assert header[23:] == [f"{rate}_{end}" for rate in (
        "recovered", "detected", "misclassified", "attack_failed", "false_detection",
        "accuracy_detection_correct", "accuracy_rejection_error") for end in ("low", "high")]
    rows = results_files.read_csv(tmp_path / "results.csv")
    stored = files.read_json(tmp_path / "results.json")
    checked = 0
    for e in stored["evaluations"]:
        mine = [r for r in rows if r["kind"] == "attack" and r["target"] == e["target"]
                and r["source"] == e["source"] and r["variant"] == e["variant"]]
        assert len(mine) == 2  # filtered and unfiltered
        for r in mine:
            for key in ("mean_l0", "mean_l2", "mean_linf"):
                assert float(r[key]) == e["norms"][key]
            assert float(r["attack_seconds"]) == e["attack_seconds"]
            checked += 1
    assert checked == 8
    adaptive = [r for r in rows if r["variant"] == "adaptive"]
    assert {(r["mean_l0"], r["mean_l2"], r["mean_linf"], r["attack_seconds"])
            for r in adaptive} == {("650.0", "2.25", "0.3", "1.75")}
    sweep = sorted((float(r["value"]), float(r["mean_l2"]), float(r["mean_linf"]))
                   for r in rows if r["kind"] == "sweep" and r["subset"] == "filtered")
    assert sweep == [(0.1, 1.0, 0.1), (0.5, 4.0, 0.5)]
    for r in rows:
        if r["kind"] == "clean":
            assert r["mean_l0"] == r["mean_l2"] == r["mean_linf"] == r["attack_seconds"] == ""


def test_quick_run_is_marked_illustrative_in_report_and_figures(quick_run):
    tmp_path, results, texts = quick_run
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("> **ILLUSTRATIVE RESULTS ONLY.**")
    assert "`--preset=quick`" in report.split("\n")[0]
    assert set(texts) == {f"{f}.png" for f in FIGURES}
    note = markdown.quick_note(results)
    for name, drawn in texts.items():
        assert note in drawn, name


def test_other_runs_carry_no_mark(paper_run):
    tmp_path, results, texts = paper_run
    assert markdown.quick_note(results) is None
    assert not (tmp_path / "report.md").read_text().startswith(">")
    assert texts and not any("illustrative" in t for drawn in texts.values() for t in drawn)


def test_figures_put_values_on_bars_and_the_legend_outside(tmp_path, results, monkeypatch):
    import matplotlib.pyplot as plt
    from keras_edd.reporting import figures
    captured = {}
    monkeypatch.setattr(figures, "_save_png_and_pdf",
                        lambda fig, *a: captured.setdefault("fig", fig))
    monkeypatch.setattr(plt, "close", lambda fig: None)
    figures.plot_whitebox([e for e in results["evaluations"] if e["setting"] == "whitebox"],
                          str(tmp_path / "w.png"))
    fig = captured.pop("fig")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert all(fig.legends[0].get_window_extent().y1 <= ax.get_tightbbox(renderer).y0
               for ax in fig.axes)
    values = [[t.get_text() for t in ax.texts] for ax in fig.axes]
    # undefended plain: recovered 25 %, detected 0 % (too small to print), misclassified 75 %;
    # extended adaptive: 12.5 %, 50 %, 37.5 %, bottom to top.
    assert values == [["25", "75"], ["12", "50", "38"]]
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)
    figures.plot_sweeps(results["sweeps"], str(tmp_path / "s.png"), 0.95)
    fig = captured.pop("fig")
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "success = 1 - recovered" in labels and "detected (outlier class)" in labels
    assert any(label.startswith("masking threshold (95 %)") for label in labels)
    assert fig.axes[0].get_ylabel() and fig.axes[0].get_xlabel().startswith("eps")
    assert any("95 % threshold" in t.get_text() for t in fig.axes[0].texts)
    # The legend is below every axes and their tick labels.
    fig.canvas.draw()
    legend_box = fig.legends[0].get_window_extent()
    renderer = fig.canvas.get_renderer()
    assert all(legend_box.y1 <= ax.get_tightbbox(renderer).y0 for ax in fig.axes)
    figures.plot_blackbox([e for e in results["evaluations"] if e["setting"] == "blackbox"],
                          str(tmp_path / "b.png"))
    fig = captured.pop("fig")
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    # A row per target, a column per surrogate (J_<target> share the column "J").
    assert titles == ["target extended, surrogate U",
                      "target undefended, surrogate J_undefended"]
    assert len(fig.axes) == 4 and len(fig.legends) == 1


def _grid(k=4, clean_predictions=None, adversarial_predictions=None):
    labels = np.arange(k) % 10
    return {"clean": np.zeros((k, 28, 28, 1)), "adversarial": np.ones((k, 28, 28, 1)),
            "labels": labels, "model": "extended", "outlier_class": 10,
            "clean_predictions": labels if clean_predictions is None else clean_predictions,
            "adversarial_predictions": (labels if adversarial_predictions is None
                                        else adversarial_predictions)}


def _accumulator(path):
    from tensorboard.backend.event_processing import event_accumulator
    accumulator = event_accumulator.EventAccumulator(
        str(path), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def _scalar(event):
    return float(np.asarray(event.tensor_proto.float_val or
                            np.frombuffer(event.tensor_proto.tensor_content, np.float32))[0])


def test_tensorboard_groups_rates_by_target_and_draws_sweeps_as_curves(tmp_path, results):
    images = {"extended/fgsm_adaptive": _grid(adversarial_predictions=np.array([10, 3, 2, 3]))}
    results["sweeps"].append({
        "target": "undefended", "attack": "cw", "variant": "plain", "parameter": "kappa",
        "num_examples": 10, "max_success": 1.0, "masking_suspected": False,
        "points": [{"value": v, "filtered": _rates(8, r, 0.0), "unfiltered": _rates(10, r, 0.0),
                    "success": 1 - r} for v, r in ((0, 0.5), (10, 0.25), (40, 0.0))]})
    tensorboard.write_evaluation(str(tmp_path), results, images, report_text="# the report")
    accumulator = _accumulator(tmp_path)
    tags = accumulator.Tags()["tensors"]
    models = set(results["models"])
    # Every number sits under the model it was measured on; images and the report apart.
    assert {t.split("/")[0] for t in tags} == models | {"images", "report"}
    assert {t for t in tags if t.startswith("extended/")} == {
        "extended/clean/accuracy", "extended/clean/detected",
        "extended/checks/zero_gradient_fraction",
        *(f"extended/whitebox/fgsm-adaptive/{key}" for key in
          ("recovered", "detected", "misclassified")),
        *(f"extended/whitebox_sweep_eps/fgsm-plain/{key}" for key in
          ("eps", "success", "detected", "misclassified"))}
    # The black-box entry of extended has no input left after the filter: no scalar.
    assert _scalar(accumulator.Tensors(
        "undefended/blackbox_from_J_undefended/fgsm-plain/recovered")[0]) == 0.5
    assert _scalar(accumulator.Tensors("extended/whitebox/fgsm-adaptive/detected")[0]) == 0.5
    # A sweep is a curve: step i is its i-th budget, whose value is a scalar of its own.
    for tag, budgets, success in (
            ("extended/whitebox_sweep_eps/fgsm-plain", [0.1, 0.5], [0.5, 0.875]),
            ("undefended/whitebox_sweep_kappa/cw-plain", [0, 10, 40], [0.5, 0.75, 1.0])):
        parameter = tag.split("_")[-1].split("/")[0]
        for name, expected in ((parameter, budgets), ("success", success)):
            events = accumulator.Tensors(f"{tag}/{name}")
            assert [e.step for e in events] == list(range(len(expected))), (tag, name)
            np.testing.assert_allclose([_scalar(e) for e in events], expected, rtol=1e-6)
        description = accumulator.SummaryMetadata(f"{tag}/success").summary_description
        assert "step = index of the budget value" in description
        assert ", ".join(f"{i}: {v:g}" for i, v in enumerate(budgets)) in description
    one_point = [t for t in tags if t != "report" and not t.startswith("images/")
                 and len(accumulator.Tensors(t)) == 1]
    assert not any("sweep" in t for t in one_point)
    image = accumulator.Tensors("images/extended/fgsm_adaptive")[0]
    assert accumulator.SummaryMetadata("images/extended/fgsm_adaptive").summary_description \
        .startswith("top: clean test inputs; bottom: adversarial; captions: extended's predicted")
    assert len(image.tensor_proto.string_val) == 3  # width, height, one PNG
    text = accumulator.Tensors("report")[0].tensor_proto.string_val[0].decode()
    assert text == "# the report"


def test_tensorboard_detection_sits_with_the_target_rates(tmp_path, results):
    roc = {"fpr": [0.0, 0.0, 0.25, 1.0], "tpr": [0.0, 0.5, 1.0, 1.0]}
    results["detection"] = {"entries": [{
        "setting": "blackbox", "target": "extended", "source": "surrogate_D",
        "attack": "pgd", "variant": "adaptive", "count": 4,
        "softmax": {"auroc": 0.75, "roc": roc}, "margin": {"auroc": 0.5, "roc": roc}}]}
    tensorboard.write_evaluation(str(tmp_path), results)
    accumulator = _accumulator(tmp_path)
    tags = accumulator.Tags()["tensors"]
    run = "extended/blackbox_from_surrogate_D/pgd-adaptive"
    assert {f"{run}/detection_softmax/pr_curves", f"{run}/detection_margin/pr_curves"} <= set(tags)
    assert _scalar(accumulator.Tensors(f"{run}/auroc_softmax")[0]) == 0.75
    assert _scalar(accumulator.Tensors(f"{run}/auroc_margin")[0]) == 0.5


def test_write_report_writes_tensorboard_beside_the_results(paper_run):
    tmp_path, _, _ = paper_run
    accumulator = _accumulator(tmp_path / "logs" / "evaluation")
    assert "extended/whitebox/fgsm-adaptive/misclassified" in accumulator.Tags()["tensors"]
    assert "report" in accumulator.Tags()["tensors"]
    assert ("extended/whitebox/fgsm-plain/detection_softmax/pr_curves"
            in accumulator.Tags()["tensors"])


def test_labelled_grid_captions_colour_the_predictions():
    def red_pixels(grid):
        pixels = tensorboard.labelled_grid(grid)[0].astype(int)
        return np.sum((pixels[..., 0] > 150) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100))

    def blue_pixels(grid):
        pixels = tensorboard.labelled_grid(grid)[0].astype(int)
        return np.sum((pixels[..., 2] > 150) & (pixels[..., 0] < 100))

    correct = _grid()
    pixels = tensorboard.labelled_grid(correct)
    assert pixels.dtype == np.uint8 and pixels.ndim == 4 and pixels.shape[-1] == 3
    assert red_pixels(correct) == 0 and blue_pixels(correct) == 0
    assert red_pixels(_grid(adversarial_predictions=np.array([5, 1, 2, 3]))) > 20
    assert blue_pixels(_grid(adversarial_predictions=np.array([10, 1, 2, 3]))) > 20
    assert tensorboard.prediction_text(10, 10) == "pred 10 (outlier)"
    assert tensorboard.prediction_text(np.int64(3), 10) == "pred 3"


def test_write_hparams_records_the_settings_and_final_metrics(tmp_path):
    tensorboard.write_hparams(str(tmp_path), {"alpha": 0.9, "defense": "extended", "epochs": 4},
                            {"final/clean_accuracy": 0.75, "final/clean_detected": None},
                            step=4)
    hparams, scalars = event_hparams(tmp_path)
    assert hparams == {"alpha": 0.9, "defense": "extended", "epochs": 4.0}
    assert scalars == {"final/clean_accuracy": (4, 0.75)}


def test_image_grid_puts_clean_above_adversarial():
    clean = np.zeros((3, 4, 5, 1))
    adversarial = np.full((3, 4, 5, 1), 2.0)  # clipped to 1
    grid = tensorboard.image_grid(clean, adversarial)
    assert grid.shape == (1, 8, 15, 1)
    assert grid[0, :4].max() == 0.0 and grid[0, 4:].min() == 1.0


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("old")

    def fail(f):
        f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.atomic_write(str(path), fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.csv"]


def test_pr_curve_data_from_roc_points():
    # 4 adversarial, 4 clean: (fpr, tpr) corners (0, 0) -> (0, 0.5) -> (0.25, 1) -> (1, 1).
    roc = {"fpr": [0.0, 0.0, 0.25, 1.0], "tpr": [0.0, 0.5, 1.0, 1.0]}
    data = tensorboard.pr_curve_data(roc, 4, 4)
    # Increasing threshold: recall decreasing, as the pr_curve plugin expects.
    np.testing.assert_allclose(data["recall"], [1.0, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(data["true_positive_counts"], [4, 4, 2, 0])
    np.testing.assert_allclose(data["false_positive_counts"], [4, 1, 0, 0])
    np.testing.assert_allclose(data["precision"], [0.5, 0.8, 1.0, 1.0])
    np.testing.assert_allclose(data["true_negative_counts"], [0, 3, 4, 4])


def test_csv_intervals_come_from_each_rows_count_and_rate(paper_run):
    tmp_path, _, _ = paper_run
    rows = results_files.read_csv(tmp_path / "results.csv")
    checked = 0
    for row in rows:
        for rate in ("recovered", "detected", "misclassified"):
            if row[rate] == "":
                assert row[f"{rate}_low"] == row[f"{rate}_high"] == ""
                continue
            n, k = int(row["count"]), float(row[rate]) * int(row["count"])
            if abs(k - round(k)) < 1e-9:  # hand-made rates that are a fraction k / n
                assert (float(row[f"{rate}_low"]), float(row[f"{rate}_high"])) == \
                    pytest.approx(stats.wilson_interval(round(k), n), abs=1e-12)
                checked += 1
    assert checked > 30
    adaptive = next(r for r in rows if r["variant"] == "adaptive" and r["subset"] == "filtered")
    # 1 of 8 recovered: the interval of 1/8 (Wilson), not of a rounded percentage.
    np.testing.assert_allclose([float(adaptive["recovered_low"]),
                                float(adaptive["recovered_high"])], [0.0224, 0.4709], atol=1e-4)


def _worst_row(target, misclassified_of_8):
    rates = {"count": 8, "recovered": (8 - misclassified_of_8) / 8, "detected": 0.0,
             "misclassified": misclassified_of_8 / 8}
    return {"setting": "whitebox", "target": target, "source": target, "attack": "any",
            "variant": "any", "attacks": ["fgsm (plain)"], "attacks_per_input": {"min": 1,
                                                                                 "max": 1},
            "num_examples": 10, "filtered": rates, "unfiltered": {**rates, "count": 10},
            "all_attacks": {"num_examples": 10, "filtered": rates, "unfiltered": rates}}


@pytest.mark.parametrize("misclassified, judgement", [
    (8, "the defense does not hold"),      # 8 of 8: interval [67.6, 100] above one half
    (6, "the defense holds only in part"),  # 6 of 8: interval [40.9, 92.9]
    (0, "the defense holds only in part")])  # 0 of 8 is [0, 32.4]: too few to say it holds
def test_report_opens_with_a_short_summary_and_a_computed_verdict(results, misclassified,
                                                                   judgement):
    # report.md's text as write_report renders it (markdown_report), without drawing.
    results["worst_case"] = [_worst_row("undefended", 8), _worst_row("extended", misclassified)]
    report = markdown.markdown_report(as_results(results))
    assert "{'" not in report and "{\"" not in report  # no raw Python dicts
    lines = report.splitlines()
    assert lines[0].startswith("# keras_edd evaluation") and lines[2] == "## Summary"
    summary = lines[2:lines.index("## Setting")]
    assert len(summary) <= 40
    text = "\n".join(summary)
    # Headline: the extended target's adaptive FGSM, 1 of 8 recovered, 4 of 8 detected.
    assert "| extended | adaptive |  | 12.5 / 50.0 / 37.5 [13.7, 69.4] (n=8) |" in text
    assert "| undefended | plain | 90.0 [59.6, 98.2] (n=10) |" in text
    assert "Warnings: 1 of possible gradient masking, 0 other" in text
    verdict = next(line for line in summary if line.startswith("**Verdict:**"))
    assert f"defended model extended misclassifies {100 * misclassified / 8:.1f} %" in verdict
    assert judgement in verdict
