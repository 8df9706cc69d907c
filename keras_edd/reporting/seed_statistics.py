"""The paper's cells over training seeds: mean and standard deviation per cell.

The experiment of results/paper (training seed 0) is repeated at more training seeds
(tools/seed_runs.sh: f and f^d retrained, each attacked like seed 0 on the same test
digits, black-box from the seed-0 surrogates U and D). Each seed's evaluations live in
their own results.json files with their own names: in results/paper the target is named
by its role ("undefended", "extended") and the surrogates "surrogate_U" / "surrogate_D";
in a seed run the target is "target" and the surrogates "U" / "D". `collect` brings
them to one key per cell, (role, origin, attack, variant) with origin "white-box", "U"
or "D", and `statistics` gives, per cell and rate, the mean and the sample standard
deviation over the seeds that have the cell. Light: reads dicts, no TensorFlow.
"""

import dataclasses
import statistics as stats

RATES = ("recovered", "detected", "misclassified")
ORIGINS = ("white-box", "U", "D")
_SOURCE_ORIGIN = {"surrogate_U": "U", "U": "U", "surrogate_D": "D", "D": "D"}


@dataclasses.dataclass(frozen=True)
class SeedCell:
    """One cell over seeds: the seeds that have it, each seed's filtered rates and the
    number of digits they are rates of, and per rate (mean, sd); sd is None with one seed."""
    seeds: tuple
    counts: tuple
    values: dict  # rate -> tuple of per-seed values, in the order of `seeds`

    def mean(self, rate):
        return stats.fmean(self.values[rate])

    def sd(self, rate):
        values = self.values[rate]
        return stats.stdev(values) if len(values) > 1 else None


def collect(results, role, seed, cells=None):
    """Add the filtered rates of one results.json dict to `cells` (a dict, returned).

    `role` is the target's role ("undefended" or "extended"): in a seed run every entry's
    target is that model; in results/paper only the entries whose target is named `role`
    are taken. Black-box entries from other sources (surrogate J) are left out: J is
    trained against each target, so it is not the same attacker across seeds.
    """
    cells = {} if cells is None else cells
    for entry in results["evaluations"]:
        if entry["target"] not in (role, "target"):
            continue
        if entry["setting"] == "whitebox":
            origin = "white-box"
        elif entry["setting"] == "blackbox" and entry["source"] in _SOURCE_ORIGIN:
            origin = _SOURCE_ORIGIN[entry["source"]]
        else:
            continue
        filtered = entry["filtered"]
        if filtered["count"] == 0:
            continue
        key = (role, origin, entry["attack"], entry["variant"])
        if seed in cells.setdefault(key, {}):
            raise ValueError(f"seed {seed}: two results for {key}")
        cells[key][seed] = filtered
    return cells


def statistics(cells):
    """{key: SeedCell} from collect()'s {key: {seed: filtered rates}}, seeds in order."""
    out = {}
    for key, by_seed in cells.items():
        seeds = tuple(sorted(by_seed))
        out[key] = SeedCell(
            seeds=seeds, counts=tuple(by_seed[s]["count"] for s in seeds),
            values={r: tuple(by_seed[s][r] for s in seeds) for r in RATES})
    return out


def mean_sd(values):
    """(mean, sample sd or None) of a sequence of numbers."""
    values = tuple(values)
    return stats.fmean(values), (stats.stdev(values) if len(values) > 1 else None)


def pm(mean, sd, digits=1, scale=100.0):
    """'43.0 ± 9.1' (percent by default); the sd left out when None."""
    text = f"{scale * mean:.{digits}f}"
    return text if sd is None else f"{text} ± {scale * sd:.{digits}f}"


# ----------------------------------------------------------------------- markdown

ROLE_NAMES = {"undefended": "f", "extended": "f^d"}
# The paper's clean test accuracies (Papernot & McDaniel 2017, Section 4).
PAPER_CLEAN = {"undefended": 0.9919, "extended": 0.9863}


