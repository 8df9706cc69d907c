"""report.md: an evaluation's results as Markdown tables.

`markdown_report(results)` gives the text. It opens with a summary of at most about 40
lines (`summary_markdown`): per target its clean accuracy and the Figure-1 attacks'
recovered / detected / misclassified, the worst case per target, the detector at 5 %
clean false detection, the masking warnings counted and a verdict computed from the
numbers. Then the details: settings, the filter statement, warnings, the models, surrogate J, clean inputs, white-box and black-box rates,
budget sweeps, the worst case per digit over attacks, detection by the outlier
class, accuracy at a fixed clean false-detection rate, AutoAttack's standard evaluation
and the robustness curves (keras_edd.reporting.robustness_tables), timing and versions. A
--preset=quick run opens with a banner (`quick_banner`); `quick_note` is the same
mark for the figures' titles. keras_edd.reporting.results_files writes the file.
"""

from keras_edd.formatting import (format_params, inputs_attacked, num, pct, percent,
                                  percent_interval)
from keras_edd import stats
from keras_edd.reporting.robustness_tables import (TARGET_ORDER, budget, curve_lines,
                                                   standard_lines, standard_table)
from keras_edd.results_schema import as_results


def quick_note(results):
    """The mark of a --preset=quick run, for report.md's banner and the figures' titles;
    None for any other run. `results`: a Results or its dict."""
    if (results.get("settings") or {}).get("preset") != "quick":
        return None
    return "--preset=quick: illustrative numbers from a tiny demo budget, not the paper's"


def quick_banner(results):
    """report.md's first lines for a --preset=quick run (none otherwise)."""
    if quick_note(results) is None:
        return []
    ds = results.get("dataset", {})
    attacked = inputs_attacked(as_results(results).num_examples)
    return [f"> **ILLUSTRATIVE RESULTS ONLY.** This run used `--preset=quick`, a tiny demo "
            f"budget ({ds.get('train_size')} training and {ds.get('test_size')} test images, a "
            f"few epochs, inputs attacked per attack: {attacked or 'n/a'}). Its numbers show "
            "that the pipeline runs; they are not the paper's results and are not comparable "
            "to them. Run `--preset=paper` for those.", ""]


