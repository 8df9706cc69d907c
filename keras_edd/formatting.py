"""Numbers and settings as text, for reports, tables and progress lines. Light: no TensorFlow."""


def pct(value, digits=1):
    """A rate as a percentage, '12.3 %'; None as 'n/a'."""
    return "n/a" if value is None else f"{100 * value:.{digits}f} %"


def num(value, digits=3):
    """A number with `digits` decimals; None as 'n/a'."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_params(params):
    """'eps=0.2, nb_iter=40': attack settings on one line (report tables, progress lines)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())
