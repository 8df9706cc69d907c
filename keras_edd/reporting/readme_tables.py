"""The README's result tables, rendered from a bin/reproduce run's typed results.

`readme_blocks(results)` gives the generated blocks of README.md (Figure 1, the stronger
attacks, the worst case, the accuracy at a fixed false-detection rate, and AutoAttack's
standard evaluation when the run has it), each between the
markers `<!-- NAME: python tools/readme_tables.py results/paper/results.json -->` and
`<!-- end NAME -->`; `update_readme(text, results)` replaces them in a README's text;
`all_tables(results)` adds the tables the README quotes in prose (models, CW optimiser
split, detection, the adversarial-training target, surrogate J, warnings, stage seconds).
Rates are the filtered ones (inputs the target classifies correctly when clean), in
percent; [low, high] is a rate's 95 % Wilson interval over its n (the attack tables give
it for the misclassified rate, the attacker's success). tools/readme_tables.py is the command line. Reads `Results`
(keras_edd.results_schema); no TensorFlow.
"""

from keras_edd.formatting import inputs_attacked, percent, percent_interval
from keras_edd.reporting.robustness_tables import standard_table
from keras_edd.results_schema import as_results

FIGURE_1_ATTACKS = ("fgsm", "jsma", "cw", "pgd")
OTHER_ATTACKS = ("cw_adam", "square", "apgd_ce", "apgd_t")
PAPER_TARGETS = ("undefended", "extended", "distillation")
SURROGATE_NAMES = {"surrogate_U": "U", "surrogate_D": "D"}
DEFAULT_SOURCE = "results/paper/results.json"


def cell(rates):
    """'recovered / detected / misclassified [low, high]' (%) of filtered OutcomeRates, with
    the 95 % Wilson interval of misclassified; '' for None."""
    if rates is None:
        return ""
    return (f"{percent(rates.recovered)} / {percent(rates.detected)} / "
            f"{rate_text(rates, 'misclassified')}")


def rate_text(rates, name):
    """'30.5 [27.7, 33.5]': the rate `name` of `rates` and its 95 % Wilson interval (%)."""
    return percent_interval(rates.rate(name), rates.interval(name))


def index(results):
    """(setting, source, target, attack, variant) -> Evaluation."""
    return {(e.setting, e.source, e.target, e.attack, e.variant): e for e in results.evaluations}


def _filtered(entry):
    return None if entry is None else entry.filtered


def attack_header(attack, entries):
    """e.g. 'fgsm eps=0.2' from the first entry of that attack."""
    e = next((e for e in entries.values() if e.attack == attack), None)
    if e is None:
        return attack
    return f"{attack} {e.parameter}={e.value:g}"


def rows_of(results):
    """(label, setting, source, target, variant) in the order of the paper's Figure 1."""
    models = results.models
    rows = []
    for target in PAPER_TARGETS:
        variants = ("plain", "adaptive") if models[target].outlier_class is not None \
            else ("plain",)
        for variant in variants:
            rows.append((f"{target} | itself{', adaptive' if variant == 'adaptive' else ''} "
                         "(white-box)", "whitebox", target, target, variant))
    for source, short in SURROGATE_NAMES.items():
        variants = ("plain", "adaptive") if models[source].outlier_class is not None \
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
        cells = [cell(_filtered(entries.get((setting, source, target, a, variant))))
                 for a in present]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def counts_line(results):
    return f"Inputs attacked per attack: {inputs_attacked(results.num_examples)}."


