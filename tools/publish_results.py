#!/usr/bin/env python3
"""Copy a finished bin/reproduce run's results into a folder of the repository.

    python tools/publish_results.py /tmp/paper/reproduce-mnist-e50-s0-bf16 results/paper

Copies results.json, results.csv, report.md and the figures (each PNG with its PDF)
that results.json lists under "files"; never the crafts (attacks/), surrogates,
TensorBoard logs, models or flags.json, which stay in the run directory. Paths of
the machine the run was made on stay in results.json as they were recorded. The
destination is written file by file through temporary names, then renamed, so an
interrupted copy never leaves a half-written file; files of an earlier publication
that the run no longer lists are removed.
"""

import json
import os
import shutil
import sys

KEPT = (".json", ".csv", ".md", ".png", ".pdf")


def published_files(results):
    """The names of `results["files"]` that are published: results, report, figures."""
    return [name for name in results.get("files", []) if name.endswith(KEPT)]


def publish(run_dir, destination):
    """Copy the published files of the finished run in `run_dir` to `destination`."""
    path = os.path.join(run_dir, "results.json")
    if not os.path.isfile(path):
        raise SystemExit(f"run directory {run_dir!r}: no results.json (the run has not "
                         "finished)")
    with open(path) as f:
        names = published_files(json.load(f))
    missing = [n for n in names if not os.path.isfile(os.path.join(run_dir, n))]
    if missing:
        raise SystemExit(f"run directory {run_dir!r}: listed files missing: {missing}")
    os.makedirs(destination, exist_ok=True)
    for name in sorted(names, key=lambda n: n == "results.json"):  # results.json last
        temporary = os.path.join(destination, f".tmp-{name}")
        shutil.copyfile(os.path.join(run_dir, name), temporary)
        os.replace(temporary, os.path.join(destination, name))
    for name in os.listdir(destination):
        if name.endswith(KEPT) and name not in names:
            os.remove(os.path.join(destination, name))
    return names


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tools/publish_results.py RUN_DIR DESTINATION")
    print("\n".join(publish(sys.argv[1], sys.argv[2])))
