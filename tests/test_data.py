import gzip
import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import idx_bytes, write_idx, write_idx_folder
from keras_edd import data


def test_idx_folder_round_trip(idx_folder):
    folder, arrays = idx_folder
    ds = data.load_dataset("mnist", folder)
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["train"][0])
    np.testing.assert_array_equal(ds.y_train, arrays["train"][1])
    np.testing.assert_array_equal(ds.x_test[..., 0], arrays["t10k"][0])
    assert ds.x_train.shape == (40, 28, 28, 1) and ds.x_train.dtype == np.uint8
    assert ds.y_test.dtype == np.int64
    assert ds.source.startswith("idx:")


def test_uncompressed_and_dotted_names(tmp_path):
    folder = str(tmp_path)
    write_idx_folder(folder, gz=False)
    os.rename(os.path.join(folder, "t10k-images-idx3-ubyte"),
              os.path.join(folder, "t10k-images.idx3-ubyte"))
    assert len(data.load_dataset("fashion_mnist", folder).y_test) == 20


def test_limits(idx_folder):
    ds = data.load_dataset("mnist", idx_folder[0], train_limit=7, test_limit=3)
    assert (len(ds.y_train), len(ds.y_test)) == (7, 3)


def test_environment_variable(idx_folder, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, idx_folder[0])
    assert data.load_dataset("mnist").source.endswith(os.path.abspath(idx_folder[0]))


