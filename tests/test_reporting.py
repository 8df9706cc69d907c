"""results.csv / PNG / TensorBoard / report.md from a hand-made results dict."""

import glob
import os

import numpy as np
import pytest

from keras_edd import reporting, runs


def _rates(count, recovered, detected):
    return {"count": count, "recovered": recovered, "detected": detected,
            "misclassified": None if recovered is None else 1.0 - recovered - detected}


def _entry(setting, target, source, attack, variant, filtered, unfiltered, value=0.2):
    return {"setting": setting, "target": target, "source": source, "attack": attack,
            "variant": variant, "params": {"eps": value}, "parameter": "eps", "value": value,
            "num_examples": 10, "filtered": filtered, "unfiltered": unfiltered,
            "success": None if filtered["recovered"] is None else 1 - filtered["recovered"],
            "norms": {"mean_l2": 1.5}, "attack_seconds": 0.25}


def _clean(accuracy, detected):
    return {"count": 10, "accuracy": accuracy, "detected": detected,
            "misclassified": 1 - accuracy - detected}


@pytest.fixture
def results():
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
               _rates(8, 0.125, 0.5), _rates(10, 0.2, 0.4)),
        _entry("blackbox", "extended", "U", "fgsm", "plain",
               _rates(0, None, None), _rates(10, 0.5, 0.1)),
    ]
    sweeps = [{"target": "extended", "attack": "fgsm", "variant": "plain", "parameter": "eps",
               "num_examples": 10, "max_success": 0.875, "masking_suspected": True,
               "points": [{"value": v, "filtered": _rates(8, r, 0.25),
                           "unfiltered": _rates(10, r, 0.2), "success": 1 - r}
                          for v, r in ((0.1, 0.5), (0.5, 0.125))]}]
    return {"kind": "test", "dataset": {"name": "toy", "num_classes": 10}, "models": models,
            "evaluations": evaluations, "sweeps": sweeps, "filter": "FILTER TEXT",
            "warnings": ["extended: fgsm looks masked"], "num_examples": {"fgsm": 10},
            "evaluation_settings": {"masking_threshold": 0.95}, "wall_seconds": 1.0,
            "stage_seconds": {"whitebox": {"seconds_here": 0.5, "seconds_total": 0.75}},
            "crafts": {"computed": 1, "loaded": 1}, "versions": {"numpy": np.__version__}}


def _is_png(path):
    import matplotlib.image
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    return image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def test_write_report_files_and_csv_matches_json(tmp_path, results):
    images = {"extended/fgsm_adaptive": (np.zeros((3, 28, 28, 1)), np.ones((3, 28, 28, 1)))}
    reporting.write_report(str(tmp_path), results, images)
    for name in ("results.json", "results.csv", "report.md", "whitebox.png", "blackbox.png",
                 "sweeps.png"):
        assert (tmp_path / name).is_file(), name
    assert not glob.glob(str(tmp_path / ".tmp-*"))
    for png in ("whitebox.png", "blackbox.png", "sweeps.png"):
        assert _is_png(tmp_path / png)
    stored = runs.read_json(tmp_path / "results.json")
    assert stored["files"][:2] == ["results.json", "results.csv"]
    rows = reporting.read_csv(tmp_path / "results.csv")
    # 2 models x 2 clean subsets + 3 entries x 2 subsets + 2 sweep points x 2 subsets
    assert len(rows) == 4 + 6 + 4
    # results.json is written with sorted keys, so compare the rows as sorted lists.
    def text(value):
        if value is None:
            return ""
        return repr(value) if isinstance(value, float) else str(value)

    from_csv = sorted(tuple(row[k] for k in reporting.CSV_COLUMNS) for row in rows)
    from_json = sorted(tuple(text(row[k]) for k in reporting.CSV_COLUMNS)
                       for row in reporting.result_rows(stored))
    assert from_csv == from_json
    extended = [r for r in rows if r["kind"] == "attack" and r["target"] == "extended"
                and r["variant"] == "adaptive" and r["subset"] == "filtered"]
    assert len(extended) == 1 and float(extended[0]["detected"]) == 0.5
    report = (tmp_path / "report.md").read_text()
    assert "FILTER TEXT" in report and "possible masking" in report
    assert "| extended | extended | fgsm | adaptive |" in report
    assert "12.5 %" in report  # recovered of the adaptive white-box attack


def test_tensorboard_has_scalars_and_image_grid(tmp_path, results):
    from tensorboard.backend.event_processing import event_accumulator
    images = {"extended/fgsm_adaptive": (np.zeros((4, 28, 28, 1)), np.ones((4, 28, 28, 1)))}
    reporting.write_tensorboard(str(tmp_path), results, images)
    accumulator = event_accumulator.EventAccumulator(
        str(tmp_path), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    tags = accumulator.Tags()["tensors"]
    assert "whitebox/extended/fgsm_adaptive/detected" in tags
    assert "clean/extended/detected" in tags
    assert "images/extended/fgsm_adaptive" in tags
    detected = accumulator.Tensors("whitebox/extended/fgsm_adaptive/detected")[0]
    assert float(np.asarray(detected.tensor_proto.float_val or
                            np.frombuffer(detected.tensor_proto.tensor_content, np.float32))[0]) \
        == pytest.approx(0.5)
    sweep_steps = [e.step for e in accumulator.Tensors("sweep/extended/fgsm_plain/success")]
    assert sweep_steps == [100, 500]  # eps x 1000


def test_image_grid_puts_clean_above_adversarial():
    clean = np.zeros((3, 4, 5, 1))
    adversarial = np.full((3, 4, 5, 1), 2.0)  # clipped to 1
    grid = reporting.image_grid(clean, adversarial)
    assert grid.shape == (1, 8, 15, 1)
    assert grid[0, :4].max() == 0.0 and grid[0, 4:].min() == 1.0


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("old")

    def fail(f):
        f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        runs.atomic_write(str(path), fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.csv"]


def test_pr_curve_data_from_roc_points():
    # 4 adversarial, 4 clean: (fpr, tpr) corners (0, 0) -> (0, 0.5) -> (0.25, 1) -> (1, 1).
    roc = {"fpr": [0.0, 0.0, 0.25, 1.0], "tpr": [0.0, 0.5, 1.0, 1.0]}
    data = reporting.pr_curve_data(roc, 4, 4)
    # Increasing threshold: recall decreasing, as the pr_curve plugin expects.
    np.testing.assert_allclose(data["recall"], [1.0, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(data["true_positive_counts"], [4, 4, 2, 0])
    np.testing.assert_allclose(data["false_positive_counts"], [4, 1, 0, 0])
    np.testing.assert_allclose(data["precision"], [0.5, 0.8, 1.0, 1.0])
    np.testing.assert_allclose(data["true_negative_counts"], [0, 3, 4, 4])
