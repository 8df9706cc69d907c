"""benchmarks/autoattack_parity.py: the torch port (only where torch is installed),
the chunked resume and the flags (no torch needed)."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

SCRIPT = os.path.join(REPO, "benchmarks", "autoattack_parity.py")


@pytest.fixture(scope="module")
def parity():
    """The script as a module, loaded once (it defines absl flags on import)."""
    name = "autoattack_parity_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


@pytest.mark.parametrize("num_classes, input_shape", [(10, (28, 28, 1)), (11, (28, 28, 1)),
                                                      (10, (35, 35, 3))])
def test_torch_port_reproduces_the_logits(parity, num_classes, input_shape):
    """(35, 35, 3): odd size, so 'same' pads 3 before and 4 after, and conv3 is 3x3, so
    the Flatten order matters."""
    pytest.importorskip("torch")
    import keras

    from keras_edd import models
    keras.utils.set_random_seed(1)
    model = models.cleverhans_cnn(num_classes, input_shape)
    x = np.random.default_rng(0).uniform(0, 1, (16,) + input_shape).astype(np.float32)
    torch_model = parity.port_to_torch(model)
    assert parity.port_error(model, torch_model, x) <= 1e-4
    checked, error = parity.checked_port(model, x, 1e-4)
    assert error <= 1e-4 and not checked.training


def test_torch_port_mismatch_is_refused(parity):
    pytest.importorskip("torch")
    import keras

    from keras_edd import models
    keras.utils.set_random_seed(2)
    model = models.cleverhans_cnn(10)
    x = np.random.default_rng(1).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    torch_model = parity.port_to_torch(model)
    with __import__("torch").no_grad():
        torch_model.logits.bias.add_(1e-2)
    assert parity.port_error(model, torch_model, x) > 1e-3
    with pytest.raises(parity.PortError, match="exceeds"):
        parity.checked_port(models.cleverhans_cnn(10, name="other"), x, -1.0)


def test_reference_chunk_runs_and_resumes(parity, tmp_path):
    """pyautoattack's standard evaluation on 3 digits with a tiny budget; a call on a
    finished chunk folder runs nothing, on a cut-off one only the attacks left."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("pyautoattack")
    import keras

    from keras_edd import models
    keras.utils.set_random_seed(3)
    torch_model = parity.port_to_torch(models.cleverhans_cnn(10))
    x = np.random.default_rng(2).uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    with torch.no_grad():
        y = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).argmax(1).numpy()
    messages = []
    run_chunk = parity.make_reference_chunk(torch_model, norm="linf", eps=1e-3, seed=0,
                                            batch_size=3, n_iter=3, square_queries=3,
                                            log=messages.append)
    first = run_chunk(x, y, str(tmp_path))
    assert first["clean_count"] == 3 and not first["resumed"]
    counts = list(first["cumulative_robust_count"].values())
    assert counts == sorted(counts, reverse=True) and counts[-1] == first["robust_count"]
    assert len(messages) == 4 and set(first["attack_seconds"]) == set(parity.ATTACKS)
    messages.clear()
    second = run_chunk(x, y, str(tmp_path))  # everything done: nothing runs
    assert second["resumed"] and not messages and second["package_runs"] == 1
    assert second["robust"] == first["robust"]
    assert second["cumulative_robust_count"] == first["cumulative_robust_count"]
    # Cut off after APGD-T: the rerun runs FAB-T and Square only.
    progress_path = tmp_path / "progress.json"
    progress = json.loads(progress_path.read_text())
    for name in ("fab-t", "square"):
        del progress["attacks"][name]
    progress_path.write_text(json.dumps(progress))
    third = run_chunk(x, y, str(tmp_path))
    assert third["resumed"] and third["package_runs"] == 2
    assert [m.split(":")[0].split()[-1] for m in messages] == ["fab-t", "square"]
    assert set(third["attack_seconds"]) == set(parity.ATTACKS)


def test_tf_same_padding_puts_the_extra_pixel_after(parity):
    assert parity.tf_same_padding(28, 8, 2) == (3, 3)
    assert parity.tf_same_padding(35, 8, 2) == (3, 4)
    assert parity.tf_same_padding(28, 5, 1) == (2, 2)
    assert parity.tf_same_padding(8, 2, 2) == (0, 0)


