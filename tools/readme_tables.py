#!/usr/bin/env python3
"""Print the README's result tables (markdown) from a bin/reproduce results.json.

    python tools/readme_tables.py saved_models/reproduce-mnist-e50-s0/results.json

Every number in the README's paper-settings section comes from this script run on the
results.json of the command given there, so a reader can regenerate the tables;
`python tools/readme_tables.py results/paper/results.json README.md` rewrites the
README's generated blocks (between their markers) in place: the tables are computed
first and the README replaced atomically, only from a run with the paper preset on
MNIST unless `--force_other_settings` says otherwise. Reads the
JSON only (no TensorFlow). Rates are the filtered ones (inputs the target classifies
correctly when clean), in percent.
"""

import json
import os
import shutil
import sys
import tempfile

FIGURE_1_ATTACKS = ("fgsm", "jsma", "cw", "pgd")
OTHER_ATTACKS = ("cw_adam", "square", "apgd_ce", "apgd_t")
PAPER_TARGETS = ("undefended", "extended", "distillation")
SURROGATE_NAMES = {"surrogate_U": "U", "surrogate_D": "D"}


def pct(value, digits=1):
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def cell(entry):
    if entry is None:
        return ""
    f = entry["filtered"]
    return f"{pct(f['recovered'])} / {pct(f['detected'])} / {pct(f['misclassified'])}"


def index(results):
    return {(e["setting"], e["source"], e["target"], e["attack"], e["variant"]): e
            for e in results["evaluations"]}


def attack_header(attack, entries):
    """e.g. 'FGSM eps=0.2 (n=1000)' from the first entry of that attack."""
    e = next((e for e in entries.values() if e["attack"] == attack), None)
    if e is None:
        return attack
    return f"{attack} {e['parameter']}={e['value']:g}"


def rows_of(results):
    """(label, setting, source, target, variant) in the order of the paper's Figure 1."""
    models = results["models"]
    rows = []
    for target in PAPER_TARGETS:
        variants = ("plain", "adaptive") if models[target]["outlier_class"] is not None \
            else ("plain",)
        for variant in variants:
            rows.append((f"{target} | itself{', adaptive' if variant == 'adaptive' else ''} "
                         "(white-box)", "whitebox", target, target, variant))
    for source, short in SURROGATE_NAMES.items():
        variants = ("plain", "adaptive") if models[source]["outlier_class"] is not None \
            else ("plain",)
        for variant in variants:
            for target in PAPER_TARGETS:
                rows.append((f"{target} | surrogate {short}"
                             f"{', adaptive' if variant == 'adaptive' else ''} (black-box)",
                             "blackbox", source, target, variant))
    return rows


def rate_table(results, attacks):
    entries = index(results)
    present = [a for a in attacks if any(k[3] == a for k in entries)]
    header = ["target | attack computed on"] + [attack_header(a, entries) for a in present]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---|" * len(present)]
    for label, setting, source, target, variant in rows_of(results):
        cells = [cell(entries.get((setting, source, target, a, variant))) for a in present]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def counts_line(results):
    counts = results["num_examples"]
    main = ", ".join(f"{a} {n}" for a, n in counts.items() if a != "extra_models")
    text = f"Inputs attacked per attack: {main}"
    if "extra_models" in counts:
        text += ("; on the adversarial target and the surrogates J: "
                 + ", ".join(f"{a} {n}" for a, n in counts["extra_models"].items()))
    return text + "."


def models_table(results):
    lines = ["| model | defense | T | clean accuracy (test set) | clean detected | "
             "training seconds |", "|---|---|---|---|---|---|"]
    order = ("undefended", "extended", "distillation", "adversarial", "surrogate_U",
             "surrogate_D")
    for role in sorted(results["training"], key=lambda r: order.index(r) if r in order else 99):
        t = results["training"][role]
        m = results["models"][role]["clean_test_set"]
        lines.append(f"| {role} | {t['defense']} | {t['temperature']:g} | "
                     f"{pct(m['accuracy'], 2)} | {pct(m.get('detected'), 2)} | "
                     f"{t['training_wall_seconds']:.0f} |")
    return "\n".join(lines)


def cw_split_table(results):
    """CW with AdaDelta (the paper's) vs Adam (Carlini's): misclassified and attack_failed."""
    entries = index(results)
    lines = ["| target | source | variant | cw: misclassified / attack failed | "
             "cw_adam: misclassified / attack failed |", "|---|---|---|---|---|"]
    for (setting, source, target, attack, variant), e in entries.items():
        if attack != "cw":
            continue
        adam = entries.get((setting, source, target, "cw_adam", variant))

        def two(x):
            if x is None:
                return ""
            f = x["filtered"]
            return f"{pct(f['misclassified'])} / {pct(f['attack_failed'])} (n={f['count']})"
        lines.append(f"| {target} | {source} | {variant} | {two(e)} | {two(adam)} |")
    return "\n".join(lines)


