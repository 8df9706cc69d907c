"""Writing and reading files: the one atomic writer, JSON, sha256. Light: no TensorFlow.

Every file keras_edd writes goes to a temporary name next to its final one and is
renamed when complete, so a crash or a kill never leaves a half-written file
under the final name.
"""

import contextlib
import hashlib
import json
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path` (same suffix); on success rename it to `path`.

    The only way keras_edd writes a file (see the module docstring).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write(path, write, *, binary=False):
    """Call `write(file)` on a temporary file next to `path`, then rename it to `path`."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)


def jsonable(value):
    """`json.dump`'s `default`: numpy arrays and scalars as Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path, obj):
    """Write JSON atomically, indented, keys sorted."""
    def write(f):
        json.dump(obj, f, indent=2, sort_keys=True, default=jsonable)
        f.write("\n")
    atomic_write(path, write)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def save_model(model, path):
    """Save a Keras model as `.keras`, atomically."""
    if not path.endswith(".keras"):
        raise ValueError(f"model path {path!r} must end in .keras")
    with atomic_path(path) as tmp:
        model.save(tmp)


def sha256(path):
    """The sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