def models_table(results):
    lines = ["| model | defense | T | clean accuracy (test set) | clean detected | "
             "training seconds |", "|---|---|---|---|---|---|"]
    order = ("undefended", "extended", "distillation", "adversarial", "surrogate_U",
             "surrogate_D")
    training = results.get("training", {})
    for role in sorted(training, key=lambda r: order.index(r) if r in order else 99):
        t = training[role]
        m = results.models[role].clean_test_set
        lines.append(f"| {role} | {t['defense']} | {t['temperature']:g} | "
                     f"{percent_interval(m.accuracy, m.interval('recovered'), 2)} | "
                     f"{percent(m.detected, 2)} | "
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
            f = x.filtered
            return (f"{rate_text(f, 'misclassified')} / {rate_text(f, 'attack_failed')} "
                    f"(n={f.count})")
        lines.append(f"| {target} | {source} | {variant} | {two(e)} | {two(adam)} |")
    return "\n".join(lines)


def auroc(score):
    """AUROC to 3 decimals; n/a when there was nothing to detect (no positives)."""
    return "n/a" if score.get("auroc") is None else f"{score['auroc']:.3f}"


def detection_table(results):
    lines = ["| attack | setting | source | variant | n | AUROC softmax | AUROC margin | "
             "TPR at 1 % FPR | TPR at 5 % FPR |", "|---|---|---|---|---|---|---|---|---|"]
    for d in results.get("detection")["entries"]:
        s, m = d["softmax"], d["margin"]
        lines.append(f"| {d['attack']} | {d['setting']} | {d['source']} | {d['variant']} | "
                     f"{d['count']} | {auroc(s)} | {auroc(m)} | "
                     f"{percent(s['at_fpr']['0.01']['tpr'])} | "
                     f"{percent(s['at_fpr']['0.05']['tpr'])} |")
    return "\n".join(lines)


def adversarial_table(results):
    """The adversarial-training target: clean accuracy and PGD accuracy (unfiltered
    recovered, all attacked inputs) at the main budget and over the PGD sweep."""
    if "adversarial" not in results.models:
        return ""
    clean = results.models["adversarial"].clean_test_set
    lines = ["| attack | eps | n | accuracy under attack (all attacked inputs) |",
             "|---|---|---|---|",
             f"| none (clean test set) | | | {rate_text(clean, 'recovered')} |"]
    for e in results.evaluations:
        if e.setting == "whitebox" and e.target == "adversarial" and \
                e.attack in ("fgsm", "pgd", "square", "apgd_ce", "apgd_t"):
            lines.append(f"| {e.attack} | {e.value:g} | {e.num_examples} | "
                         f"{rate_text(e.unfiltered, 'recovered')} |")
    fixed = results.at_fixed_fpr.targets.get("adversarial") if results.at_fixed_fpr else None
    for r in fixed.rows if fixed else ():
        if r.setting == "whitebox" and r.attack == "any":
            first = next(iter(r.at.values()))
            lines.append(f"| any white-box attack, clean errors counted (robust accuracy) | | "
                         f"{r.num_examples} | {rate_text(first, 'rejection_error')} |")
    for s in results.sweeps:
        if s.target == "adversarial" and s.attack in ("fgsm", "pgd"):
            for p in s.points:
                lines.append(f"| {s.attack} (sweep) | {p.value:g} | {s.num_examples} | "
                             f"{rate_text(p.unfiltered, 'recovered')} |")
    return "\n".join(lines)


def substitute_table(results):
    entries = index(results)
    attacks = FIGURE_1_ATTACKS + OTHER_ATTACKS
    lines = ["| surrogate | oracle queries | agreement (test minus S_0) | "
             + " | ".join(f"{a}: rec / det / mis" for a in attacks)
             + " |", "|---|---|---|" + "---|" * len(attacks)]
    for name, m in results.models.items():
        if m.get("kind") != "jacobian_substitute":
            continue
        cells = [cell(_filtered(entries.get(("blackbox", name, m.get("oracle"), a, "plain"))))
                 for a in attacks]
        lines.append(f"| {name} | {m.get('oracle_queries')} | "
                     f"{percent(m.get('agreement_test'))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def threat_model(setting, source):
    if setting == "whitebox":
        return "white-box"
    return "black-box, any surrogate" if source == "any" else \
        f"black-box from {SURROGATE_NAMES.get(source, source)}"


def worst_case_table(results):
    """The "any attack" rows: recovered / detected / misclassified (filtered) per target and
    threat model, and misclassified over the digits every attack covered."""
    lines = ["| target | threat model | any attack: rec / det / mis | n | attacks per digit | "
             "misclassified, digits every attack covered |", "|---|---|---|---|---|---|"]
    for w in results.worst_case:
        common = w.common["filtered"]
        lines.append(f"| {w.target} | {threat_model(w.setting, w.source)} | {cell(w.filtered)} "
                     f"| {w.filtered.count} "
                     f"| {w.attacks_per_input['min']}-{w.attacks_per_input['max']} | "
                     f"{rate_text(common, 'misclassified')} (n={common.count}) |")
    return "\n".join(lines)


FPR_COLUMNS = (("0.05", "5 % false detection"), ("0.01", "1 % false detection"),
               ("argmax", "argmax rule"))


def fixed_fpr_table(results):
    """Accuracy of the detector-classifier at a fixed clean false-detection rate: per target,
    tau and clean accuracy, then the worst case over the attacks of each threat model as
    'detection counted correct / rejection counted as error' (%)."""
    targets = results.at_fixed_fpr.targets if results.at_fixed_fpr else {}
    lines = ["| target | threat model | " + " | ".join(c for _, c in FPR_COLUMNS) + " |",
             "|---|---|" + "---|" * len(FPR_COLUMNS)]
    for target, t in targets.items():
        if t.outlier_class is None:
            continue
        clean = []
        for label, _ in FPR_COLUMNS:
            th = t.thresholds[label]
            tau = "all flagged" if th.flags == "all" else f"tau {th.threshold:.3g}"
            clean.append(f"{tau}: clean {rate_text(th, 'clean_accuracy')}, "
                         f"{percent(th.false_detection)} flagged")
        lines.append(f"| {target} | clean test set | " + " | ".join(clean) + " |")
        for r in t.rows:
            if r.attack == "any":
                cells = [f"{rate_text(r.at[label], 'detection_correct')} / "
                         f"{rate_text(r.at[label], 'rejection_error')}"
                         for label, _ in FPR_COLUMNS]
                lines.append(f"| {target} | {threat_model(r.setting, r.source)}, any attack "
                             f"(n={r.num_examples}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_table(results):
    lines = ["| stage | seconds (total, incl. crafts loaded after a restart) |", "|---|---|"]
    for stage, v in results.get("stage_seconds", {}).items():
        if isinstance(v, dict) and "seconds_total" in v:
            lines.append(f"| {stage} | {v['seconds_total']:.0f} |")
    lines.append(f"| wall (this invocation) | {results.get('wall_seconds'):.0f} |")
    return "\n".join(lines)


def readme_blocks(results):
    """The README's generated tables: name -> text (see the module docstring)."""
    results = as_results(results)
    blocks = {"figure-1": counts_line(results) + "\n\n" + rate_table(results, FIGURE_1_ATTACKS),
              "stronger-attacks": rate_table(results, OTHER_ATTACKS),
              "worst-case": worst_case_table(results),
              "fixed-fpr": fixed_fpr_table(results)}
    if results.standard:  # a run made before the standard evaluation existed has no block
        blocks["standard"] = standard_table(results)
    return blocks


def all_tables(results):
    """(title, markdown) of every table the README shows or quotes."""
    results = as_results(results)
    return [
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
        ("AutoAttack's standard evaluation: robust accuracy (%)", standard_table(results)),
        ("Surrogate J, scored on its oracle", substitute_table(results)),
        ("Warnings", "\n".join(f"- {w}" for w in results.warnings) or "none"),
        ("Stage seconds", stage_table(results)),
    ]


def begin_marker(name, source=DEFAULT_SOURCE, tool="tools/readme_tables.py"):
    """The line opening a generated block: its name and the command that makes it."""
    return f"<!-- {name}: python {tool} {source} -->"


def end_marker(name):
    return f"<!-- end {name} -->"


def update_readme(text, results, source=DEFAULT_SOURCE, blocks=None,
                  tool="tools/readme_tables.py"):
    """`text` with every generated block present in it replaced by the one from `results`
    (`blocks`: the name -> text to use, readme_blocks(results) by default)."""
    for name, body in (readme_blocks(results) if blocks is None else blocks).items():
        begin, end = begin_marker(name, source, tool), end_marker(name)
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            text = f"{head}{begin}\n{body}\n{end}{tail}"
    return text
