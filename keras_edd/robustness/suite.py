"""The attacks `evaluate` can run, one row each, and AutoAttack's standard list.

A row (`SuiteAttack`) says which norms the attack supports, which module it
needs (imported only when it runs), its settings, and `run`: a call of the
attack function with the true labels y (AutoAttack aims every attack at the true
label, not at the model's prediction). The standard list is AutoAttack's
`version="standard"` at its own defaults (Croce & Hein 2020; fra31/auto-attack
`set_version`), run in this order:

  apgd_ce  APGD on cross-entropy, 100 iterations, 1 restart
  apgd_t   APGD on targeted DLR, 9 target classes, 100 iterations, 1 restart each
  fab_t    targeted FAB, 9 target classes, 100 iterations, 1 restart
  square   Square Attack, 5,000 queries, p_init 0.8 (square.py for L_inf,
           square_l2.py for L2)

attacks="rand" is AutoAttack's `version="rand"`, for a stochastic model (one whose
outputs differ between calls on the same input): APGD-CE and APGD-DLR, 100 iterations,
1 restart, each step's gradient the mean over 20 calls of the model (EOT, eot_iter = 20).

A row whose module is missing from the installation (e.g. a trimmed copy without
keras_edd.attacks.fab) or that
lacks the norm (fgsm, pgd: L_inf only) is left out of "standard" with the reason
recorded in the result and a warning; named explicitly, it raises.

Names are the attack registry's (keras_edd.attack_registry) where the
registry has the attack; any other registry attack under an L_inf eps budget
(fgsm, pgd) runs with the registry's default settings at the given eps.
"""

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable

from keras_edd import attack_registry

NORMS = ("linf", "l2")
STANDARD = ("apgd_ce", "apgd_t", "fab_t", "square")
RAND = ("apgd_ce", "apgd_dlr")
RAND_EOT_ITER = 20
VERSIONS = ("standard", "rand")  # the lists `attacks` names by one word


@dataclasses.dataclass(frozen=True, kw_only=True)
class SuiteAttack:
    """One attack of `evaluate`: run(model_fn, x, y, *, eps, norm, outlier_class, seed) -> x_adv.

    functions: norm -> "module:function" of the attack at that norm (the norms it
      supports); the row is unavailable when the module is missing.
    settings: the keyword settings passed to the function (recorded in results).
    norm_keyword: the function takes `norm=` (one function for both norms).
    """
    name: str
    functions: dict
    settings: dict
    norm_keyword: bool = True
    takes_seed: bool = True

    @property
    def norms(self) -> tuple[str, ...]:
        return tuple(self.functions)

    def unavailable(self, norm: str) -> str | None:
        """Why this attack cannot run at `norm` in this installation, or None."""
        if norm not in self.functions:
            return (f"{self.name} supports norm {' and '.join(self.norms)} only, not "
                    f"{norm!r} (no {norm.upper()} version in keras_edd yet)")
        module = self.functions[norm].split(":")[0]
        try:
            missing = importlib.util.find_spec(module) is None
        except (ImportError, ValueError):  # a parent package missing, or no spec
            missing = True
        if missing:
            return f"{self.name} needs {module}, which is not in this installation"
        return None

    def run(self, model_fn: Callable, x, y, *, eps: float, norm: str,
            outlier_class: int | None, seed: int, **options):
        """The attack on (x, y); `options` are further keywords of the function
        (robustness_curve runs FAB with early_stop=False, return_details=True)."""
        module, name = self.functions[norm].split(":")
        function = getattr(importlib.import_module(module), name)
        kwargs = dict(self.settings, eps=eps, y=y, outlier_class=outlier_class, **options)
        if self.norm_keyword:
            kwargs["norm"] = norm
        if self.takes_seed:
            kwargs["seed"] = seed
        return function(model_fn, x, **kwargs)


def _apgd(name, loss, nb_targets=9, eot_iter=1):
    settings = {"loss": loss, "nb_iter": 100, "nb_restarts": 1}
    if eot_iter > 1:
        settings["eot_iter"] = eot_iter
    if loss == "dlr_targeted":
        settings["nb_targets"] = nb_targets
    return SuiteAttack(name=name, functions=dict.fromkeys(NORMS, "keras_edd.attacks.apgd:apgd"),
                       settings=settings)