def rate(rates, name):
    """'30.5 % [27.7, 33.5]': the rate `name` of `rates` (a keras_edd.results_schema object)
    with its 95 % Wilson interval over the object's count."""
    return percent_interval(rates.rate(name), rates.interval(name), unit=" %")


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(results):
    """report.md's text: settings, filter, clean / white-box / black-box / sweep tables.
    `results`: a Results (keras_edd.results_schema) or its dict."""
    results = as_results(results)
    ds = results.get("dataset", {})
    out = quick_banner(results)
    out += [f"# keras_edd evaluation: {results.kind}", ""]
    out += summary_markdown(results)
    out += ["## Setting", ""]
    out.append(f"Dataset **{ds.get('name')}** ({ds.get('source')}): {ds.get('train_size')} "
               f"train / {ds.get('test_size')} test, {ds.get('num_classes')} classes. "
               f"Inputs attacked per attack: {inputs_attacked(results.num_examples)}.")
    out += ["", results.get("filter", ""), "",
            "Every rate is given with its 95 % Wilson score interval in brackets (percent), "
            "over the n of its table.", ""]
    if results.warnings:
        out += ["## Warnings", ""] + [f"- {w}" for w in results.warnings] + [""]
    if results.get("training"):
        out += ["## Models", "", "Clean rates on the test set (n in the clean-inputs table).",
                "", _table(
            ["role", "defense", "T", "seed", "clean acc.", "clean detected", "reused", "run"],
            [[role, t["defense"], f"{t['temperature']:g}", t["seed"],
              *([rate(results.models[role].clean_test_set, "recovered"),
                 rate(results.models[role].clean_test_set, "detected")]
                if role in results.models else
                [pct(t["clean_test_accuracy"]), pct(t.get("clean_test_detected"))]),
              "yes" if t["reused"] else "no", t["run_name"]]
             for role, t in results.get("training").items()]), ""]
    out += _substitute_markdown(results.models)
    out += ["## Clean inputs", "", _table(
        ["model", "role", "outputs", "n (test set / attacked)", "accuracy (test set)",
         "detected = false alarms", "accuracy (attacked inputs)", "zero-gradient fraction",
         "logits?", "deterministic?"],
        [[name, m.role, m.outputs, f"{m.clean_test_set.count} / {m.clean_attacked.count}",
          rate(m.clean_test_set, "recovered"), rate(m.clean_test_set, "detected"),
          rate(m.clean_attacked, "recovered"),
          f"{m.checks['zero_gradient_fraction']:.3f}"
          + (f" / adaptive {m.checks['zero_gradient_fraction_adaptive']:.3f}"
             if "zero_gradient_fraction_adaptive" in m.checks else ""),
          "no" if m.checks["probabilities"] else "yes",
          "no" if m.checks["stochastic"] else "yes"]
         for name, m in results.models.items()]), ""]
    for setting, title in (("whitebox", "White-box attacks"),
                           ("blackbox", "Black-box transfer attacks")):
        entries = [e for e in results.evaluations if e.setting == setting]
        if not entries:
            continue
        out += [f"## {title}", "",
                "Filtered rates (unfiltered in results.csv / results.json). attack failed = "
                "the attack found no example meeting its own success criterion on the model "
                "it ran on (part of 'recovered' is the attack giving up).", "", _table(
                    ["target", "source", "attack", "variant", "settings", "n (filtered / all)",
                     "recovered", "detected", "misclassified", "attack failed", "mean L2",
                     "seconds"],
                    [[e.target, e.source, e.attack, e.variant, format_params(e.params),
                      f"{e.filtered.count} / {e.num_examples}",
                      *(rate(e.filtered, k) for k in ("recovered", "detected", "misclassified",
                                                      "attack_failed")),
                      f"{e.norms['mean_l2']:.3f}", f"{e.attack_seconds:.1f}"]
                     for e in entries]), ""]
    if results.sweeps:
        out += ["## Budget sweeps (gradient-masking check)", "",
                "success = 1 - recovered on correctly classified inputs (n of them); a sweep "
                "whose best success stays below the threshold is flagged.", "", _table(
                    ["target", "attack", "variant", "n", "budget", "success per budget",
                     "max success", "flag"],
                    [[s.target, s.attack, s.variant, s.num_examples, s.parameter,
                      ", ".join(f"{p.value:g}: "
                                f"{percent_interval(p.success, _success_interval(p), unit=' %')}"
                                for p in s.points),
                      percent_interval(s.max_success, stats.interval_of(s.max_success,
                                                                s.max_success_count), unit=" %"),
                      {True: "**possible masking**", False: "ok", None: "unchecked"}[
                          s.masking_suspected]] for s in results.sweeps]), ""]
    out += _worst_case_markdown(results.worst_case)
    out += _detection_markdown(results.get("detection"))
    out += _fixed_fpr_markdown(results.at_fixed_fpr)
    out += _standard_markdown(results)
    stages = results.get("stage_seconds", {})
    crafts = results.get("crafts", {})
    out += ["## Timing and versions", "",
            f"Wall time {results.get('wall_seconds', 0):.1f} s; per stage, seconds in this run "
            "(with crafts loaded from an interrupted run, at their recorded seconds): "
            + ", ".join(f"{k} {v['seconds_here']:.1f} s ({v['seconds_total']:.1f} s)"
                        for k, v in sorted(stages.items())) + ". Crafts: "
            + ", ".join(f"{v} {k}" for k, v in crafts.items()) + ".", "",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items()),
            "", "Files: " + ", ".join(results.get("files", [])), ""]
    return "\n".join(out)


def _success_interval(point):
    """The interval of a sweep point's success (1 - recovered) over its filtered inputs."""
    return stats.interval_of(point.success, point.filtered.count)


# The paper's Figure-1 attacks and targets, in its order; other targets follow by name.
FIGURE_1_ATTACKS = ("fgsm", "jsma", "cw", "pgd")
WORST_ALPHA = "0.05"  # the detector's operating point in the summary: 5 % clean false detection


def _targets(results):
    names = [name for name, m in results.models.items() if m.role == "target"]
    return sorted(names, key=lambda n: (TARGET_ORDER.index(n) if n in TARGET_ORDER
                                        else len(TARGET_ORDER), n))


def _worst(results, target, setting, source):
    return next((w for w in results.worst_case if w.target == target
                 and w.setting == setting and w.source == source), None)


