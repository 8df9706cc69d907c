"""The binaries refuse malformed inputs with one `bin/<name>: error: ...` line, exit 2."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, run_binary, write_idx, write_idx_folder
from keras_edd import files
from keras_edd.runs.run_config import BlackboxConfig, RunConfig

TRAIN = os.path.join(REPO, "bin", "train")


def binary(name, *args, prefix=()):
    return run_binary(name, *args, prefix=prefix, timeout=300)


def train(*args):
    return binary("train", *args)


@pytest.mark.slow
def test_corrupt_gzip_body_exits_2_naming_the_file(tmp_path):
    folder = str(tmp_path / "idx")
    write_idx_folder(folder)
    path = write_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"),
                     (np.arange(20 * 28 * 28) % 251).reshape(20, 28, 28))
    with open(path, "r+b") as f:
        f.seek(20)
        f.write(b"\x00" * 41)
    result = train(f"--data_dir={folder}", f"--output_dir={tmp_path / 'out'}", "--epochs=1")
    assert_one_line_error(result, "t10k-images-idx3-ubyte.gz", "corrupt gzip data",
                          program="bin/train")
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_mnist_sample_with_data_dir_exits_2(tmp_path):
    result = train("--dataset=mnist_sample", f"--data_dir={tmp_path / 'missing'}",
                   f"--output_dir={tmp_path / 'out'}", "--epochs=1")
    assert_one_line_error(result, "dataset='mnist_sample'", "missing", "--dataset=mnist",
                          program="bin/train")
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("name", ["run\n", "run\n\n", "\nrun", "run\r", "ru\nn"])
def test_names_with_line_breaks_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="run_name="):
        RunConfig(run_name=name).validate()
    model = tmp_path / "m.keras"
    model.write_bytes(b"")
    with pytest.raises(ValueError, match="surrogate name"):
        BlackboxConfig(target_path=str(model), surrogates=((name, str(model)),)).validate()


@pytest.mark.slow
def test_run_name_ending_in_newline_exits_2_and_creates_nothing(tmp_path):
    result = train("--run_name=run\n", f"--output_dir={tmp_path / 'out'}", "--epochs=1")
    assert_one_line_error(result, "run_name='run\\n'", program="bin/train")
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["train", "eval_whitebox"])
def test_empty_test_set_exits_2_before_writing(tmp_path, logits_model, name):
    folder = str(tmp_path / "idx")
    write_idx_folder(folder, n_train=64, n_test=0)
    args = [f"--data_dir={folder}", f"--output_dir={tmp_path / 'out'}", "--noprogress"]
    if name == "train":
        args += ["--epochs=1", "--teacher_epochs=1", "--batch_size=32"]
    else:
        args += [f"--model={logits_model}", "--attacks=fgsm", "--nosweeps"]
    result = binary(name, *args)
    assert_one_line_error(result, os.path.join(folder, "t10k-images-idx3-ubyte.gz"),
                          "holds no images", program=f"bin/{name}")
    assert not os.path.exists(tmp_path / "out")


# ------------------------------------------------------------ unusable output folders

# Each binary with flags that get it as far as creating its run directory, quickly.
_TINY = {"train": ["--dataset=mnist_sample", "--train_limit=64", "--test_limit=10",
                   "--epochs=1", "--batch_size=32", "--noprogress"],
         "eval_whitebox": ["--dataset=mnist_sample", "--test_limit=10", "--attacks=fgsm",
                           "--num_examples=4", "--check_examples=4", "--nosweeps",
                           "--noprogress"],
         "reproduce": ["--quick", "--train_limit=64", "--test_limit=10", "--epochs=1",
                       "--teacher_epochs=1", "--batch_size=32", "--noprogress"]}


@pytest.fixture(scope="module")
def logits_model(tmp_path_factory):
    """A tiny valid MNIST model returning 10 logits."""
    import keras
    path = str(tmp_path_factory.mktemp("model") / "linear.keras")
    inputs = keras.Input((28, 28, 1))
    files.save_model(keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs))),
                     path)
    return path


def _without_write_permission():
    """Command prefix under which a folder with mode 0555 is not writable, or skip."""
    if os.geteuid() != 0:
        return ()
    prefix = ("setpriv", "--inh-caps=-all", "--bounding-set=-all")
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    except OSError:
        probe = None
    if probe is None or probe.returncode != 0:
        pytest.skip("running as root and cannot drop capabilities with setpriv")
    return prefix


@pytest.mark.slow
@pytest.mark.parametrize("name", ["train", "eval_whitebox", "reproduce"])
@pytest.mark.parametrize("problem", ["file", "long_name", "read_only"])
def test_unusable_output_folder_exits_2_naming_it(tmp_path, logits_model, name, problem):
    args = list(_TINY[name]) + ([f"--model={logits_model}"] if name == "eval_whitebox" else [])
    prefix = ()
    if problem == "file":
        output_dir = tmp_path / "a_file"
        output_dir.write_text("")
        args += [f"--output_dir={output_dir}"]
        fragments = [str(output_dir), "is not a directory"]
    elif problem == "long_name":
        output_dir = tmp_path / "out"
        args += [f"--output_dir={output_dir}", "--run_name=" + "r" * 300]
        fragments = [str(output_dir / "rrrr"), "the file system allows"]
    else:
        prefix = _without_write_permission()
        output_dir = tmp_path / "read_only"
        output_dir.mkdir()
        output_dir.chmod(0o555)
        args += [f"--output_dir={output_dir}"]
        fragments = [str(output_dir), "cannot write in", "ermission denied"]
    result = binary(name, *args, prefix=prefix)
    assert_one_line_error(result, *fragments, program=f"bin/{name}")
    if problem == "read_only":
        assert not os.listdir(output_dir)
        output_dir.chmod(0o755)
    else:
        assert not (tmp_path / "out").exists()


# ------------------------------------------------------------- teacher of probabilities


@pytest.fixture(scope="module")
def probability_teacher(tmp_path_factory):
    """A model with dropout whose last layer is a softmax: probabilities, not logits."""
    import keras
    path = str(tmp_path_factory.mktemp("teacher") / "softmax.keras")
    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Dropout(0.5)(keras.layers.Flatten()(inputs))
    files.save_model(keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden)),
                     path)
    return path


@pytest.mark.slow
def test_probability_teacher_is_refused_unless_allowed(tmp_path, probability_teacher):
    out = tmp_path / "out"
    args = [f"--teacher={probability_teacher}", "--dataset=mnist_sample", "--train_limit=64",
            "--test_limit=10", "--epochs=1", "--batch_size=32", "--mc_passes=2",
            f"--output_dir={out}", "--noprogress"]
    result = train(*args)
    assert_one_line_error(result, probability_teacher, "look like probabilities",
                          "--allow_probability_teacher", program="bin/train")
    assert not out.exists()
    allowed = train(*args, "--allow_probability_teacher")
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: teacher" in allowed.stdout
    (run_dir,) = out.iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["models"]["teacher"]["outputs_probabilities"] is True
    assert any("look like probabilities" in w for w in results["warnings"])


# ------------------------------------------------------------------ absl's flag parsing


@pytest.mark.slow
@pytest.mark.parametrize("name", ["train", "reproduce"])
@pytest.mark.parametrize("arg,fragments", [
    ("--alhpa=0.9", ["'alhpa'", "Did you mean: alpha"]),
    ("--alpha=abc", ["--alpha=abc", "could not convert string to float"]),
    ("--epochs=1.5", ["--epochs=1.5"]),
])
def test_flag_parse_errors_exit_2_in_one_line(tmp_path, name, arg, fragments):
    result = binary(name, arg, f"--output_dir={tmp_path / 'out'}")
    assert_one_line_error(result, *fragments, program=f"bin/{name}")
    assert "FATAL" not in result.stderr
    assert not os.path.exists(tmp_path / "out")


# ----------------------------------------------------------- failed and killed runs


def test_flags_json_alone_does_not_block_a_corrected_rerun(tmp_path):
    from keras_edd.runs import run_dirs
    path, finished = run_dirs.prepare_run_dir(str(tmp_path), "run", {"alpha": 0.5})
    assert not finished and os.listdir(path) == ["flags.json"]
    # The first command failed before writing anything else: other flags take over.
    path, finished = run_dirs.prepare_run_dir(str(tmp_path), "run", {"alpha": 0.9})
    assert not finished and files.read_json(os.path.join(path, "flags.json")) == {"alpha": 0.9}
    # Once the run has written something, other flags are refused.
    os.makedirs(os.path.join(path, "checkpoints"))
    with pytest.raises(run_dirs.RunDirError, match="other settings"):
        run_dirs.prepare_run_dir(str(tmp_path), "run", {"alpha": 0.5})


@pytest.mark.slow
def test_reproduce_with_model_dir_a_file_writes_nothing(tmp_path):
    model_dir = tmp_path / "models"
    model_dir.write_text("")
    out = tmp_path / "out"
    result = binary("reproduce", *_TINY["reproduce"], f"--model_dir={model_dir}",
                    f"--output_dir={out}")
    assert_one_line_error(result, f"model_dir {str(model_dir)!r}", "is not a directory",
                          program="bin/reproduce")
    assert not out.exists()


def _comparable(value):
    """results.json without what legitimately differs between two runs: timings,
    paths, and the epoch a stage resumed from."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()
                if not k.endswith("seconds")
                and k not in ("run_dir", "output_dir", "resumed_from_epoch")}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