def _fab(name, targeted):
    # keras_edd.attacks.fab: FAB-T is FAB over the 9 best-ranked other classes
    # (nb_targets), still aiming at any class != y, as in AutoAttack's standard version.
    settings = {"nb_iter": 100, "nb_restarts": 1}
    if targeted:
        settings["nb_targets"] = 9
    return SuiteAttack(name=name, functions=dict.fromkeys(NORMS, "keras_edd.attacks.fab:fab"),
                       settings=settings)


_ROWS = (
    _apgd("apgd_ce", "ce"),
    _apgd("apgd_t", "dlr_targeted"),
    _apgd("apgd_dlr", "dlr"),
    _fab("fab_t", targeted=True),
    _fab("fab", targeted=False),
    SuiteAttack(name="square", functions={"linf": "keras_edd.attacks.square:square",
                                          "l2": "keras_edd.attacks.square_l2:square_l2"},
                settings={"max_queries": 5000, "p_init": 0.8}, norm_keyword=False),
)
ATTACKS = {row.name: row for row in _ROWS}
# version="rand": the same names, with EOT.
RAND_ROWS = (_apgd("apgd_ce", "ce", eot_iter=RAND_EOT_ITER),
             _apgd("apgd_dlr", "dlr", eot_iter=RAND_EOT_ITER))


def _registry_row(name):
    """A SuiteAttack for a registry attack under an L_inf eps budget (fgsm, pgd), else None."""
    row = attack_registry.ATTACKS.get(name)
    if row is None or row.budget != "eps":
        return None
    params = attack_registry.attack_params(name, attack_registry.AttackConfig())
    params.pop("eps")
    return SuiteAttack(name=name, functions={"linf": row.function}, settings=params,
                       norm_keyword=False, takes_seed=row.takes_seed)


def _scaled(row, eps):
    """PGD's step size scales with eps as in the registry (eps_iter / eps fixed)."""
    if row.name != "pgd":
        return row
    params = attack_registry.attack_params("pgd", attack_registry.AttackConfig(), budget=eps)
    params.pop("eps")
    return dataclasses.replace(row, settings=params)


def known_names() -> tuple[str, ...]:
    """Every name `attacks` accepts in a list (besides the VERSIONS)."""
    extra = [name for name in attack_registry.NAMES
             if name not in ATTACKS and _registry_row(name) is not None]
    return tuple(ATTACKS) + tuple(extra)


def resolve(attacks, norm: str, eps: float) -> tuple[tuple[SuiteAttack, ...], tuple]:
    """(the rows to run in order, ((name, reason), ...) of standard attacks left out).

    attacks: "standard", "rand" or a list of names. A named attack that is unknown,
    given twice or unavailable at `norm` raises ValueError.
    """
    if isinstance(attacks, str) and attacks == "rand":
        return RAND_ROWS, ()
    if isinstance(attacks, str) and attacks == "standard":
        rows, skipped = [], []
        for name in STANDARD:
            reason = ATTACKS[name].unavailable(norm)
            if reason is None:
                rows.append(ATTACKS[name])
            else:
                skipped.append((name, reason))
        return tuple(rows), tuple(skipped)
    names = [attacks] if isinstance(attacks, str) else attacks
    try:
        names = list(names)
    except TypeError:
        names = None
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError(f"attacks={attacks!r}: expected 'standard', 'rand' or a non-empty "
                         f"list of names from {', '.join(known_names())}")
    rows = []
    for name in names:
        row = ATTACKS.get(name) or _registry_row(name)
        if row is None:
            raise ValueError(f"attacks: unknown attack {name!r}; allowed values are "
                             f"'standard', 'rand' or names from {', '.join(known_names())}")
        if name in (r.name for r in rows):
            raise ValueError(f"attacks: {name!r} is named twice")
        reason = row.unavailable(norm)
        if reason is not None:
            raise ValueError(f"attacks: {reason}")
        rows.append(_scaled(row, eps))
    return tuple(rows), ()


def drop_unfit(rows, skipped, shape, *, named: bool):
    """Square needs images [n, H, W(, C)] with H, W >= 2: on other inputs it is left out
    of the standard list (with the reason) and raises when named."""
    fits = len(shape) in (3, 4) and shape[1] >= 2 and shape[2] >= 2
    if fits or "square" not in (row.name for row in rows):
        return rows, skipped
    reason = f"square needs images [n, H, W] or [n, H, W, C] with H, W >= 2, not {shape}"
    if named:
        raise ValueError(f"attacks: {reason}")
    return (tuple(row for row in rows if row.name != "square"),
            skipped + (("square", reason),))