def auroc(score):
    """AUROC to 3 decimals; n/a when there was nothing to detect (no positives)."""
    return "n/a" if score.get("auroc") is None else f"{score['auroc']:.3f}"


def detection_table(results):
    lines = ["| attack | setting | source | variant | n | AUROC softmax | AUROC margin | "
             "TPR at 1 % FPR | TPR at 5 % FPR |", "|---|---|---|---|---|---|---|---|---|"]
    for d in results["detection"]["entries"]:
        s, m = d["softmax"], d["margin"]
        lines.append(f"| {d['attack']} | {d['setting']} | {d['source']} | {d['variant']} | "
                     f"{d['count']} | {auroc(s)} | {auroc(m)} | "
                     f"{pct(s['at_fpr']['0.01']['tpr'])} | {pct(s['at_fpr']['0.05']['tpr'])} |")
    return "\n".join(lines)


def adversarial_table(results):
    """The adversarial-training target: clean accuracy and PGD accuracy (unfiltered
    recovered, all attacked inputs) at the main budget and over the PGD sweep."""
    if "adversarial" not in results["models"]:
        return ""
    clean = results["models"]["adversarial"]["clean_test_set"]["accuracy"]
    lines = ["| attack | eps | n | accuracy under attack (all attacked inputs) |",
             "|---|---|---|---|", f"| none (clean test set) | | | {pct(clean)} |"]
    for e in results["evaluations"]:
        if e["setting"] == "whitebox" and e["target"] == "adversarial" and \
                e["attack"] in ("fgsm", "pgd", "square", "apgd_ce", "apgd_t"):
            lines.append(f"| {e['attack']} | {e['value']:g} | {e['num_examples']} | "
                         f"{pct(e['unfiltered']['recovered'])} |")
    fixed = (results.get("at_fixed_fpr") or {}).get("targets", {}).get("adversarial")
    for r in (fixed or {}).get("rows", []):
        if r["setting"] == "whitebox" and r["attack"] == "any":
            first = next(iter(r["at"].values()))
            lines.append(f"| any white-box attack, clean errors counted (robust accuracy) | | "
                         f"{r['num_examples']} | {pct(first['rejection_error'])} |")
    for s in results["sweeps"]:
        if s["target"] == "adversarial" and s["attack"] in ("fgsm", "pgd"):
            for p in s["points"]:
                lines.append(f"| {s['attack']} (sweep) | {p['value']:g} | {s['num_examples']} | "
                             f"{pct(p['unfiltered']['recovered'])} |")
    return "\n".join(lines)


