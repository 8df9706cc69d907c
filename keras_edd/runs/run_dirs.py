"""Run directories: flags.json, results.json, checkpoints, TensorBoard logs, models.

Layout of `<output_dir>/<run_name>/`:
  flags.json      the settings the run was started with (a rerun must match)
  results.json    written last: its presence means the run finished
  checkpoints/    tf.train.CheckpointManager files, one subfolder per model
  logs/           TensorBoard event files, one subfolder per model
  *.keras         the final models
Every file is written to a temporary name and renamed, so a crash or a kill
never leaves a half-written file under the final name.
"""

import json
import os
import platform
import sys
import tempfile

from keras_edd import __version__, config
from keras_edd.files import jsonable, read_json, write_json


class RunDirError(ValueError):
    """A run directory cannot be made or written, or holds a run with other settings."""


def check_writable_dir(path, what="output folder"):
    """Raise RunDirError naming `path` unless it is, or can be made, a writable folder.

    Checks, without leaving anything behind, what would otherwise surface later
    as a raw OSError: a file where a folder should be (or on the way there), a
    name longer than the file system allows, or a folder without write
    permission (probed with a temporary file in the nearest existing folder).
    """
    path = os.path.abspath(path)
    existing, missing = path, []
    while not os.path.lexists(existing):
        missing.append(os.path.basename(existing))
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "it" if existing == path else repr(existing)
        raise RunDirError(f"{what} {path!r}: {where} is not a directory")
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for name in missing:
        if len(os.fsencode(name)) > name_max:
            raise RunDirError(f"{what} {path!r}: the name {name[:20]}... is "
                              f"{len(os.fsencode(name))} bytes long; the file system allows "
                              f"{name_max}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".tmp-", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise RunDirError(f"{what} {path!r}: cannot write in {existing!r} "
                          f"({exc.strerror or exc})") from None
    return path


def prepare_run_dir(output_dir, run_name, flags):
    """Create (or reopen) a run directory and record its flags.

    Returns (path, finished). Reopening with other flags raises RunDirError, so a
    rerun can never overwrite a different experiment; reopening with the same
    flags resumes it (or reports it finished when results.json exists). A run
    directory holding nothing but flags.json never got past its start (it
    failed before writing anything else), so other flags take it over and a
    corrected command is not refused. A folder that cannot be made or written raises RunDirError naming it,
    before anything is written.
    """
    path = os.path.join(output_dir, run_name)
    check_writable_dir(path, "run directory")
    flags_path = os.path.join(path, "flags.json")
    if os.path.exists(flags_path) and _started(path):
        previous = config.run_identity(read_json(flags_path))
        canonical = config.run_identity(json.loads(json.dumps(flags, default=jsonable)))
        if previous != canonical:
            changed = list(config.identity_diff(previous, canonical))
            raise RunDirError(
                f"run directory {path!r} holds a run with other settings ({', '.join(changed)}); "
                "pass another --run_name or delete that directory")
        return path, os.path.exists(os.path.join(path, "results.json"))
    try:
        write_json(flags_path, flags)
    except OSError as exc:
        raise RunDirError(f"run directory {path!r}: cannot write flags.json "
                          f"({exc.strerror or exc})") from None
    return path, False


def _started(path):
    """True when the run directory holds anything besides flags.json (and temporary files)."""
    return any(name != "flags.json" and not name.startswith(".tmp-")
               for name in os.listdir(path))


def open_run(output_dir, run_name, flags):
    """prepare_run_dir, then (path, results.json's dict if the run finished, else None)."""
    path, finished = prepare_run_dir(output_dir, run_name, flags)
    return path, (read_json(os.path.join(path, "results.json")) if finished else None)


def versions():
    """Versions of everything that can change a number in results.json."""
    import keras
    import numpy
    import tensorflow as tf
    return {"keras_edd": __version__, "python": sys.version.split()[0], "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count()}
