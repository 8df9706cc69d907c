"""The paper's small-budget claim, checked against budget sweeps on f^d.

Papernot & McDaniel (2017) write that for budgets below those of their Figure 1 (FGSM
eps = 0.2, JSMA Gamma = 7 %, CW kappa = 7) the defense "detects or recovers" 60 % to
90 % of the adversarial examples. For each sweep point of an evaluation of f^d
(bin/eval_whitebox with --sweep_attacks, plain and adaptive), `claim_rows` gives
recovered + detected = 1 - misclassified over the digits f^d classifies correctly when
clean, its 95 % Wilson interval, and where it stands against [60 %, 90 %]: "below",
"within" or "above" when the whole interval is on one side or inside, "overlaps" when
the interval straddles an end. Light: reads dicts, no TensorFlow.
"""

from keras_edd.formatting import percent_interval
from keras_edd.stats import interval_of

# The budgets of the paper's Figure 1; the claim is about smaller ones.
FIGURE_1_BUDGETS = {"fgsm": ("eps", 0.2), "jsma": ("gamma", 0.07), "cw": ("kappa", 7.0)}
CLAIM_RANGE = (0.6, 0.9)
_BUDGET_NAMES = {"eps": "ε", "gamma": "Γ", "kappa": "κ"}


def _standing(interval, low=CLAIM_RANGE[0], high=CLAIM_RANGE[1]):
    lo, hi = interval
    if hi < low:
        return "below"
    if lo > high:
        return "above"
    if lo >= low and hi <= high:
        return "within"
    return "overlaps"


def claim_rows(results):
    """One dict per sweep point at a budget at or below Figure 1's: attack, variant,
    parameter, value, n, resisted (recovered + detected), its interval, standing, and
    figure_1 (True at Figure 1's own budget, shown for reference)."""
    rows = []
    for sweep in results.get("sweeps", []):
        attack = sweep["attack"]
        if attack not in FIGURE_1_BUDGETS:
            continue
        parameter, paper_value = FIGURE_1_BUDGETS[attack]
        if sweep["parameter"] != parameter:
            raise ValueError(f"sweep of {attack} over {sweep['parameter']!r}: expected "
                             f"{parameter!r}")
        for point in sweep["points"]:
            if point["value"] > paper_value + 1e-9:
                continue
            filtered = point["filtered"]
            n = filtered["count"]
            resisted = None if not n else 1.0 - filtered["misclassified"]
            interval = interval_of(resisted, n)
            rows.append({"attack": attack, "variant": sweep["variant"],
                         "parameter": parameter, "value": point["value"], "n": n,
                         "resisted": resisted, "interval": interval,
                         "standing": None if interval is None else _standing(interval),
                         "figure_1": abs(point["value"] - paper_value) < 1e-9})
    return rows


def claim_table(results):
    """Markdown: per attack and budget, recovered + detected on f^d, plain and adaptive,
    with the interval and its standing against the paper's 60-90 %."""
    rows = claim_rows(results)
    cells = {(r["attack"], r["value"], r["variant"]): r for r in rows}
    lines = ["| attack | budget | n | plain: recovered + detected | adaptive: recovered + "
             "detected |", "|---|---|---|---|---|"]
    for attack, value in sorted({(r["attack"], r["value"]) for r in rows},
                                key=lambda k: (list(FIGURE_1_BUDGETS).index(k[0]), k[1])):
        texts, counts = [], set()
        for variant in ("plain", "adaptive"):
            r = cells.get((attack, value, variant))
            if r is None:
                texts.append("")
                continue
            counts.add(r["n"])
            texts.append(f"{percent_interval(r['resisted'], r['interval'])} {r['standing']}")
        parameter = FIGURE_1_BUDGETS[attack][0]
        budget = f"{_BUDGET_NAMES[parameter]} = {value:g}"
        if abs(value - FIGURE_1_BUDGETS[attack][1]) < 1e-9:
            budget += " (Figure 1)"
        lines.append(f"| {attack} | {budget} | {'/'.join(str(c) for c in sorted(counts))} | "
                     f"{texts[0]} | {texts[1]} |")
    return "\n".join(lines)


def claim_verdict(results):
    """One sentence: how many of the smaller-budget points, plain and adaptive, have
    recovered + detected within, above, below or overlapping the paper's 60-90 %."""
    rows = [r for r in claim_rows(results) if not r["figure_1"] and r["interval"]]
    parts = []
    for variant in ("plain", "adaptive"):
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        counts = {s: sum(r["standing"] == s for r in mine)
                  for s in ("within", "overlaps", "above", "below")}
        text = ", ".join(f"{v} {s}" for s, v in counts.items() if v)
        low = min(r["resisted"] for r in mine)
        high = max(r["resisted"] for r in mine)
        parts.append(f"{variant} attacks: {len(mine)} points, recovered + detected "
                     f"{100 * low:.1f}-{100 * high:.1f} % ({text} the 60-90 % range)")
    return "; ".join(parts)
