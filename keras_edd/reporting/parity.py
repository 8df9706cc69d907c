"""keras_edd.evaluate against the reference AutoAttack, as Markdown: the JSON that
benchmarks/autoattack_parity.py prints, one table for all its cases.

  parity_table    per case two rows (keras_edd, reference): clean accuracy, robust
                  accuracy after each attack in AutoAttack's order (cumulative, the last
                  is the robust accuracy) with its 95 % Wilson interval, wall seconds;
                  then per case the difference in points, the digits robust on one side
                  only, the time ratio, the verdict on the targets and, where both sides
                  recorded them, the seconds of each attack
  parity_machine  the machine and load the run was timed on

Light: reads dicts, no TensorFlow.
"""

from keras_edd.formatting import percent
from keras_edd.stats import interval_of

ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")  # AutoAttack's names, in its order
_NAMES = ("APGD-CE", "APGD-T", "FAB-T", "Square")
_HEADINGS = (_NAMES[0], *(f"+ {name}" for name in _NAMES[1:-1]), f"+ {_NAMES[-1]} = robust")
_NORMS = {"linf": "L∞", "l2": "L2"}


def _robust_cell(side):
    """'**84.0** [81.6, 86.1]': robust accuracy in percent and its 95 % interval."""
    value = side["robust_accuracy"]
    low, high = interval_of(value, side["digits"])
    return f"**{percent(value)}** [{percent(low)}, {percent(high)}]"


def case_title(case):
    return f"{case['model']} {_NORMS.get(case['norm'], case['norm'])} ε = {case['eps']:g}"


def _verdict(case):
    targets = case["targets"]
    if not targets.get("judged"):
        return "not judged: " + targets.get("why", "")
    parts = [f"robust accuracy {case['robust_accuracy_difference_points']:+.1f} points "
             f"({'within' if targets['accuracy_within_points'] else 'outside'} ±0.5)",
             f"time ratio reference / ours {case['speed_up']:.2f}×"
             + (" (most digits fall early: ≥ 2× asked)" if targets["most_fall_early"]
                else "")]
    return "; ".join(parts) + f": target {'met' if targets['met'] else 'NOT met'}"


def parity_table(result):
    """The table of every case of a parity run (see the module docstring)."""
    lines = ["| case | side | clean | " + " | ".join(_HEADINGS) + " | seconds |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in _HEADINGS) + " | ---: |"]
    notes = []
    for case in result["cases"].values():
        title = case_title(case)
        for side, label in (("ours", "keras_edd"), ("reference", "reference")):
            numbers = case.get(side)
            if numbers is None:
                lines.append(f"| {title} | {label} | not finished | " + " | ".join(
                    "" for _ in _HEADINGS) + " |  |")
                continue
            by_attack = numbers["robust_accuracy_by_attack"]
            cells = [percent(by_attack[a]) for a in ATTACKS[:-1]]
            cells.append(_robust_cell(numbers))
            lines.append(f"| {title} | {label} | {percent(numbers['clean_accuracy'])} | "
                         + " | ".join(cells) + f" | {numbers['seconds']:,.0f} |")
        if "disagreements" in case:
            d = case["disagreements"]
            notes.append(f"- {title}: {_verdict(case)}; robust in keras_edd only "
                         f"{d['robust_only_in_ours']}, in the reference only "
                         f"{d['robust_only_in_reference']} of {case['ours']['digits']} digits"
                         + _attack_times(case) + ".")
        else:
            notes.append(f"- {title}: {_verdict(case)}.")
    return "\n".join(lines) + "\n\n" + "\n".join(notes)


def _attack_times(case):
    """'; seconds per attack, keras_edd / reference: APGD-CE 40 / 41, ...' ('' unless both
    sides recorded them)."""
    ours, reference = (case[side].get("attack_seconds") for side in ("ours", "reference"))
    if not ours or not reference:
        return ""
    return "; seconds per attack, keras_edd / reference: " + ", ".join(
        f"{name} {ours[a]:,.0f} / {reference[a]:,.0f}" for a, name in zip(ATTACKS, _NAMES))


def parity_machine(result):
    """'2-core Intel(R) Xeon(R) Processor (AVX-512 with BF16), 1-minute load 2.1 at the
    start and 2.3 at the end'."""
    machine = result["machine"]
    flags = machine.get("avx_flags", [])
    simd = ("AVX-512 with BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags
            else "AVX2, no AVX-512" if "avx2" in flags else "no AVX2")
    load = machine.get("load_average", [None])[0]
    end = machine.get("load_average_end", [None])[0]
    return (f"{machine.get('cores')}-core {machine.get('cpu_model', machine.get('processor'))}"
            f" ({simd})"
            + (f", 1-minute load {load} at the start and {end} at the end" if load is not None
               and end is not None else ""))