def summary_markdown(results):
    """report.md's opening summary (at most about 40 lines), computed from `results`: the
    headline table, the worst case per target, the detector at 5 % clean false detection,
    the masking warnings counted and a one-sentence verdict."""
    targets = _targets(results)
    entries = {(e.target, e.attack, e.variant): e for e in results.evaluations
               if e.setting == "whitebox"}
    attacks = [a for a in FIGURE_1_ATTACKS if any(k[1] == a for k in entries)]
    out = ["## Summary", "",
           "White-box attacks on each target, filtered rates recovered / detected / "
           "misclassified in %, [95 % Wilson interval] of misclassified; n = the attacked "
           "digits the target classifies correctly when clean.", ""]
    header = ["target", "variant", "clean accuracy (test set)"] + [
        f"{a} {next(e for k, e in entries.items() if k[1] == a).parameter}="
        f"{next(e for k, e in entries.items() if k[1] == a).value:g}" for a in attacks]
    rows = []
    for target in targets:
        model = results.models[target]
        for variant in ("plain", "adaptive") if model.outlier_class is not None else ("plain",):
            cells = []
            for attack in attacks:
                e = entries.get((target, attack, variant))
                cells.append("" if e is None else
                             f"{percent(e.filtered.recovered)} / {percent(e.filtered.detected)} / "
                             f"{_in_percent(e.filtered, 'misclassified')} (n={e.filtered.count})")
            clean = (f"{_in_percent(model.clean_test_set, 'recovered')} "
                     f"(n={model.clean_test_set.count})") if variant == "plain" else ""
            rows.append([target, variant, clean] + cells)
    out += [_table(header, rows), ""]
    columns = [(setting, title) for setting, title in (
        ("whitebox", "white-box, any attack"), ("blackbox", "black-box, any surrogate and attack"))
        if any(w.setting == setting for w in results.worst_case)]
    worst_rows = []
    for target in targets:
        cells = []
        for setting, _ in columns:
            w = _worst(results, target, setting, target if setting == "whitebox" else "any")
            cells.append("" if w is None else
                         f"{rate(w.filtered, 'misclassified')} (n={w.filtered.count})")
        if any(cells):
            worst_rows.append([target] + cells)
    if worst_rows:
        out += ["Worst case per digit over every attack (misclassified, filtered):", "",
                _table(["target"] + [title for _, title in columns], worst_rows), ""]
    out += _detector_summary(results, targets)
    if results.standard:
        out += [f"AutoAttack's standard evaluation (APGD-CE, APGD-T, FAB-T, Square; robust "
                "accuracy = correct when clean and after every attack, [95 % Wilson "
                "interval]):", ""] + standard_lines(results) + [""]
    masking = [w for w in results.warnings if "mask" in w]  # masking, masked
    out += [f"Warnings: {len(masking)} of possible gradient masking, "
            f"{len(results.warnings) - len(masking)} other (listed under Warnings below).", ""]
    verdict = _verdict(results, targets)
    if verdict:
        out += [verdict, ""]
    return out


def _in_percent(rates, name):
    """'30.5 [27.7, 33.5]': as `rate`, in a table that says its unit."""
    return percent_interval(rates.rate(name), rates.interval(name))


def _detector_summary(results, targets):
    """One line per target with an outlier class: tau at 5 % clean false detection, its
    clean accuracy and the worst white-box accuracy there."""
    fixed = results.at_fixed_fpr.targets if results.at_fixed_fpr else {}
    lines = []
    for target in targets:
        t = fixed.get(target)
        if t is None or t.outlier_class is None or WORST_ALPHA not in t.thresholds:
            continue
        th = t.thresholds[WORST_ALPHA]
        row = next((r for r in t.rows if r.setting == "whitebox" and r.attack == "any"), None)
        text = (f"- {target}: tau {num(th.threshold, 3)} flags {rate(th, 'false_detection')} of "
                f"the clean test set (n={th.count}), clean accuracy "
                f"{rate(th, 'clean_accuracy')}")
        if row is not None:
            at = row.at[WORST_ALPHA]
            text += (f"; worst white-box attack: accuracy {rate(at, 'detection_correct')} "
                     f"counting a detection as correct, {rate(at, 'rejection_error')} "
                     f"counting it as an error (n={at.count})")
        lines.append(text + ".")
    if not lines:
        return []
    return ["The outlier class as a detector at 5 % clean false detection (at_fixed_fpr):",
            ""] + lines + [""]