def clean_table(accuracy):
    """Markdown: clean test accuracy per model and seed, mean ± sd, the paper's.
    `accuracy` is {role: {seed: accuracy on the test set}}."""
    seeds = sorted({s for by_seed in accuracy.values() for s in by_seed})
    lines = ["| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd | paper |",
             "| --- |" + " ---: |" * (len(seeds) + 2)]
    for role, by_seed in accuracy.items():
        values = [by_seed[s] for s in seeds if s in by_seed]
        cells = [f"{100 * by_seed[s]:.2f}" if s in by_seed else "" for s in seeds]
        lines.append(f"| {ROLE_NAMES.get(role, role)} | " + " | ".join(cells)
                     + f" | {pm(*mean_sd(values), digits=2)} | {100 * PAPER_CLEAN[role]:.2f} |")
    return "\n".join(lines)


def rates_table(cells, role, attacks, rates=RATES):
    """Markdown: one row per attack and variant of `role`, one column per origin
    (white-box, from U, from D); a cell is each rate's mean ± sd over the seeds, in %,
    separated by ' / ', with the number of seeds when it is not the most common one."""
    keys = [k for k in cells if k[0] == role]
    origins = [o for o in ORIGINS if any(k[1] == o for k in keys)]
    common = max((len(cells[k].seeds) for k in keys), default=0)
    heading = {"white-box": "white-box", "U": "from U", "D": "from D"}
    lines = ["| attack | " + " | ".join(heading[o] for o in origins) + " |",
             "| --- |" + " --- |" * len(origins)]
    for attack in attacks:
        for variant in ("plain", "adaptive"):
            row = []
            for origin in origins:
                cell = cells.get((role, origin, attack, variant))
                if cell is None:
                    row.append("")
                    continue
                text = " / ".join(pm(cell.mean(r), cell.sd(r)) for r in rates)
                if len(cell.seeds) != common:
                    n = len(cell.seeds)
                    text += f" ({n} seed{'' if n == 1 else 's'})"
                row.append(text)
            if any(row):
                lines.append(f"| {attack} ({variant}) | " + " | ".join(row) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------- the README blocks

FIGURE_1_ATTACKS = ("fgsm", "jsma", "cw", "pgd", "apgd_ce", "apgd_t")


def run_role_seed(name):
    """'whitebox-extended-s4' -> ('extended', 4); None for another folder name."""
    parts = name.split("-")
    if len(parts) != 3 or parts[0] not in ("whitebox", "blackbox") or \
            parts[1] not in ROLE_NAMES or not parts[2].startswith("s") or \
            not parts[2][1:].isdigit():
        return None
    return parts[1], int(parts[2][1:])


def seed_blocks(paper, seed_runs, manifest_models):
    """The README's seed tables: name -> markdown.

    paper: results/paper's results.json (training seed 0); seed_runs: {folder name under
    results/seeds: its results.json}; manifest_models: saved_models/paper/MANIFEST.json's
    "models" (clean test accuracy of each role, "<role>_s<seed>" for seeds other than 0).
    """
    cells = {}
    for role in ROLE_NAMES:
        collect(paper, role, 0, cells)
    for name, results in sorted(seed_runs.items()):
        role_seed = run_role_seed(name)
        if role_seed is None:
            raise ValueError(f"{name!r}: expected a seed run named "
                             "(whitebox|blackbox)-(undefended|extended)-s<seed>")
        collect(results, *role_seed, cells)
    table = statistics(cells)
    accuracy = {role: {} for role in ROLE_NAMES}
    for key, info in manifest_models.items():
        role, _, seed = key.partition("_s")
        if role in accuracy and (not seed or seed.isdigit()):
            accuracy[role][int(seed or info.get("seed", 0))] = info["clean_test_accuracy"]
    return {"seeds-clean": clean_table(accuracy),
            "seeds-undefended": rates_table(table, "undefended", FIGURE_1_ATTACKS,
                                            rates=("misclassified",)),
            "seeds-extended": rates_table(table, "extended", FIGURE_1_ATTACKS)}
