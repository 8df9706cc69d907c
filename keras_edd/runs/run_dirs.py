"""Run directories: flags.json, results.json, checkpoints, TensorBoard logs, models.

Layout of `<output_dir>/<run_name>/`:
  flags.json      the settings the run was started with (a rerun must match)
  results.json    written last: its presence means the run finished
  checkpoints/    tf.train.CheckpointManager files, one subfolder per model
  logs/           TensorBoard event files, one subfolder per model
  *.keras         the final models
Every file is written to a temporary name and renamed, so a crash or a kill
never leaves a half-written file under the final name; the temporary files a
killed process left behind are removed when the run directory is next opened.
The process working in a run directory holds an flock on it (`lock_run_dir`)
until it exits, so a second process started on the same run is refused, naming
the holder, instead of training and crafting everything a second time; the
operating system releases the lock when the holder dies, even by kill -9.
"""

import contextlib
import fcntl
import glob
import json
import os
import platform
import shutil
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


# What a run directory holds (see the module docstring): these names must be folders, and
# a name with one of these suffixes must be a file.
RUN_FOLDERS = ("checkpoints", "logs", "attacks", "substitutes")
RUN_FILE_SUFFIXES = (".json", ".keras", ".csv", ".md", ".png", ".pdf", ".npz")


def check_nothing_in_the_way(path):
    """Raise RunDirError (one line) when a file sits where a run keeps a folder
    (`checkpoints`, `logs`, ...) or a folder where it writes a file (`results.json`,
    `*.keras`, ...): found before any training, not as a traceback after it."""
    if not os.path.isdir(path):
        return
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name in RUN_FOLDERS and not os.path.isdir(full):
            raise RunDirError(f"run directory {path!r}: {name!r} is a file where the run keeps "
                              "a folder; move it away")
        if name.endswith(RUN_FILE_SUFFIXES) and os.path.isdir(full):
            raise RunDirError(f"run directory {path!r}: {name!r} is a folder where the run "
                              "writes a file; move it away")


_LOCKED = {}  # real path of a run directory -> the open descriptor holding its flock


def _lock_holder(fd):
    """'process PID' of the process holding an flock on the folder open as `fd` (from
    /proc/locks, Linux), else 'another process'."""
    inode = os.fstat(fd).st_ino
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if "FLOCK" in parts and len(parts) > 5 and parts[5].endswith(f":{inode}"):
                    return f"process {parts[4]}"
    except OSError:
        pass
    return "another process"


def lock_run_dir(path):
    """Take the run directory `path` (an existing folder) for this process, for as long as
    it lives: an exclusive flock on the folder itself, so no lock file is left behind
    and the OS releases it when the process ends, however it ends. Reentrant within a
    process. Raises RunDirError naming the holder when another process has it."""
    key = os.path.realpath(path)
    if key in _LOCKED:
        return
    fd = os.open(key, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(fd)
        os.close(fd)
        raise RunDirError(f"run directory {path!r} is in use by {holder}, which is working on "
                          "the same run; wait for it to end (its lock goes with it) or pass "
                          "another --run_name / --output_dir") from None
    _LOCKED[key] = fd


def unlock_run_dir(path):
    """Release this process's lock on the run directory `path` (no-op if not held), e.g.
    in a notebook that is done with a run and wants another process to take it."""
    fd = _LOCKED.pop(os.path.realpath(path), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


def remove_leftovers(path):
    """Remove what a killed process left in the run directory `path` (locked by this
    process): temporary `.tmp-*` files of atomic writes, in the folder and its attacks/
    and substitutes/, and TensorFlow's half-written `ckpt-*_temp` checkpoint folders."""
    patterns = (".tmp-*", "attacks/.tmp-*", "substitutes/*/.tmp-*", "checkpoints/*/ckpt-*_temp",
                "checkpoints/ckpt-*_temp")
    for pattern in patterns:
        for leftover in glob.glob(os.path.join(glob.escape(path), pattern)):
            if os.path.isdir(leftover) and not os.path.islink(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(leftover)


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
    check_nothing_in_the_way(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"run directory {path!r}: cannot create it ({exc.strerror or exc})") \
            from None
    lock_run_dir(path)  # before flags.json is read or written: one process per run
    remove_leftovers(path)
    flags_path = os.path.join(path, "flags.json")
    flags = portable_flags(json.loads(json.dumps(flags, default=jsonable)), output_dir)
    if os.path.exists(flags_path) and _started(path):
        previous = config.run_identity(read_json(flags_path))
        canonical = config.run_identity(flags)
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


# How flags.json writes a teacher model that lies inside the output folder: relative to it,
# so a finished output folder copied or moved elsewhere reopens with the same settings.
OUTPUT_DIR_MARK = "<output_dir>"


def portable_flags(flags, output_dir):
    """`flags` with every `teacher_path` inside `output_dir` written as
    "<output_dir>/<path relative to it>"; other values unchanged (a new dict)."""
    root = os.path.abspath(output_dir)

    def walk(value, key=None):
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if key == "teacher_path" and isinstance(value, str):
            absolute = os.path.abspath(value)
            if os.path.commonpath([absolute, root]) == root:
                return "/".join([OUTPUT_DIR_MARK, *os.path.relpath(absolute, root).split(os.sep)])
        return value

    return walk(flags)


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
