#!/usr/bin/env python3
"""Copy a finished bin/reproduce run's results into a folder of the repository.

    python tools/publish_results.py /tmp/paper/reproduce-mnist-e50-s0-bf16 results/paper

Copies results.json, results.csv, report.md and the figures (each PNG with its PDF)
that results.json lists under "files"; never the crafts (attacks/), surrogates,
TensorBoard logs, models or flags.json, which stay in the run directory. Paths of
the machine the run was made on stay in results.json as they were recorded. The
destination is written file by file through temporary names, then renamed, so an
interrupted copy never leaves a half-written file.

The destination is a results folder this tool made: it holds the marker
`.published.json` (the files it wrote and the run's preset and dataset). A folder
that exists, is not empty and has no marker is refused, so a mistyped destination
(`.`, `docs`) loses nothing. Republishing removes only files the previous
publication wrote that the run no longer lists, and prints what it replaced and
removed. A run whose preset or dataset differs from the published one (a `--quick`
run over results/paper) is refused unless `--force_other_settings` is given.

    python tools/publish_results.py --rerender results/paper

re-renders a published folder's results.json (in the current schema), results.csv and
report.md from its results.json alone (keras_edd.reporting.results_files
.rewrite_text_outputs): nothing is recomputed, the figures are left as they are.
"""

import json
import os
import shutil
import sys

KEPT = (".json", ".csv", ".md", ".png", ".pdf")
MARKER = ".published.json"
FORCE_FLAG = "--force_other_settings"
RERENDER_FLAG = "--rerender"
TEXT_OUTPUTS = ("results.json", "results.csv", "report.md")


def published_files(results):
    """The names of `results["files"]` that are published: results, report, figures."""
    return [name for name in results.get("files", []) if name.endswith(KEPT)]


def run_identity(results):
    """What makes two runs' results comparable: the preset and the dataset."""
    settings = results.get("settings") if isinstance(results.get("settings"), dict) else {}
    dataset = results.get("dataset") if isinstance(results.get("dataset"), dict) else {}
    return {"preset": settings.get("preset"), "dataset": dataset.get("name"),
            "train_size": dataset.get("train_size"), "test_size": dataset.get("test_size")}


def read_json_file(path, what):
    """The JSON object in `path`; SystemExit (one line) when it is missing or unusable."""
    if not os.path.exists(path):
        raise SystemExit(f"{what} {path!r}: no such file")
    if not os.path.isfile(path):
        raise SystemExit(f"{what} {path!r}: is not a file")
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{what} {path!r}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{what} {path!r}: holds a {type(value).__name__}, not a JSON object")
    return value


def _previous_publication(destination):
    """The marker of `destination` (None for a new or empty folder); refuses any other."""
    if not os.path.lexists(destination):
        return None
    if not os.path.isdir(destination):
        raise SystemExit(f"destination {destination!r}: is not a folder")
    marker = os.path.join(destination, MARKER)
    if os.path.exists(marker):
        return read_json_file(marker, "publication marker")
    if os.listdir(destination):
        raise SystemExit(f"destination {destination!r}: not a results folder made by "
                         f"tools/publish_results.py (no {MARKER}) and not empty; publish into "
                         "a new or empty folder")
    return None