@pytest.mark.parametrize("raw,message", [
    (b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"\x00" * 10, "truncated"),
    (b"\x12\x34\x08\x03" + b"\x00" * 40, "bad magic number"),
    (b"", "bad magic number"),
    (b"\x00\x00\x07\x01" + (1).to_bytes(4, "big") + b"\x00", "unknown IDX type"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
])
def test_corrupt_image_file_is_named(tmp_path, raw, message):
    folder = str(tmp_path)
    write_idx_folder(folder)
    bad = os.path.join(folder, "train-images-idx3-ubyte.gz")
    write_idx(bad, None, raw=raw)
    with pytest.raises(data.DataError, match=message) as info:
        data.load_dataset("mnist", folder)
    assert "train-images-idx3-ubyte.gz" in str(info.value)


def test_trailing_bytes(tmp_path):
    path = write_idx(str(tmp_path / "x-idx1-ubyte"), None,
                     raw=idx_bytes(np.zeros(3, np.uint8)) + b"\x00")
    with pytest.raises(data.DataError, match="trailing bytes"):
        data.read_idx(path)


def test_corrupt_gzip_is_named(tmp_path):
    folder = str(tmp_path)
    write_idx_folder(folder)
    path = os.path.join(folder, "t10k-labels-idx1-ubyte.gz")
    with open(path, "r+b") as f:
        f.truncate(15)
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz"):
        data.load_dataset("mnist", folder)


@pytest.mark.parametrize("images,start,detected_by", [
    # A smooth ramp compresses to Huffman blocks: bytes 20-60 zeroed break the deflate
    # stream itself (zlib.error). Random bytes are stored verbatim: damage inside a
    # stored block is only seen by the CRC check at the end of the stream.
    pytest.param((np.arange(40 * 28 * 28) % 251).reshape(40, 28, 28), 20, "corrupt gzip data",
                 id="deflate"),
    pytest.param(np.random.default_rng(0).integers(0, 256, (40, 28, 28)), 200,
                 "CRC check failed", id="crc"),
])
def test_corrupt_gzip_body_is_named(tmp_path, images, start, detected_by):
    folder = str(tmp_path)
    write_idx_folder(folder)
    path = os.path.join(folder, "train-images-idx3-ubyte.gz")
    write_idx(path, images)
    with open(path, "r+b") as f:  # the gzip header stays valid, the body is damaged
        f.seek(start)
        f.write(b"\x00" * 41)
    with pytest.raises(data.DataError, match=detected_by) as info:
        data.load_dataset("mnist", folder)
    assert "train-images-idx3-ubyte.gz" in str(info.value)


# Property tests: whatever bytes an IDX file holds, read_idx either returns the
# array its header describes or raises DataError naming the file, nothing else.
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
VALID_IDX = idx_bytes((np.arange(6 * 5 * 4) % 7).reshape(6, 5, 4))


def _write_bytes(path, raw, compress):
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(raw)
    return path


def _read_or_named_error(path):
    try:
        return data.read_idx(path)
    except data.DataError as exc:
        assert path in str(exc)
        return None


@FUZZ
@given(raw=st.binary(max_size=200), compress=st.booleans(), gz_name=st.booleans())
def test_read_idx_random_bytes_fuzz(tmp_path, raw, compress, gz_name):
    path = _write_bytes(str(tmp_path / ("f-idx.gz" if gz_name else "f-idx")), raw, compress)
    array = _read_or_named_error(path)
    if array is not None:  # the bytes happen to form a valid IDX file
        assert compress == gz_name and raw[:2] == b"\x00\x00"
        assert 4 + 4 * array.ndim + array.nbytes == len(raw)


@FUZZ
@given(cut=st.integers(0, len(VALID_IDX) - 1), compress=st.booleans())
def test_read_idx_truncation_fuzz(tmp_path, cut, compress):
    whole = gzip.compress(VALID_IDX, mtime=0) if compress else VALID_IDX
    cut = cut * len(whole) // len(VALID_IDX)  # anywhere in the (compressed) file
    path = str(tmp_path / ("f-idx.gz" if compress else "f-idx"))
    with open(path, "wb") as f:
        f.write(whole[:cut])
    with pytest.raises(data.DataError, match="f-idx"):
        data.read_idx(path)


DIMENSION = st.one_of(st.integers(0, 8), st.integers(0, 32).map(lambda k: 2 ** k - (k == 32)),
                      st.integers(0, 2 ** 32 - 1))


@FUZZ
@given(type_code=st.integers(0, 255), shape=st.lists(DIMENSION, min_size=1, max_size=8),
       rank=st.one_of(st.none(), st.integers(0, 255)), body=st.binary(max_size=64))
def test_read_idx_random_header_fuzz(tmp_path, type_code, shape, rank, body):
    """Valid magic, random type code, rank and dimensions (products past 2**64 included)."""
    rank = len(shape) if rank is None else rank
    raw = (bytes([0, 0, type_code, rank]) + b"".join(d.to_bytes(4, "big") for d in shape)
           + body)
    path = _write_bytes(str(tmp_path / "f-idx"), raw, compress=False)
    array = _read_or_named_error(path)
    if array is not None:
        assert array.nbytes == len(raw) - 4 - 4 * rank


def test_dimensions_whose_product_wraps_in_int64_are_refused(tmp_path):
    # 4 dimensions of 2**16: 2**64 elements, which is 0 in int64 arithmetic.
    raw = b"\x00\x00\x08\x04" + (2 ** 16).to_bytes(4, "big") * 4
    path = _write_bytes(str(tmp_path / "f-idx"), raw, compress=False)
    with pytest.raises(data.DataError, match="f-idx"):
        data.read_idx(path)


def test_empty_shape_too_large_for_numpy_is_refused(tmp_path):
    # Rank 3 of float64 with a zero dimension: 0 data bytes, but numpy cannot even
    # make an empty array of shape (0, 2**31, 2**31) of 8-byte items.
    raw = b"\x00\x00\x0e\x03" + (0).to_bytes(4, "big") + (2 ** 31).to_bytes(4, "big") * 2
    path = _write_bytes(str(tmp_path / "g-idx"), raw, compress=False)
    with pytest.raises(data.DataError, match="g-idx.*too large"):
        data.read_idx(path)


def test_mismatched_counts(tmp_path):
    folder = str(tmp_path)
    write_idx_folder(folder)
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"), np.zeros(39, np.uint8))
    with pytest.raises(data.DataError, match="40 images but .* holds 39 labels"):
        data.load_dataset("mnist", folder)


def test_labels_out_of_range(tmp_path):
    folder = str(tmp_path)
    write_idx_folder(folder)
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"), np.full(20, 10, np.uint8))
    with pytest.raises(data.DataError, match=r"labels must lie in \[0, 9\]"):
        data.load_dataset("mnist", folder)


def test_wrong_image_shape(tmp_path):
    folder = str(tmp_path)
    write_idx_folder(folder, shape=(32, 32))
    with pytest.raises(data.DataError, match="expects"):
        data.load_dataset("mnist", folder)


def test_missing_files_and_folder(tmp_path):
    with pytest.raises(data.DataError, match="not a directory"):
        data.load_dataset("mnist", str(tmp_path / "nowhere"))
    folder = str(tmp_path)
    write_idx_folder(folder)
    os.remove(os.path.join(folder, "t10k-images-idx3-ubyte.gz"))
    with pytest.raises(data.DataError, match="lacks IDX file.*t10k-images"):
        data.load_dataset("mnist", folder)


def test_unknown_dataset():
    with pytest.raises(data.DataError, match="dataset='svhn' is unknown"):
        data.load_dataset("svhn")


def test_no_source_fails_fast_and_lists_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(data.DataError) as info:
        data.load_dataset("fashion_mnist")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    for source in ("--data_dir", data.DATA_DIR_ENV, "TensorFlow Datasets", "no network"):
        assert source in message


def test_network_probe_times_out_quickly(monkeypatch):
    monkeypatch.delenv(data.OFFLINE_ENV)
    start = time.perf_counter()
    assert data.network_available("192.0.2.1", 9, timeout=0.5) is False  # TEST-NET-1
    assert time.perf_counter() - start < 2


def test_mnist_falls_back_to_bundled_sample(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    ds = data.load_dataset("mnist")
    assert ds.name == "mnist_sample" and ds.source == "bundled:mnist_sample"
    assert (len(ds.y_train), len(ds.y_test)) == (4000, 1000)
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert ds.x_train.shape[1:] == (28, 28, 1) and ds.x_train.max() == 255


@pytest.mark.parametrize("folder", ["missing", "idx"])
def test_mnist_sample_refuses_an_explicit_data_dir(tmp_path, folder):
    """A folder named explicitly, usable or not, is never silently ignored."""
    write_idx_folder(str(tmp_path / "idx"))
    with pytest.raises(data.DataError, match="mnist_sample.*data_dir=.*" + folder):
        data.load_dataset("mnist_sample", str(tmp_path / folder))


def test_mnist_sample_does_not_use_the_environment_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "missing"))
    assert data.load_dataset("mnist_sample", test_limit=5).source == "bundled:mnist_sample"