@pytest.mark.slow
def test_extended_run_killed_in_distilled_stage_resumes_to_the_same_results(tmp_path):
    args = ["--dataset=mnist_sample", "--train_limit=256", "--test_limit=50", "--epochs=8",
            "--teacher_epochs=2", "--mc_passes=2", "--batch_size=64", "--noprogress"]
    run_name = "mnist_sample-extended-a0.9-T4-e8-s0"
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, TRAIN, *args, f"--output_dir={killed}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / run_name / "checkpoints" / "distilled" / "checkpoint"
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (killed / run_name / "results.json").exists()
    resumed = train(*args, f"--output_dir={killed}")
    assert resumed.returncode == 0, resumed.stderr
    whole = train(*args, f"--output_dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr
    after_kill = json.loads((killed / run_name / "results.json").read_text())
    uninterrupted = json.loads((tmp_path / "whole" / run_name / "results.json").read_text())
    assert after_kill["models"]["distilled"]["history"]["resumed_from_epoch"] > 0
    assert after_kill["models"]["teacher"]["history"]["epoch"] == [1, 2]
    assert _comparable(after_kill) == _comparable(uninterrupted)
    # TensorBoard: no step logged twice (the sigma histograms were, after every resume)
    import glob

    import tensorflow as tf
    for folder in ("teacher", "labeling", "distilled"):
        steps = [(value.tag, event.step)
                 for path in glob.glob(str(killed / run_name / "logs" / folder / "events.*"))
                 for event in tf.compat.v1.train.summary_iterator(path)
                 for value in event.summary.value]
        assert steps and len(steps) == len(set(steps)), (folder, sorted(steps))


# ------------------------------------------------------------- things in a run's way


@pytest.mark.parametrize("name,kind,fragment", [
    ("checkpoints", "file", "'checkpoints' is a file where the run keeps a folder"),
    ("logs", "file", "'logs' is a file where the run keeps a folder"),
    ("results.json", "folder", "'results.json' is a folder where the run writes a file"),
    ("model.keras", "folder", "'model.keras' is a folder where the run writes a file"),
])
def test_a_file_or_folder_in_the_way_is_refused_before_anything_runs(tmp_path, name, kind,
                                                                      fragment):
    """They surfaced as NotADirectoryError / FailedPreconditionError tracebacks, or as
    IsADirectoryError once training had finished."""
    from keras_edd.runs import run_dirs
    path = tmp_path / "run"
    path.mkdir()
    (path / name).mkdir() if kind == "folder" else (path / name).write_text("mine")
    with pytest.raises(run_dirs.RunDirError) as raised:
        run_dirs.prepare_run_dir(str(tmp_path), "run", {"alpha": 0.5})
    assert str(raised.value) == f"run directory {str(path)!r}: {fragment}; move it away"
    assert sorted(os.listdir(path)) == [name]


@pytest.mark.slow
def test_train_with_checkpoints_a_file_exits_2_writing_nothing(tmp_path):
    run = tmp_path / "out" / "run"
    run.mkdir(parents=True)
    (run / "checkpoints").write_text("mine")
    result = train("--dataset=mnist_sample", "--train_limit=64", "--test_limit=20",
                   "--epochs=1", "--defense=none", "--batch_size=32", "--run_name=run",
                   f"--output_dir={tmp_path / 'out'}", "--noprogress")
    assert_one_line_error(result, str(run), "'checkpoints' is a file")
    assert sorted(os.listdir(run)) == ["checkpoints"]


@pytest.mark.slow
def test_l2_eps_past_the_box_diameter_exits_2_before_writing(tmp_path, logits_model):
    result = binary("eval_whitebox", f"--model={logits_model}", "--dataset=mnist_sample",
                    "--attacks=apgd_ce", "--apgd_ce_norm=l2", "--apgd_ce_eps=30",
                    f"--output_dir={tmp_path / 'out'}", "--noprogress")
    assert_one_line_error(result, "apgd_ce_eps=30.0: allowed range for norm='l2' is [0, 28], "
                          "the diameter of the input box", program="bin/eval_whitebox")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------ concurrent runs and leftovers


def test_a_run_directory_is_locked_by_the_process_working_in_it(tmp_path):
    """Two runs with the same run directory started together both trained and crafted
    everything. The second is refused, naming the holder; kill -9 releases the lock."""
    from keras_edd.runs import run_dirs
    script = ("import sys, time\nfrom keras_edd.runs import run_dirs\n"
              f"run_dirs.prepare_run_dir({str(tmp_path)!r}, 'run', {{'alpha': 0.5}})\n"
              "print('holding', flush=True)\ntime.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "holding\n"
        with pytest.raises(run_dirs.RunDirError) as raised:
            run_dirs.prepare_run_dir(str(tmp_path), "run", {"alpha": 0.5})
        assert str(raised.value).startswith(
            f"run directory {str(tmp_path / 'run')!r} is in use by process {holder.pid}, ")
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        path, finished = run_dirs.prepare_run_dir(str(tmp_path), "run", {"alpha": 0.5})
        assert path == str(tmp_path / "run") and not finished
        assert os.listdir(path) == ["flags.json"]  # the lock leaves no file behind
    finally:
        holder.kill()
        holder.wait()


def test_temporary_files_of_a_killed_run_are_removed_when_it_is_reopened(tmp_path):
    """kill -9 while a report was written left a 0-byte .tmp-*.pdf for good (and a
    checkpoint's ckpt-N_temp/ folder, which can keep a full disk full)."""
    from keras_edd.runs import run_dirs
    path, _ = run_dirs.prepare_run_dir(str(tmp_path), "run", {"alpha": 0.5})
    run_dirs.unlock_run_dir(path)  # as if the process that wrote these had been killed
    leftovers = [".tmp-abc123.pdf", "attacks/.tmp-x.npz", "substitutes/J/.tmp-y.keras",
                 "checkpoints/teacher/ckpt-1_temp/part-0"]
    kept = ["report.md", "attacks/fgsm.npz", "checkpoints/teacher/ckpt-1.index", "notes.tmp-x"]
    for name in leftovers + kept:
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        open(os.path.join(path, name), "w").close()
    run_dirs.prepare_run_dir(str(tmp_path), "run", {"alpha": 0.5})
    found = sorted(os.path.relpath(os.path.join(d, f), path)
                   for d, _, files in os.walk(path) for f in files)
    assert found == sorted(kept + ["flags.json"])
    assert not os.path.exists(os.path.join(path, "checkpoints", "teacher", "ckpt-1_temp"))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isfile(os.path.join(REPO, "saved_models", "paper",
                                                    "MANIFEST.json")),
                    reason="no shipped paper collection")
def test_eval_refuses_a_paper_model_on_its_training_digits(tmp_path):
    from keras_edd import data
    sample = data.load_sample()
    folder = str(tmp_path / "idx")
    os.makedirs(folder)
    for split, x, y in (("train", sample.x_train[:40], sample.y_train[:40]),
                        ("t10k", sample.x_train[:20], sample.y_train[:20])):
        write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz"), x[..., 0])
        write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz"), y)
    result = binary("eval_whitebox", "--model=paper:extended", f"--data_dir={folder}",
                    "--attacks=fgsm", "--num_examples=4", "--check_examples=4", "--nosweeps",
                    "--noprogress", f"--output_dir={tmp_path / 'out'}")
    assert_one_line_error(result, "20 of the 20 test digits", "training digits of "
                          "paper:extended", "--data_dir=../shared/data/mnist",
                          program="bin/eval_whitebox")
    assert not (tmp_path / "out").exists()


def test_a_copied_output_folder_reopens_with_the_teacher_it_holds(tmp_path):
    """flags.json held a teacher's absolute path, so a finished output folder copied
    elsewhere was refused ("other settings (defense.teacher_path)"). A teacher inside the
    output folder is recorded relative to it; one outside stays absolute."""
    import shutil
    from keras_edd.runs import run_dirs

    def flags(root, teacher="teacher-run/model.keras"):
        return {"defense": {"defense": "extended", "teacher_path": str(root / teacher)},
                "train": {"epochs": 3}}

    old, new = tmp_path / "old", tmp_path / "new"
    path, finished = run_dirs.prepare_run_dir(str(old), "student", flags(old))
    assert not finished
    (old / "student" / "results.json").write_text("{}")
    run_dirs.unlock_run_dir(path)
    saved = json.loads((old / "student" / "flags.json").read_text())
    assert saved["defense"]["teacher_path"] == "<output_dir>/teacher-run/model.keras"
    shutil.copytree(old, new)
    path, finished = run_dirs.prepare_run_dir(str(new), "student", flags(new))
    assert finished and path == str(new / "student")
    run_dirs.unlock_run_dir(path)
    with pytest.raises(run_dirs.RunDirError, match=r"other settings \(defense.teacher_path\)"):
        run_dirs.prepare_run_dir(str(new), "student", flags(new, "other-run/model.keras"))
    outside = str(tmp_path / "elsewhere" / "model.keras")
    assert run_dirs.portable_flags({"defense": {"teacher_path": outside}}, str(new)) == {
        "defense": {"teacher_path": outside}}