def test_chunks_are_saved_and_reused(parity, tmp_path):
    x = np.arange(50, dtype=np.float32).reshape(5, 10)
    y = np.arange(5)
    calls = []

    def run_chunk(xc, yc, folder):
        calls.append(len(xc))
        assert os.path.isdir(folder)
        robust = [bool(v % 2) for v in yc]
        return {"robust": robust, "robust_count": sum(robust), "clean_count": len(yc),
                "cumulative_robust_count": parity.fill_cumulative({"apgd-ce": len(yc)},
                                                                  sum(robust)),
                "attack_seconds": dict.fromkeys(parity.ATTACKS, 0.25), "seconds": 1.0}

    kwargs = dict(folder=str(tmp_path), chunk_size=2, settings={"eps": 0.1}, log=lambda m: 0)
    first = parity.run_chunks("reference", run_chunk, x, y, max_chunks=2, **kwargs)
    assert calls == [2, 2] and first[2] is None
    assert parity.merge_chunks(first, 5) is None
    summary = parity.chunk_summary(first)
    assert summary["done"] == 2 and summary["total"] == 3
    assert summary["partial"]["digits"] == 4 and summary["partial"]["robust_accuracy"] == 0.5
    second = parity.run_chunks("reference", run_chunk, x, y, **kwargs)
    assert calls == [2, 2, 1] and [r["reused"] for r in second] == [True, True, False]
    merged = parity.merge_chunks(second, 5)
    assert merged["robust"] == [False, True, False, True, False]
    assert merged["robust_accuracy_by_attack"] == {"apgd-ce": 1.0, "apgd-t": 1.0,
                                                   "fab-t": 1.0, "square": 1.0}
    assert merged["seconds"] == 3.0 and merged["chunks_reused"] == 2
    assert merged["attack_seconds"] == dict.fromkeys(parity.ATTACKS, 0.75)
    # A chunk without per-attack seconds (made before they were kept): none summed.
    del second[0]["attack_seconds"]
    assert parity.merge_chunks(second, 5)["attack_seconds"] == {}
    # Other settings: nothing reused.
    parity.run_chunks("reference", run_chunk, x, y, **dict(kwargs, settings={"eps": 0.2}))
    assert calls[3:] == [2, 2, 1]


def test_compare_judges_the_targets(parity):
    def side(robust, after_ce, seconds):
        n = len(robust)
        return {"digits": n, "clean_accuracy": 1.0, "robust_accuracy": sum(robust) / n,
                "robust_accuracy_by_attack": {"apgd-ce": after_ce, "apgd-t": sum(robust) / n,
                                              "fab-t": sum(robust) / n,
                                              "square": sum(robust) / n},
                "robust": robust, "seconds": seconds}

    ours = side([True] * 10 + [False] * 190, 0.2, 10.0)
    ref = side([True] * 9 + [False, True] + [False] * 189, 0.2, 30.0)
    row = parity.compare("undefended:linf:0.1", ours, ref, tolerance_points=0.5,
                         standard_budget=True)
    assert row["robust_accuracy_difference_points"] == 0.0
    assert row["disagreements"] == {"robust_only_in_ours": 1, "robust_only_in_reference": 1}
    assert row["speed_up"] == 3.0 and row["targets"]["met"]
    slow = parity.compare("undefended:linf:0.1", side(ours["robust"], 0.2, 20.0), ref,
                          tolerance_points=0.5, standard_budget=True)
    assert slow["targets"]["twice_as_fast"] is False and not slow["targets"]["met"]
    assert not parity.compare("x", ours, ref, tolerance_points=0.5,
                              standard_budget=False)["targets"]["met"]
    without_fab = parity.compare("x", dict(ours, attacks_skipped=["fab_t"]), ref,
                                 tolerance_points=0.5, standard_budget=True)["targets"]
    assert not without_fab["met"] and without_fab["ours_attacks_skipped"] == ["fab_t"]
    assert not parity.compare("x", None, ref, tolerance_points=0.5,
                              standard_budget=True)["targets"]["judged"]


def test_the_table_renders_what_compare_wrote(parity):
    """keras_edd.reporting.parity reads the benchmark's own JSON: per case a row per
    side, cumulative robust accuracy after each attack, the last with its Wilson
    interval, and a verdict line; an unfinished side is shown as such."""
    from keras_edd.reporting.parity import parity_machine, parity_table

    def side(robust_counts, seconds, n=1000):
        by_attack = dict(zip(parity.ATTACKS, (c / n for c in robust_counts)))
        robust = [True] * robust_counts[-1] + [False] * (n - robust_counts[-1])
        return {"digits": n, "clean_accuracy": 0.982, "robust_accuracy": robust_counts[-1] / n,
                "robust_accuracy_by_attack": by_attack, "robust": robust, "seconds": seconds}

    ours, ref = side((900, 860, 858, 840), 1200.0), side((901, 862, 858, 843), 3000.0)
    ours["attack_seconds"] = dict(zip(parity.ATTACKS, (40.0, 300.0, 400.0, 460.0)))
    ref["attack_seconds"] = dict(zip(parity.ATTACKS, (41.0, 700.0, 1259.4, 999.6)))
    case = {"model": "paper:adversarial", "norm": "linf", "eps": 0.3,
            **parity.compare("adversarial:linf:0.3", ours, ref, tolerance_points=0.5,
                             standard_budget=True)}
    half = {"model": "paper:undefended", "norm": "l2", "eps": 1.5,
            **parity.compare("undefended:l2:1.5", None, ref, tolerance_points=0.5,
                             standard_budget=True)}
    text = parity_table({"cases": {"a": case, "b": half}})
    assert ("| paper:adversarial L∞ ε = 0.3 | keras_edd | 98.2 | 90.0 | 86.0 | 85.8 | "
            "**84.0** [81.6, 86.1] | 1,200 |") in text
    assert "| paper:adversarial L∞ ε = 0.3 | reference | 98.2 | 90.1 | 86.2 | 85.8 |" in text
    assert ("- paper:adversarial L∞ ε = 0.3: robust accuracy -0.3 points (within ±0.5); "
            "time ratio reference / ours 2.50×: target met; robust in keras_edd only 0, "
            "in the reference only 3 of 1000 digits; seconds per attack, keras_edd / "
            "reference: APGD-CE 40 / 41, APGD-T 300 / 700, FAB-T 400 / 1,259, "
            "Square 460 / 1,000.") in text
    assert "| paper:undefended L2 ε = 1.5 | keras_edd | not finished |" in text
    assert "- paper:undefended L2 ε = 1.5: not judged: a side did not finish." in text
    machine = {"cores": 2, "cpu_model": "Some CPU", "avx_flags": ["avx2", "avx512f"],
               "load_average": [2.1, 2.0, 1.9], "load_average_end": [2.3, 2.2, 2.0]}
    assert parity_machine({"machine": machine}) == (
        "2-core Some CPU (AVX-512), 1-minute load 2.1 at the start and 2.3 at the end")


