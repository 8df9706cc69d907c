"""The worst case per digit over attacks, and accuracy at a fixed clean false-detection rate.

Two readings of an evaluation that a single attack's rates do not give.

`worst_case_rows` (results["worst_case"]): the "any attack" row of each target and
threat model, as AutoAttack reports it. A digit counts as misclassified if any
attack of that threat model misclassified it undetected, as detected if none did
but one was detected, else as recovered (keras_edd.evaluation.metrics.worst_case). Threat
models per target: white-box (every attack and variant computed on the target
itself), black-box per surrogate, and black-box from any surrogate. Attacks cover
different numbers of digits (slow attacks are capped), so each row also says how
many attacks each digit saw (`attacks_per_input`) and gives the rates over the
digits that every attack covered (`all_attacks`).

`fixed_fpr_results` (results["at_fixed_fpr"]): the outlier class as a detector at a
threshold that keeps clean false detection at a fixed rate (Tramer, Carlini,
Brendel & Madry 2020). On the margin score m(x) = z_n - max_{i<n} z_i
(keras_edd.evaluation.detection; the deployed argmax rule is tau = 0), tau is chosen on the
clean test set (all its digits) so that at most a fraction alpha of them are
flagged (m > tau), for alpha in FALSE_DETECTION_TARGETS. At tau, per attack and
for the worst case over the attacks of a threat model, the accuracy of the
detector-classifier over the attacked digits, both ways
(keras_edd.evaluation.detection.worst_case_at_threshold):
  detection_correct  a flagged adversarial digit counts as correct (the defense
                     refused it): the robust accuracy of a detection defense;
  rejection_error    a flagged digit counts as an error: plain robust accuracy.
The attacker may also submit the clean digit itself (distance 0), so a digit that
is wrong or falsely flagged when clean counts against the defense (as AutoAttack
counts a clean error as a robust error). Models without an outlier class get the
same rows with nothing flagged (both readings equal: robust accuracy). The
attacks aimed at the argmax rule (tau = 0), not at tau: a lower tau flags
adversarial digits that sit just past the boundary, which an attack aware of tau
would push further; read a gain over tau = 0 with that in mind.
Pure numpy.
"""

import numpy as np

from keras_edd.evaluation import detection, metrics

FALSE_DETECTION_TARGETS = (0.05, 0.01)
ANY_ATTACK = "any"
ANY_SURROGATE = "any"


def _real_predictions(logits, outlier_class):
    """The real-class argmax (the outlier logit ignored)."""
    logits = np.asarray(logits)
    if outlier_class is None:
        return logits.argmax(axis=1)
    return np.delete(logits, outlier_class, axis=1).argmax(axis=1)


def threat_models(keys, target):
    """[(setting, source, [keys])] of one target's scored crafts: white-box, black-box per
    surrogate and, with several surrogates, black-box from any of them.

    keys: (setting, target, source, attack, variant) of the main (not sweep) entries.
    """
    mine = [k for k in keys if k[1] == target]
    groups = [("whitebox", target, [k for k in mine if k[0] == "whitebox"])]
    sources = list(dict.fromkeys(k[2] for k in mine if k[0] == "blackbox"))
    groups += [("blackbox", s, [k for k in mine if k[0] == "blackbox" and k[2] == s])
               for s in sources]
    if len(sources) > 1:
        groups.append(("blackbox", ANY_SURROGATE, [k for k in mine if k[0] == "blackbox"]))
    return [g for g in groups if g[2]]


def worst_case_rows(targets, clean_logits, labels, adversarial_logits):
    """results["worst_case"]: one "any attack" row per target and threat model.

    targets: the scored models (`name`, `outlier_class`); clean_logits: name -> logits
    of the attacked test inputs (at least as many as any craft); labels: their true
    classes; adversarial_logits: (setting, target, source, attack, variant) ->
    (logits of the target on that craft, number of inputs).
    """
    labels = np.asarray(labels)
    rows = []
    for spec in targets:
        clean = np.asarray(clean_logits[spec.name]).argmax(axis=1)
        for setting, source, keys in threat_models(list(adversarial_logits), spec.name):
            codes = [metrics.outcome_codes(np.asarray(adversarial_logits[k][0]).argmax(axis=1),
                                           labels, outlier_class=spec.outlier_class)
                     for k in keys]
            row = metrics.worst_case_rates(codes, clean, labels)
            common = min(c.size for c in codes)
            shared = metrics.worst_case_rates([c[:common] for c in codes], clean, labels)
            rows.append({"setting": setting, "target": spec.name, "source": source,
                         "attack": ANY_ATTACK, "variant": ANY_ATTACK,
                         "attacks": [f"{k[3]} ({k[4]})" + ("" if source != ANY_SURROGATE
                                                            else f" from {k[2]}")
                                     for k in keys],
                         **row, "all_attacks": {"num_examples": common,
                                                "filtered": shared["filtered"],
                                                "unfiltered": shared["unfiltered"]}})
    return rows


