"""The binaries refuse malformed inputs with one `bin/<name>: error: ...` line, exit 2."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, write_idx, write_idx_folder
from keras_edd.config import BlackboxConfig, RunConfig

TRAIN = os.path.join(REPO, "bin", "train")


def train(*args):
    return subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True,
                          timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    # TensorFlow's C++ start-up notices may come first; the error is the last line.
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("bin/train: error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, last


def test_corrupt_gzip_body_exits_2_naming_the_file(tmp_path):
    folder = str(tmp_path / "idx")
    write_idx_folder(folder)
    path = write_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"),
                     (np.arange(20 * 28 * 28) % 251).reshape(20, 28, 28))
    with open(path, "r+b") as f:
        f.seek(20)
        f.write(b"\x00" * 41)
    result = train(f"--data_dir={folder}", f"--output_dir={tmp_path / 'out'}", "--epochs=1")
    assert_one_line_error(result, "t10k-images-idx3-ubyte.gz", "corrupt gzip data")
    assert not os.path.exists(tmp_path / "out")


def test_mnist_sample_with_data_dir_exits_2(tmp_path):
    result = train("--dataset=mnist_sample", f"--data_dir={tmp_path / 'missing'}",
                   f"--output_dir={tmp_path / 'out'}", "--epochs=1")
    assert_one_line_error(result, "dataset='mnist_sample'", "missing", "--dataset=mnist")
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("name", ["run\n", "run\n\n", "\nrun", "run\r", "ru\nn"])
def test_names_with_line_breaks_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="run_name="):
        RunConfig(run_name=name).validate()
    model = tmp_path / "m.keras"
    model.write_bytes(b"")
    with pytest.raises(ValueError, match="surrogate name"):
        BlackboxConfig(target_path=str(model), surrogates=((name, str(model)),)).validate()


def test_run_name_ending_in_newline_exits_2_and_creates_nothing(tmp_path):
    result = train("--run_name=run\n", f"--output_dir={tmp_path / 'out'}", "--epochs=1")
    assert_one_line_error(result, "run_name='run\\n'")
    assert not os.path.exists(tmp_path / "out")
