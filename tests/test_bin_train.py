"""bin/train end to end: flag validation (nothing written) and a smoke run."""

import json
import os

import pytest

from conftest import REPO, run_binary, write_idx_folder

TRAIN = os.path.join(REPO, "bin", "train")


def run(*args, cwd=None):
    return run_binary("train", *args, cwd=cwd, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("args,fragment", [
    (["--epochs=0"], "epochs=0"),
    (["--batch_size=-5"], "batch_size=-5"),
    (["--optimizer=sgd"], "optimizer='sgd'"),
    (["--learning_rate=-0.1"], "learning_rate=-0.1"),
    (["--dataset=svhn"], "dataset='svhn'"),
    (["--train_limit=0"], "train_limit=0"),
    (["--run_name=../escape"], "run_name='../escape'"),
    (["--seed=-1"], "seed=-1"),
    (["--precision=float16"], "precision='float16'"),
    (["extra"], "unexpected arguments"),
])
def test_bad_flags_one_line_error_nothing_written(tmp_path, args, fragment):
    result = run(f"--output_dir={tmp_path / 'out'}", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_bad_data_dir_names_it(tmp_path):
    result = run(f"--output_dir={tmp_path / 'out'}", f"--data_dir={tmp_path / 'missing'}")
    assert result.returncode == 2
    assert "missing" in result.stderr and "not a directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_smoke_run_writes_everything_and_reruns_safely(tmp_path):
    data_dir = str(tmp_path / "idx")
    write_idx_folder(data_dir, n_train=64, n_test=20)
    out = tmp_path / "out"
    # Progress on (the default), output piped: one line per epoch, no progress-bar frames,
    # and none of TensorFlow's start-up notices.
    args = [f"--data_dir={data_dir}", f"--output_dir={out}", "--defense=none", "--epochs=2",
            "--batch_size=32"]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if "epoch" in line][:2] == [
        line for line in result.stdout.splitlines() if line.startswith("model epoch ")]
    for noise in ("oneDNN", "absl::InitializeLog", "rebuild TensorFlow"):
        assert noise not in result.stderr, result.stderr
    run_dir = out / "mnist-none-e2-s0"
    for name in ("flags.json", "results.json", "model.keras", "checkpoints", "logs"):
        assert (run_dir / name).exists(), name
    results = json.loads((run_dir / "results.json").read_text())
    assert results["dataset"]["train_size"] == 64 and results["dataset"]["test_size"] == 20
    history = results["models"]["model"]["history"]
    assert history["epoch"] == [1, 2]
    assert results["clean_test_accuracy"] == history["eval/accuracy"][-1]
    assert set(results["versions"]) >= {"tensorflow", "keras", "python"}
    assert json.loads((run_dir / "flags.json").read_text())["train"]["epochs"] == 2
    # The same command again: finished, untouched.
    mtime = os.path.getmtime(run_dir / "model.keras")
    assert run(*args).returncode == 0
    assert os.path.getmtime(run_dir / "model.keras") == mtime
    # Other settings under the same name are refused, nothing overwritten.
    clash = run(*[a for a in args if a != "--epochs=2"], "--epochs=3",
                "--run_name=mnist-none-e2-s0")
    assert clash.returncode == 2 and "other settings (train.epochs)" in clash.stderr
    assert os.path.getmtime(run_dir / "model.keras") == mtime