def _verdict(results, targets):
    """One sentence from the numbers: the worst white-box misclassification of the defended
    model (a target with an outlier class, else any target but the undefended one)."""
    defended = [t for t in targets if results.models[t].outlier_class is not None] or \
        [t for t in targets if t != "undefended"]
    worst = [(t, _worst(results, t, "whitebox", t)) for t in defended]
    worst = [(t, w) for t, w in worst if w is not None and w.filtered.count]
    if not worst:
        return None
    target, w = max(worst, key=lambda tw: tw[1].filtered.misclassified)
    low, high = w.filtered.interval("misclassified")
    judgement = ("the defense does not hold against an attacker who knows it"
                 if low > 0.5 else "the defense holds against the attacks run"
                 if high < 0.05 else "the defense holds only in part")
    return (f"**Verdict:** under its worst white-box attack the defended model {target} "
            f"misclassifies {rate(w.filtered, 'misclassified')} of the {w.filtered.count} "
            f"digits it classifies correctly when clean: {judgement}.")


def _substitute_markdown(models):
    """report.md lines on each surrogate J: its oracle, queries and agreement."""
    rows = []
    for name, model in models.items():
        if model.get("kind") != "jacobian_substitute":
            continue
        m = model.rest  # surrogate J's record: keras_edd.runs.substitute_run.describe
        s = m["settings"]
        indices = m["initial_test_indices"]
        rows.append([name, m["oracle"], f"{indices[0]}..{indices[-1]}", s["rounds"],
                     f"{s['lam']:g}", "constant" if s["tau"] is None else s["tau"],
                     m["oracle_queries"],
                     "n/a" if m["outlier_answers"] is None else m["outlier_answers"],
                     percent_interval(m["agreement_attacked"], stats.interval_of(
                         m["agreement_attacked"], model.clean_attacked.count), unit=" %"),
                     percent_interval(m["agreement_test"], stats.interval_of(
                         m["agreement_test"], m.get("agreement_test_count")), unit=" %"),
                     f"{m['training_seconds']:.1f}", "yes" if m["reused"] else "no"])
    if not rows:
        return []
    return ["## Surrogate J (Jacobian-augmented substitute)", "",
            "Trained against one target (its oracle) from that target's labels only, starting "
            "from S_0 = the test inputs shown (never attacked); its black-box attacks are scored "
            "on that target alone. Agreement = fraction of inputs where J's and the target's "
            "labels agree, on the attacked inputs and on the test set minus S_0.", "",
            _table(["surrogate", "oracle", "S_0 (test indices)", "rounds", "lambda", "tau",
                    "oracle queries", "outlier answers", "agreement (attacked)",
                    "agreement (test minus S_0)", "training seconds", "reused"], rows), ""]


def threat_model(setting, target, source):
    """'white-box', 'black-box from surrogate_U' or 'black-box from any surrogate'."""
    if setting == "whitebox":
        return "white-box"
    return f"black-box from {'any surrogate' if source == 'any' else source}"


def _worst_case_markdown(rows):
    """report.md lines of the "any attack" rows (keras_edd.evaluation.worst_case)."""
    if not rows:
        return []
    table = []
    for w in rows:
        f, common = w.filtered, w.common["filtered"]
        table.append([w.target, threat_model(w.setting, w.target, w.source),
                      f"{f.count} / {w.num_examples}",
                      f"{w.attacks_per_input['min']}-{w.attacks_per_input['max']}",
                      rate(f, "recovered"), rate(f, "detected"), rate(f, "misclassified"),
                      f"{rate(common, 'misclassified')} (n={common.count})",
                      ", ".join(w.attacks)])
    return ["## Worst case per digit (any attack)", "",
            "A digit is misclassified if any attack of the threat model misclassified it "
            "undetected, detected if none did but one was detected, else recovered; filtered "
            "rates. Attacks cover different numbers of digits; the last rate is over the "
            "digits every attack covered.", "",
            _table(["target", "threat model", "n (filtered / all)", "attacks per digit",
                    "recovered", "detected", "misclassified", "misclassified, every attack",
                    "attacks"], table), ""]


