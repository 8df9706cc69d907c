#!/usr/bin/env python3
"""Print the README's result tables (markdown) from a bin/reproduce results.json.

    python tools/readme_tables.py saved_models/reproduce-mnist-e50-s0/results.json

Every number in the README's paper-settings section comes from this command run on the
results.json of the command given there, so a reader can regenerate the tables;
`python tools/readme_tables.py results/paper/results.json README.md` rewrites the
README's generated blocks (between their markers) in place: the tables are computed
first and the README replaced atomically, only from a run with the paper preset on
MNIST unless `--force_other_settings` says otherwise. The tables are rendered by
keras_edd.reporting.readme_tables from the typed results (keras_edd.results_schema);
this file is only the command line. No TensorFlow.
"""

import json
import os
import sys

from keras_edd import files
from keras_edd.reporting import readme_tables
from keras_edd.reporting.readme_tables import begin_marker, end_marker, readme_blocks  # noqa: F401
from keras_edd.results_schema import Results

README_RUN = {"preset": "paper", "dataset": "mnist"}  # what the README's tables show
FORCE_FLAG = "--force_other_settings"


def fail(message):
    """Exit 1 with one line naming the tool."""
    raise SystemExit(f"tools/readme_tables.py: error: {message}")


def read_results(path):
    """The typed results of a bin/reproduce results.json; one-line exit when unusable."""
    if not os.path.exists(path):
        fail(f"{path!r}: no such file (a run directory holds results.json only once the "
             "run has finished)")
    if os.path.isdir(path):
        fail(f"{path!r} is a folder; give its results.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        fail(f"{path!r}: not valid JSON ({exc})")
    if not isinstance(data, dict) or data.get("kind", "reproduce") != "reproduce" \
            or not all(k in data for k in ("evaluations", "models", "num_examples")):
        fail(f"{path!r} is not the results.json of a bin/reproduce run (it lacks "
             "'evaluations', 'models' or 'num_examples')")
    try:
        return Results.from_dict(data)
    except ValueError as exc:
        fail(f"{path!r}: not a results.json this keras_edd reads ({exc})")


def rendered(path, results, compute):
    """compute(results), with a one-line exit when results.json lacks what a table reads."""
    try:
        return compute(results)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        fail(f"{path!r}: cannot build the tables ({type(exc).__name__}: {exc}); is it a "
             "complete bin/reproduce results.json?")


def main(path, readme=None, force_other_settings=False):
    results = read_results(path)
    if readme:  # rewrite the generated blocks of that README in place
        settings = results.get("settings") if isinstance(results.get("settings"), dict) else {}
        dataset = results.get("dataset") if isinstance(results.get("dataset"), dict) else {}
        run = {"preset": settings.get("preset"), "dataset": dataset.get("name")}
        if run != README_RUN and not force_other_settings:
            fail(f"{path!r} is a run with preset {run['preset']!r} on dataset "
                 f"{run['dataset']!r}; the README's tables show preset 'paper' on 'mnist': "
                 f"pass {FORCE_FLAG} to write them anyway")
        try:
            with open(readme) as f:
                text = f.read()
        except OSError as exc:
            fail(f"{readme!r}: cannot read ({exc.strerror or exc})")
        updated = rendered(path, results,
                           lambda r: readme_tables.update_readme(text, r, path))
        files.atomic_write(readme, lambda f: f.write(updated))
        return
    for title, body in rendered(path, results, readme_tables.all_tables):
        print(f"#### {title}\n\n{body}\n")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != FORCE_FLAG]
    if len(args) not in (1, 2):
        sys.exit("usage: python tools/readme_tables.py RUN_DIR/results.json [README.md] "
                 f"[{FORCE_FLAG}]\n  with README.md: rewrite its generated tables in place")
    main(*args, force_other_settings=FORCE_FLAG in sys.argv[1:])
