"""Progress bars: one rule for every tqdm bar of keras_edd.

`progress=True` means "show bars where someone can see them": tqdm's own
`disable=None`, which turns a bar off when stderr is not a terminal, so piped
or redirected logs stay free of carriage-return noise. `progress=False`
turns bars off everywhere.
"""


def tqdm_disable(progress):
    """tqdm's `disable` argument for a `progress` setting: True -> None (auto), False -> True."""
    return None if progress else True


def bar(*, total, desc, progress, unit="it", leave=False):
    """A tqdm bar (tqdm.auto) following `tqdm_disable(progress)`."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=tqdm_disable(progress))