def _fixed_fpr_markdown(fixed):
    """report.md lines of the accuracy at a fixed clean false-detection rate."""
    if not fixed or not fixed.targets:
        return []
    thresholds, table = [], []
    for target, t in fixed.targets.items():
        detector = t.outlier_class is not None
        labels = list(t.thresholds) if detector else list(t.thresholds)[:1]
        for label in labels if detector else ():
            th = t.thresholds[label]
            thresholds.append([target, label, num(th.threshold, 4) if th.flags == "some"
                               else f"({th.flags} flagged)", th.count,
                               rate(th, "false_detection"), rate(th, "clean_accuracy")])
        for r in t.rows:
            if detector:
                cell = " · ".join(f"{label}: {rate(r.at[label], 'detection_correct')} / "
                                  f"{rate(r.at[label], 'rejection_error')}" for label in labels)
            else:
                cell = f"no detector: {rate(r.at[labels[0]], 'rejection_error')}"
            table.append([target, threat_model(r.setting, target, r.source),
                          r.attack, r.variant, r.num_examples, cell])
    return ["## Accuracy at a fixed clean false-detection rate", "",
            f"Score {fixed.score}; {fixed.threshold_rule} (alpha 0.05 and 0.01; "
            "'argmax' is the deployed rule, tau = 0). Accuracy over all attacked digits, as "
            "'detection counted correct / rejection counted as error'; models without an "
            "outlier class flag nothing (robust accuracy). "
            f"{fixed.clean_candidate.capitalize()} (a clean error counts against the "
            "defense). The attacks aimed at the argmax rule, not at tau.", "",
            _table(["target", "chosen at", "tau", "n (test set)", "clean false detection",
                    "clean accuracy"], thresholds), "",
            _table(["target", "threat model", "attack", "variant", "n",
                    "accuracy at tau (detection correct / rejection error)"], table), ""]


def _standard_markdown(results):
    """report.md's sections on AutoAttack's standard evaluation and the robustness curves
    (none when the run has neither)."""
    out = []
    if results.standard:
        first = next(iter(results.standard.values()))
        out += ["## AutoAttack's standard evaluation", "",
                f"keras_edd.evaluate(attacks=\"standard\") on the first test digits "
                f"({budget(first)}): the attacks aim at the true label and run in this order "
                "on the digits still robust; a digit is robust when it is classified "
                "correctly when clean and after every attack. 'after' columns: robust "
                "accuracy after the attacks up to that one. A model with an outlier class "
                "faces the adaptive attacks (only a real class other than the true one "
                "wins), and is also read as a detector at a threshold chosen for 5 % clean "
                "false detection (the attacks aim at that threshold). In %, [95 % Wilson "
                "interval].", "", standard_table(results), ""]
    if results.robustness_curves:
        out += ["## Robustness curves (robustness.png)", "",
                "Per digit eps* = the smallest L∞ perturbation FAB or FAB-T found that "
                "changes the decision (an upper bound of the true one); robust accuracy at "
                "eps = the digits with eps* > eps (an upper bound). The median eps* is the "
                "smallest eps at which at most half of the digits stay robust.", ""]
        out += curve_lines(results) + [""]
    return out


def _detection_markdown(detection):
    """report.md lines of the detection section (none without an outlier-class target)."""
    if not detection or not detection.get("targets"):
        return []
    out = ["## Detection by the outlier class (roc.png)", "",
           f"Scores: softmax = {detection['scores']['softmax']}, margin = "
           f"{detection['scores']['margin']}. Positives: {detection['positives']}; negatives: "
           f"{detection['negatives']}. Threshold: {detection['threshold_rule']}. TPR = true "
           "detection rate of the adversarial inputs (failed attacks included).", ""]
    rows = []
    for e in detection["entries"]:
        row = [e["target"], e["source"] if e["setting"] == "blackbox" else "(white-box)",
               e["attack"], e["variant"], e["count"]]
        for score in ("softmax", "margin"):
            d = e[score]
            row += [num(d["auroc"])] + [
                percent_interval(d["at_fpr"][a]["tpr"], stats.interval_of(d["at_fpr"][a]["tpr"],
                                                                  e["count"]), unit=" %")
                for a in ("0.01", "0.05")]
        rows.append(row)
    out += [_table(["target", "source", "attack", "variant", "n", "AUROC (softmax)",
                    "TPR @ 1 % FPR", "TPR @ 5 % FPR", "AUROC (margin)", "TPR @ 1 % FPR",
                    "TPR @ 5 % FPR"], rows), ""]
    rows = []
    for name, t in detection["targets"].items():
        for score, d in t["scores"].items():
            for label, point in d["at_threshold"].items():
                rows.append([name, score, label, num(point["threshold"], 4), t["num_examples"],
                             *(percent_interval(point[k], stats.interval_of(point[k], t["num_examples"]),
                                                unit=" %") for k in ("clean_accuracy",
                                                                      "flagged"))])
    out += ["Clean accuracy against the threshold, over all attacked clean inputs (correct = "
            "not flagged and the real-class argmax is the true class; 'fpr a': the threshold "
            "flagging at most a of them; curve in results.json):", "",
            _table(["target", "score", "threshold chosen at", "threshold", "n",
                    "clean accuracy", "clean flagged"], rows), ""]
    return out