def fixed_fpr_results(targets, test_logits, test_labels, clean_logits, labels,
                      adversarial_logits, alphas=FALSE_DETECTION_TARGETS):
    """results["at_fixed_fpr"]: accuracy at the clean false-detection rates `alphas`.

    test_logits: name -> logits of the whole clean test set (tau is chosen there);
    test_labels: its labels; clean_logits, labels, adversarial_logits: as in
    `worst_case_rows`. Per target: "thresholds" (per alpha: tau, the false-detection
    rate and clean accuracy it gives on the test set), "rows": per scored craft and
    per threat model's worst case (attack "any"), the accuracies at each tau.
    """
    labels = np.asarray(labels)
    test_labels = np.asarray(test_labels)
    out = {"score": "margin: z_n - max_{i<n} z_i (flag when > tau)",
           "threshold_rule": "tau is the (k+1)-th largest margin of the clean test set, "
                             "k = floor(alpha * its size): at most alpha of it is flagged",
           "readings": {"detection_correct": "a flagged adversarial digit counts as correct",
                        "rejection_error": "a flagged digit counts as an error"},
           "clean_candidate": "the clean digit is also a candidate of every attack",
           "targets": {}}
    for spec in targets:
        k = spec.outlier_class
        test = _decisions(test_logits[spec.name], k)
        # label -> tau; no outlier class: nothing is ever flagged (tau = +inf).
        taus = {f"{alpha:g}": np.inf if k is None else
                detection.false_alarm_threshold(test[0], alpha) for alpha in alphas}
        if k is not None:
            taus["argmax"] = 0.0
        thresholds = {label: _threshold_summary(test, test_labels, tau)
                      for label, tau in taus.items()}
        clean = _decisions(clean_logits[spec.name], k)
        rows = []
        for setting, source, keys in threat_models(list(adversarial_logits), spec.name):
            crafts = {key: _decisions(adversarial_logits[key][0], k) for key in keys}
            for key in keys + [None]:
                chosen = list(crafts.values()) if key is None else [crafts[key]]
                n = max(scores.size for scores, _ in chosen)
                candidates = [(clean[0][:n], clean[1][:n])] + chosen
                rows.append({
                    "setting": setting, "source": source,
                    "attack": ANY_ATTACK if key is None else key[3],
                    "variant": ANY_ATTACK if key is None else key[4], "num_examples": n,
                    "at": {label: detection.worst_case_at_threshold(candidates, labels[:n], tau)
                           for label, tau in taus.items()}})
        out["targets"][spec.name] = {"outlier_class": k, "thresholds": thresholds,
                                     "rows": rows}
    return out


def _decisions(logits, outlier_class):
    """(margin scores, real-class predictions) of logits; without an outlier class the
    scores are -inf, so no threshold flags anything."""
    logits = np.asarray(logits)
    scores = (np.full(len(logits), -np.inf) if outlier_class is None else
              detection.outlier_scores(logits, outlier_class)["margin"])
    return scores, _real_predictions(logits, outlier_class)


def _threshold_summary(test, labels, tau):
    """On the clean test set (its `_decisions`): tau (None when infinite: +inf flags
    nothing, -inf everything, see `flags`), the false-detection rate and clean accuracy."""
    flagged, correct = detection.decisions_at_threshold(*test, labels, tau)
    return {"threshold": float(tau) if np.isfinite(tau) else None,
            "flags": "some" if np.isfinite(tau) else "none" if tau > 0 else "all",
            "false_detection": float(flagged.mean()), "clean_accuracy": float(correct.mean()),
            "count": int(flagged.size)}