def test_our_side_reports_a_missing_evaluate(parity):
    import keras_edd
    if hasattr(keras_edd, "evaluate"):
        pytest.skip("keras_edd.evaluate exists")
    with pytest.raises(parity.SideUnavailable, match="keras_edd.evaluate is not available"):
        parity.make_our_chunk(None, norm="linf", eps=0.1, seed=0, batch_size=10)


def test_our_side_reads_the_evaluate_result(parity, monkeypatch):
    """Rates with k (keras_edd's) or plain floats; names apgd_ce or APGD-CE."""
    import types

    import keras_edd

    class Rate:
        def __init__(self, k):
            self.k = k

    def fake_evaluate(model, x, y, *, eps, norm, attacks, outlier_class, batch_size, seed,
                      progress):
        assert attacks == "standard" and outlier_class is None and not progress
        return types.SimpleNamespace(
            clean_accuracy=Rate(4), robust=np.array([True, False, False, True, False]),
            robust_accuracy_by_attack={"apgd_ce": Rate(3), "APGD-T": 0.4, "square": Rate(2)},
            attacks_skipped=(("fab_t", "not installed"),))

    monkeypatch.setattr(keras_edd, "evaluate", fake_evaluate, raising=False)
    run_chunk = parity.make_our_chunk(None, norm="linf", eps=0.1, seed=0, batch_size=5)
    result = run_chunk(np.zeros((5, 28, 28, 1), np.float32), np.zeros(5, np.int64), None)
    assert result["clean_count"] == 4 and result["robust_count"] == 2
    assert result["attacks_skipped"] == ["fab_t"]
    assert result["cumulative_robust_count"] == {"apgd-ce": 3, "apgd-t": 2, "fab-t": 2,
                                                 "square": 2}


def test_help_and_flag_errors():
    env = dict(os.environ, PYTHONPATH=REPO)
    shown = subprocess.run([sys.executable, SCRIPT, "--helpshort"], capture_output=True,
                           text=True, env=env, timeout=120)
    # absl exits 1 after printing the help; what counts is that the flags are listed.
    assert "--cases" in shown.stdout and "--work_dir" in shown.stdout
    bad = subprocess.run([sys.executable, SCRIPT, "--cases=undefended:l1:0.1"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode != 0 and "norm must be linf or l2" in bad.stderr


@pytest.mark.slow
def test_step_cost_times_each_side_on_a_shipped_model(parity):
    """benchmarks/attack_step_cost.py: per side a positive forward and gradient time, the
    TF steps are the model's logits and a non-zero input gradient."""
    sys.modules.setdefault("autoattack_parity", parity)  # the script imports it by name
    spec = importlib.util.spec_from_file_location(
        "attack_step_cost_under_test", os.path.join(REPO, "benchmarks", "attack_step_cost.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from keras_edd import models
    model = models.load_pretrained("paper:undefended")
    x = np.random.default_rng(1).random((3, 28, 28, 1), dtype=np.float32)
    steps = script.tensorflow_steps(model, x, np.array([0, 1, 2], np.int32))
    np.testing.assert_allclose(steps["forward"](), model(x), atol=1e-5)
    gradient = np.asarray(steps["gradient"]())
    assert gradient.shape == x.shape and np.abs(gradient).max() > 0
    out = script.measure("undefended", batch_size=4, steps=1, rounds=1, threads=1)
    sides = out["milliseconds_per_step"]
    expected = {"tensorflow_float32", "tensorflow_mixed_bfloat16"}
    expected |= {"torch_float32"} if importlib.util.find_spec("torch") else set()
    assert set(sides) == expected
    assert all(ms > 0 for side in sides.values() for ms in side.values())
    assert json.loads(json.dumps(out)) == out
