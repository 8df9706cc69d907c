#!/usr/bin/env python3
"""Print, or write into the README, the tables of the studies beyond the paper run.

    python tools/study_tables.py                 # print the tables
    python tools/study_tables.py README.md       # rewrite the README's blocks in place

The paper's cells over training seeds (keras_edd.reporting.seed_statistics) from
results/paper/results.json (training seed 0), every results/seeds/<run>/results.json
(tools/seed_runs.sh) and saved_models/paper/MANIFEST.json (clean test accuracies); the
paper's small-budget claim (keras_edd.reporting.claim) from results/claim/results.json,
budget sweeps of f^d; keras_edd.evaluate against the reference AutoAttack
(keras_edd.reporting.parity) from results/parity/autoattack_parity.json when it is there
(benchmarks/autoattack_parity.py). No TensorFlow.
"""

import os
import sys

from keras_edd import files
from keras_edd.reporting import claim, parity, readme_tables, seed_statistics

TOOL = "tools/study_tables.py"  # the command in the README blocks' markers
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blocks(repo=REPO):
    """name -> markdown of the README's study tables, from the files committed in `repo`."""
    paper = files.read_json(os.path.join(repo, "results", "paper", "results.json"))
    seeds_dir = os.path.join(repo, "results", "seeds")
    runs = {name: files.read_json(os.path.join(seeds_dir, name, "results.json"))
            for name in sorted(os.listdir(seeds_dir))
            if os.path.isfile(os.path.join(seeds_dir, name, "results.json"))}
    manifest = files.read_json(os.path.join(repo, "saved_models", "paper", "MANIFEST.json"))
    tables = seed_statistics.seed_blocks(paper, runs, manifest["models"])
    sweeps = files.read_json(os.path.join(repo, "results", "claim", "results.json"))
    tables["claim"] = claim.claim_table(sweeps) + "\n\n" + claim.claim_verdict(sweeps) + "."
    parity_run = os.path.join(repo, "results", "parity", "autoattack_parity.json")
    if os.path.isfile(parity_run):
        run = files.read_json(parity_run)
        tables["parity"] = (parity.parity_table(run) + "\n\nMachine: "
                            + parity.parity_machine(run) + ".")
    return tables


def main(argv):
    if len(argv) > 2:
        raise SystemExit(f"usage: {argv[0]} [README.md]")
    tables = blocks()
    if len(argv) == 1:
        print("\n\n".join(f"{name}\n\n{text}" for name, text in tables.items()))
        return
    path = argv[1]
    with open(path) as f:
        text = f.read()
    tool = TOOL
    missing = [n for n in tables
               if readme_tables.begin_marker(n, "README.md", tool) not in text]
    if missing:
        raise SystemExit(f"tools/study_tables.py: error: {path!r} lacks the markers of "
                         f"{', '.join(missing)}")
    updated = readme_tables.update_readme(text, None, "README.md", tables, tool)
    files.atomic_write(path, lambda f: f.write(updated))


if __name__ == "__main__":
    main(sys.argv)
