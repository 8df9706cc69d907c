"""Numbers and settings as text, for reports, tables and progress lines. Light: no TensorFlow."""


def percent(value, digits=1):
    """A rate as a number of percent without the unit, '12.3' (table cells); None as 'n/a'."""
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def pct(value, digits=1):
    """A rate as a percentage, '12.3 %'; None as 'n/a'."""
    return "n/a" if value is None else f"{percent(value, digits)} %"


def percent_interval(value, interval, digits=1, unit=""):
    """A rate and its interval in percent, '30.5 [27.7, 33.5]' ('30.5 % [27.7, 33.5]' with
    unit ' %'); the rate alone without an interval, 'n/a' without a rate."""
    if value is None:
        return "n/a"
    if interval is None:
        return f"{percent(value, digits)}{unit}"
    low, high = interval
    return f"{percent(value, digits)}{unit} [{percent(low, digits)}, {percent(high, digits)}]"


def num(value, digits=3):
    """A number with `digits` decimals; None as 'n/a'."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def inputs_attacked(num_examples):
    """'fgsm 1000, pgd 1000; on the adversarial target and the surrogates J: fgsm 100':
    results.json's `num_examples` (inputs attacked per attack, and for the extra models
    under `extra_models`) as text."""
    main = ", ".join(f"{a} {n}" for a, n in num_examples.items() if a != "extra_models")
    if "extra_models" not in num_examples:
        return main
    return (f"{main}; on the adversarial target and the surrogates J: "
            + ", ".join(f"{a} {n}" for a, n in num_examples["extra_models"].items()))


def format_params(params):
    """'eps=0.2, nb_iter=40': attack settings on one line (report tables, progress lines)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def result_line(entry):
    """One evaluation entry as the line the binaries print: the filtered rates (n/a when
    no attacked input was classified correctly when clean)."""
    f = entry["filtered"]
    where = entry["target"] if entry["setting"] == "whitebox" else \
        f"{entry['source']} -> {entry['target']}"
    rate = {k: "n/a" if f[k] is None else f"{f[k]:.3f}"
            for k in ("recovered", "detected", "misclassified")}
    return (f"{entry['setting']} {where} {entry['attack']} ({entry['variant']}): recovered "
            f"{rate['recovered']}, detected {rate['detected']}, misclassified "
            f"{rate['misclassified']} (n={f['count']})")