def publish(run_dir, destination, *, force_other_settings=False, log=print):
    """Copy the published files of the finished run in `run_dir` to `destination`.

    Returns the names written. Never removes or overwrites a file that an earlier
    publication did not write (see the module docstring).
    """
    if not os.path.isdir(run_dir):
        raise SystemExit(f"run directory {run_dir!r}: no such folder")
    path = os.path.join(run_dir, "results.json")
    if not os.path.exists(path):
        raise SystemExit(f"run directory {run_dir!r}: no results.json (the run has not "
                         "finished)")
    results = read_json_file(path, "results file")
    names = published_files(results)
    missing = [n for n in names if not os.path.isfile(os.path.join(run_dir, n))]
    if missing:
        raise SystemExit(f"run directory {run_dir!r}: listed files missing: {missing}")
    previous = _previous_publication(destination)
    identity = run_identity(results)
    old_files = set()
    if previous is not None:
        old_files = {n for n in previous.get("files", []) if isinstance(n, str)}
        old_identity = previous.get("run")
        if isinstance(old_identity, dict) and old_identity != identity:
            changed = ", ".join(f"{k} {old_identity.get(k)!r} -> {identity.get(k)!r}"
                                for k in sorted(identity) if old_identity.get(k) != identity[k])
            if not force_other_settings:
                raise SystemExit(f"destination {destination!r} holds results of another "
                                 f"experiment ({changed}); publish elsewhere, or pass "
                                 f"{FORCE_FLAG} to replace them")
            log(f"replacing results of another experiment ({changed}), as "
                f"{FORCE_FLAG} asks")
    foreign = [n for n in names if n not in old_files
               and os.path.lexists(os.path.join(destination, n))]
    if foreign:
        raise SystemExit(f"destination {destination!r}: {foreign} exist but were not written "
                         "by an earlier publication; move them away first")
    os.makedirs(destination, exist_ok=True)
    for name in sorted(names, key=lambda n: n == "results.json"):  # results.json last
        temporary = os.path.join(destination, f".tmp-{name}")
        shutil.copyfile(os.path.join(run_dir, name), temporary)
        os.replace(temporary, os.path.join(destination, name))
        log(f"{'replaced' if name in old_files else 'wrote'} {name}")
    marker = {"tool": "tools/publish_results.py", "run": identity, "files": sorted(names)}
    temporary = os.path.join(destination, f".tmp-{MARKER}")
    with open(temporary, "w") as f:
        json.dump(marker, f, indent=1)
        f.write("\n")
    os.replace(temporary, os.path.join(destination, MARKER))
    for name in sorted(old_files - set(names)):
        stale = os.path.join(destination, name)
        if os.path.basename(name) == name and os.path.isfile(stale):
            os.remove(stale)
            log(f"removed {name} (an earlier publication's, no longer listed)")
    return names


def rerender(destination, *, log=print):
    """Re-render results.json, results.csv and report.md of a folder this tool published,
    from its results.json alone (nothing recomputed); returns the names rewritten."""
    from keras_edd.reporting import results_files  # loads matplotlib: only when asked
    previous = _previous_publication(destination)
    if previous is None:
        raise SystemExit(f"destination {destination!r}: not a folder published by "
                         f"tools/publish_results.py (no {MARKER})")
    missing = [n for n in TEXT_OUTPUTS if n not in previous.get("files", [])]
    if missing:
        raise SystemExit(f"destination {destination!r}: its publication lacks {missing}")
    try:
        results_files.rewrite_text_outputs(destination)
    except ValueError as exc:
        raise SystemExit(f"destination {destination!r}: {exc}") from None
    for name in TEXT_OUTPUTS:
        log(f"rewrote {name}")
    return list(TEXT_OUTPUTS)


if __name__ == "__main__":
    args = sys.argv[1:]
    force = FORCE_FLAG in args
    args = [a for a in args if a != FORCE_FLAG]
    again = args[:1] == [RERENDER_FLAG]
    if len(args) != 2 or (again and force) or (not again and RERENDER_FLAG in args):
        sys.exit(f"usage: python tools/publish_results.py RUN_DIR DESTINATION [{FORCE_FLAG}]\n"
                 f"       python tools/publish_results.py {RERENDER_FLAG} DESTINATION")
    try:
        if again:
            rerender(args[1])
        else:
            publish(args[0], args[1], force_other_settings=force)
    except OSError as exc:
        sys.exit(f"tools/publish_results.py: error: {exc.strerror or exc}: "
                 f"{exc.filename or args[1]!r}")
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.exit(f"tools/publish_results.py: error: {exc.code}")
        raise