def substitute_table(results):
    entries = index(results)
    lines = ["| surrogate | oracle queries | agreement (test minus S_0) | "
             + " | ".join(f"{a}: rec / det / mis" for a in FIGURE_1_ATTACKS + OTHER_ATTACKS)
             + " |", "|---|---|---|" + "---|" * len(FIGURE_1_ATTACKS + OTHER_ATTACKS)]
    for name, m in results["models"].items():
        if m.get("kind") != "jacobian_substitute":
            continue
        cells = [cell(entries.get(("blackbox", name, m["oracle"], a, "plain")))
                 for a in FIGURE_1_ATTACKS + OTHER_ATTACKS]
        lines.append(f"| {name} | {m['oracle_queries']} | {pct(m['agreement_test'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def threat_model(row):
    if row["setting"] == "whitebox":
        return "white-box"
    source = row["source"]
    return "black-box, any surrogate" if source == "any" else \
        f"black-box from {SURROGATE_NAMES.get(source, source)}"


def worst_case_table(results):
    """The "any attack" rows: recovered / detected / misclassified (filtered) per target and
    threat model, and misclassified over the digits every attack covered."""
    lines = ["| target | threat model | any attack: rec / det / mis | n | attacks per digit | "
             "misclassified, digits every attack covered |", "|---|---|---|---|---|---|"]
    for w in results.get("worst_case", []):
        common = w["all_attacks"]["filtered"]
        lines.append(f"| {w['target']} | {threat_model(w)} | {cell(w)} | {w['filtered']['count']} "
                     f"| {w['attacks_per_input']['min']}-{w['attacks_per_input']['max']} | "
                     f"{pct(common['misclassified'])} (n={common['count']}) |")
    return "\n".join(lines)


FPR_COLUMNS = (("0.05", "5 % false detection"), ("0.01", "1 % false detection"),
               ("argmax", "argmax rule"))


def fixed_fpr_table(results):
    """Accuracy of the detector-classifier at a fixed clean false-detection rate: per target,
    tau and clean accuracy, then the worst case over the attacks of each threat model as
    'detection counted correct / rejection counted as error' (%)."""
    targets = (results.get("at_fixed_fpr") or {}).get("targets", {})
    lines = ["| target | threat model | " + " | ".join(c for _, c in FPR_COLUMNS) + " |",
             "|---|---|" + "---|" * len(FPR_COLUMNS)]
    for target, t in targets.items():
        if t["outlier_class"] is None:
            continue
        clean = []
        for label, _ in FPR_COLUMNS:
            th = t["thresholds"][label]
            tau = "all flagged" if th["flags"] == "all" else f"tau {th['threshold']:.3g}"
            clean.append(f"{tau}: clean {pct(th['clean_accuracy'])}, "
                         f"{pct(th['false_detection'])} flagged")
        lines.append(f"| {target} | clean test set | " + " | ".join(clean) + " |")
        for r in t["rows"]:
            if r["attack"] == "any":
                cells = [f"{pct(r['at'][label]['detection_correct'])} / "
                         f"{pct(r['at'][label]['rejection_error'])}" for label, _ in FPR_COLUMNS]
                lines.append(f"| {target} | {threat_model(r)}, any attack (n={r['num_examples']})"
                             " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_table(results):
    lines = ["| stage | seconds (total, incl. crafts loaded after a restart) |", "|---|---|"]
    for stage, v in results["stage_seconds"].items():
        if isinstance(v, dict) and "seconds_total" in v:
            lines.append(f"| {stage} | {v['seconds_total']:.0f} |")
    lines.append(f"| wall (this invocation) | {results['wall_seconds']:.0f} |")
    return "\n".join(lines)


def readme_blocks(results):
    """The README's generated tables: name -> text, each between the README markers
    `<!-- NAME: python tools/readme_tables.py results/paper/results.json -->` and
    `<!-- end NAME -->`."""
    return {"figure-1": counts_line(results) + "\n\n" + rate_table(results, FIGURE_1_ATTACKS),
            "stronger-attacks": rate_table(results, OTHER_ATTACKS),
            "worst-case": worst_case_table(results),
            "fixed-fpr": fixed_fpr_table(results)}


def begin_marker(name, source="results/paper/results.json"):
    return f"<!-- {name}: python tools/readme_tables.py {source} -->"


def end_marker(name):
    return f"<!-- end {name} -->"


def update_readme(text, results, source="results/paper/results.json"):
    """`text` with every generated block present in it replaced by the one from `results`."""
    for name, body in readme_blocks(results).items():
        begin, end = begin_marker(name, source), end_marker(name)
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            text = f"{head}{begin}\n{body}\n{end}{tail}"
    return text


README_RUN = {"preset": "paper", "dataset": "mnist"}  # what the README's tables show
FORCE_FLAG = "--force_other_settings"


def fail(message):
    """Exit 1 with one line naming the tool."""
    raise SystemExit(f"tools/readme_tables.py: error: {message}")


def read_results(path):
    """The results dict of a bin/reproduce results.json; one-line exit when unusable."""
    if not os.path.exists(path):
        fail(f"{path!r}: no such file (a run directory holds results.json only once the "
             "run has finished)")
    if os.path.isdir(path):
        fail(f"{path!r} is a folder; give its results.json")
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as exc:
        fail(f"{path!r}: not valid JSON ({exc})")
    if not isinstance(results, dict) or results.get("kind", "reproduce") != "reproduce" \
            or not all(k in results for k in ("evaluations", "models", "num_examples")):
        fail(f"{path!r} is not the results.json of a bin/reproduce run (it lacks "
             "'evaluations', 'models' or 'num_examples')")
    return results


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
        updated = rendered(path, results, lambda r: update_readme(text, r, path))
        folder = os.path.dirname(os.path.abspath(readme))
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".md", dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(updated)
            shutil.copymode(readme, temporary)
            os.replace(temporary, readme)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return
    sections = rendered(path, results, lambda results: [
        ("Models", models_table(results)),
        ("Figure 1: recovered / detected / misclassified (%)", counts_line(results) + "\n\n"
         + rate_table(results, FIGURE_1_ATTACKS)),
        ("CW-Adam, Square and APGD: recovered / detected / misclassified (%)",
         rate_table(results, OTHER_ATTACKS)),
        ("CW optimiser split", cw_split_table(results)),
        ("Worst case per digit: any attack, recovered / detected / misclassified (%)",
         worst_case_table(results)),
        ("Detection (outlier class as a detector)", detection_table(results)),
        ("Accuracy at a fixed clean false-detection rate, worst case over attacks: detection "
         "counted correct / rejection counted as error (%)", fixed_fpr_table(results)),
        ("Adversarial-training target", adversarial_table(results)),
        ("Surrogate J, scored on its oracle", substitute_table(results)),
        ("Warnings", "\n".join(f"- {w}" for w in results["warnings"]) or "none"),
        ("Stage seconds", stage_table(results)),
    ])
    for title, body in sections:
        print(f"#### {title}\n\n{body}\n")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != FORCE_FLAG]
    if len(args) not in (1, 2):
        sys.exit("usage: python tools/readme_tables.py RUN_DIR/results.json [README.md] "
                 f"[{FORCE_FLAG}]\n  with README.md: rewrite its generated tables in place")
    main(*args, force_other_settings=FORCE_FLAG in sys.argv[1:])