def test_pipeline_float_nhwc_and_seeded_order(idx_folder):
    ds = data.load_dataset("mnist", idx_folder[0])
    batches = list(data.make_pipeline(ds.x_train, ds.y_train, 16, shuffle_seed=3))
    x, y = batches[0]
    assert x.dtype.name == "float32" and x.shape == (16, 28, 28, 1)
    assert 0.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0
    np.testing.assert_allclose(np.sort(np.concatenate([b[1] for b in batches])),
                               np.sort(ds.y_train))
    again = list(data.make_pipeline(ds.x_train, ds.y_train, 16, shuffle_seed=3))
    np.testing.assert_array_equal(batches[0][1], again[0][1])
    other = list(data.make_pipeline(ds.x_train, ds.y_train, 16, shuffle_seed=4))
    assert not np.array_equal(np.concatenate([b[1] for b in batches]),
                              np.concatenate([b[1] for b in other]))


def test_shared_mnist_counts(shared_mnist):
    ds = data.load_dataset("mnist", shared_mnist)
    assert (len(ds.y_train), len(ds.y_test)) == (22699, 10000)
    assert np.bincount(ds.y_train)[:3].tolist() == [2258, 2581, 2215]


def test_to_float_is_the_one_uint8_rule():
    images = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_array_equal(data.to_float(images),
                                  np.array([[0, 51, 255]], np.float32) / np.float32(255))
    floats = np.array([[0.0, 0.25, 1.0]], np.float32)
    out = data.to_float(floats)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, floats)  # already in [0, 1]: not divided again
    np.testing.assert_array_equal(data.to_float(floats.astype(np.float64)), floats)


@pytest.mark.parametrize("images, message", [
    (np.array([0.0, 2.0], np.float32), r"span \[0.0, 2.0\]: expected values in \[0, 1\]"),
    (np.array([-0.5, 0.5]), r"span \[-0.5, 0.5\]"),
    (np.array([0.5, np.nan], np.float32), r"expected values in \[0, 1\]"),
    (np.array([0, 255], np.int64), "dtype int64: expected uint8"),
])
def test_to_float_refuses_what_is_not_an_image(images, message):
    with pytest.raises(ValueError, match=message):
        data.to_float(images)


def test_sample_test_digits_are_named_official_test_digits():
    """The sample's test split was 1,000 official *training* digits, on which the shipped
    paper: models were trained: scoring them on it reported robustness on training digits.
    Its digits are now named official test digits, outside the paper evaluation's attacked
    digits (the first 1,000) and surrogate J's S_0 (the last 150)."""
    with np.load(data.SAMPLE_PATH) as arrays:
        test, train, labels = arrays["test_indices"], arrays["train_indices"], arrays["y_test"]
    assert len(test) == len(labels) == 1000 and len(set(test.tolist())) == 1000
    assert test.min() >= 1000 and test.max() < 10000 - 150
    assert np.bincount(labels).tolist() == [100] * 10
    assert len(train) == 4000 and len(set(train.tolist())) == 4000
    sample = data.load_sample()
    assert sample.x_test.shape == (1000, 28, 28, 1) and sample.x_train.shape == (4000, 28, 28, 1)


def test_sample_is_rebuilt_from_the_official_files(shared_mnist):
    """Every sample digit is the official digit its index names; no test digit is one of
    MNIST-22.7k's training digits (the paper: models' training set)."""
    from conftest import load_tool
    official = data.load_idx_folder("mnist", shared_mnist)
    with np.load(data.SAMPLE_PATH) as arrays:
        parts = {k: arrays[k] for k in arrays.files}
    train, test = load_tool("make_mnist_sample").sample_indices(official.y_train, official.y_test)
    np.testing.assert_array_equal(train, parts["train_indices"])
    np.testing.assert_array_equal(test, parts["test_indices"])
    np.testing.assert_array_equal(official.x_test[test, ..., 0], parts["x_test"])
    np.testing.assert_array_equal(official.y_test[test], parts["y_test"])
    np.testing.assert_array_equal(official.x_train[train, ..., 0], parts["x_train"])
    training_digits = {x.tobytes() for x in official.x_train}
    assert not any(x.tobytes() in training_digits for x in parts["x_test"])
