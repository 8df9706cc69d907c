"""The schema of an evaluation's results.json: frozen dataclasses, one writer, old files load.

Light (no TensorFlow), in the lowest layer, so every reader (report.md, results.csv, the
README tables, the runs) reads the same typed object instead of string keys.

    Results                      one evaluation (bin/eval_whitebox, bin/eval_blackbox,
                                 bin/reproduce); `schema_version` = SCHEMA_VERSION
      models[name]: ModelResult  clean rates (`CleanRates`) on the test set and on the
                                 attacked inputs, sanity checks; surrogate J's record
      evaluations: Evaluation    one attack run: setting, source, target, attack, variant,
                                 budget (`parameter` = `value`), `filtered` and
                                 `unfiltered` `AttackRates`, norms, params, success, seconds;
                                 black-box runs also the rates on their source
                                 (`source_rates`)
      sweeps: Sweep              a budget sweep: `SweepPoint`s and the masking verdict
      worst_case: WorstCase      the "any attack" row of a target and threat model
      at_fixed_fpr: FixedFpr     accuracy at a fixed clean false-detection rate
      standard[target]: StandardEvaluation
                                 AutoAttack's standard evaluation of a target
                                 (keras_edd.evaluate; bin/reproduce); written only
                                 when computed (absent reads as {})
      robustness_curves[target]: CurveRecord
                                 its robustness curve (keras_edd.robustness_curve);
                                 written only when computed
      detection, settings, training, dataset, ...: as recorded (`Results.rest`)

Rates. `OutcomeRates` holds `count` (the n of the rates; 0 when nothing was counted, then
every rate is None) and the fractions recovered / detected / misclassified. Each object
with rates is written with `wilson95`: per rate, its 95 % Wilson score interval
[low, high] over that n (null without a rate; keras_edd.stats.interval_of), computed from
the rate and n on writing and ignored on reading, so it never disagrees with them:

    OutcomeRates, AttackRates  over `count`         (CleanRates: the key `accuracy`)
    Evaluation, SweepPoint     `success_wilson95`   over filtered.count
    Sweep                      `max_success_wilson95` over max_success_count
    Threshold, AtThreshold     over `count`
    ModelResult (surrogate J)  `agreement_wilson95`: attacked over clean_attacked.count,
                               test over agreement_test_count
    detection                  entries' `at_fpr` points (tpr, fpr) over the entry's
                               `count`; targets' `at_threshold` points (clean_accuracy,
                               flagged) over the target's `num_examples`
    standard, robustness_curves  each rate as {k, n, value, low, high} (keras_edd.stats.Rate:
                               only k and n are read)

Reading. `Results.from_dict` accepts any results.json written since the first evaluation
(a file without `schema_version` is version 0: the same fields, untyped); a missing
required field raises a one-line ValueError naming it and where it is, a missing optional
one reads as None, and keys the schema does not know are kept (`rest`) and written back.
`Results.to_dict` writes every field of the schema (None as null); `write_results` is the
one writer of results.json; `migrate` rewrites an older dict in the current format
without changing a number.
"""

import dataclasses

from keras_edd import files, stats

# 1: the typed schema (`schema_version` written into results.json).
# 2: every rate carries its 95 % Wilson interval (`wilson95`), derived from the rate and its n.
# 3: `standard` and `robustness_curves` per target (absent, as in older files: not computed).
SCHEMA_VERSION = 3
INTERVALS = "wilson95"


def _object(value, where):
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _required(data, key, where):
    if key not in data:
        raise ValueError(f"{where}: lacks the field {key!r}")
    return data[key]


def _rest(data, known):
    """The keys of `data` the schema does not know, kept as they are; the derived intervals
    (keys ending in `wilson95`) are dropped, to_dict writes them afresh."""
    return {k: v for k, v in data.items() if k not in known and not k.endswith(INTERVALS)}


def _names(cls):
    return {f.name for f in dataclasses.fields(cls)}


def _interval(rate, n):
    """[low, high], the Wilson interval of `rate` over n as JSON writes it; None without one."""
    interval = stats.interval_of(rate, n)
    return None if interval is None else list(interval)


def _intervals(owner, names, n):
    """{name: [low, high] or None}: the Wilson interval of each rate of `owner` over n."""
    return {name: _interval(owner[name] if isinstance(owner, dict) else getattr(owner, name), n)
            for name in names}


def _plain(value):
    """Scalars of a to_dict: dicts and tuples copied, so no caller edits the object."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------------ rates


class _Rates:
    """Rates stored as fractions of `self.count`, named by `rate_names()`."""

    def rate_names(self):
        return tuple(f.name for f in dataclasses.fields(self) if f.name != "count")

    def rate(self, name):
        """The fraction called `name` (one of rate_names())."""
        if name not in self.rate_names():
            raise ValueError(f"rate {name!r}: allowed are {list(self.rate_names())}")
        return getattr(self, name)

    def interval(self, name):
        """The 95 % Wilson interval (low, high) of the rate `name` over `count`; None
        without a rate."""
        return stats.interval_of(self.rate(name), self.count)

    def to_dict(self):
        return {**dataclasses.asdict(self),
                INTERVALS: _intervals(self, self.rate_names(), self.count)}


@dataclasses.dataclass(frozen=True)
class OutcomeRates(_Rates):
    """recovered / detected / misclassified over `count` inputs (None when count is 0)."""
    count: int
    recovered: float | None = None
    detected: float | None = None
    misclassified: float | None = None

    @classmethod
    def from_dict(cls, data, where="rates"):
        data = _object(data, where)
        count = _required(data, "count", where)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{where}.count={count!r}: expected an integer >= 0")
        return cls(count=count, **{f.name: data.get(f.name) for f in dataclasses.fields(cls)
                                   if f.name != "count"})



@dataclasses.dataclass(frozen=True)
class AttackRates(OutcomeRates):
    """OutcomeRates of an attack run, with attack_failed: the fraction of the same inputs
    where the attack found no example meeting its own success criterion."""
    attack_failed: float | None = None


@dataclasses.dataclass(frozen=True)
class CleanRates(OutcomeRates):
    """A model on clean inputs: `accuracy` (= recovered), detected (false alarms),
    misclassified. Written with the key `accuracy`, as results.json always had it."""

    @classmethod
    def from_dict(cls, data, where="clean rates"):
        data = _object(data, where)
        return super().from_dict({"recovered": _required(data, "accuracy", where),
                                  **{k: v for k, v in data.items() if k != "accuracy"}}, where)

    @property
    def accuracy(self):
        return self.recovered

    def to_dict(self):
        out = super().to_dict()
        out["accuracy"] = out.pop("recovered")
        out[INTERVALS]["accuracy"] = out[INTERVALS].pop("recovered")
        return out


def _pair(data, cls, where):
    """{"filtered": cls, "unfiltered": cls} of a dict."""
    return {subset: cls.from_dict(_required(data, subset, where), f"{where}.{subset}")
            for subset in ("filtered", "unfiltered")}


# ------------------------------------------------------------------------- attack runs


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One attack run scored on its target (results.json "evaluations")."""
    setting: str
    source: str
    target: str
    attack: str
    variant: str
    parameter: str | None
    value: float | None
    num_examples: int
    filtered: AttackRates
    unfiltered: AttackRates
    norms: dict | None = None
    params: dict = dataclasses.field(default_factory=dict)
    success: float | None = None
    attack_seconds: float | None = None
    source_rates: dict | None = None  # black-box: {"filtered", "unfiltered"} OutcomeRates
    rest: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="evaluation"):
        data = _object(data, where)
        for key in ("setting", "source", "target", "attack", "variant", "num_examples"):
            _required(data, key, where)
        source_rates = data.get("source_rates")
        return cls(**{k: data[k] for k in ("setting", "source", "target", "attack", "variant",
                                           "num_examples")},
                   parameter=data.get("parameter"), value=data.get("value"),
                   **_pair(data, AttackRates, where), norms=data.get("norms"),
                   params=dict(data.get("params") or {}), success=data.get("success"),
                   attack_seconds=data.get("attack_seconds"),
                   source_rates=None if source_rates is None else
                   _pair(source_rates, OutcomeRates, f"{where}.source_rates"),
                   rest=_rest(data, _names(cls)))

    def to_dict(self):
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name not in ("filtered", "unfiltered", "source_rates", "rest")}
        out.update(filtered=self.filtered.to_dict(), unfiltered=self.unfiltered.to_dict())
        if self.source_rates is not None:  # only black-box runs have a source model's rates
            out["source_rates"] = {k: v.to_dict() for k, v in self.source_rates.items()}
        out["success_wilson95"] = _interval(self.success, self.filtered.count)
        return {**_plain(self.rest), **out}


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One budget of a sweep."""
    value: float
    filtered: AttackRates
    unfiltered: AttackRates
    success: float | None = None
    norms: dict | None = None
    attack_seconds: float | None = None
    rest: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="sweep point"):
        data = _object(data, where)
        return cls(value=_required(data, "value", where), **_pair(data, AttackRates, where),
                   success=data.get("success"), norms=data.get("norms"),
                   attack_seconds=data.get("attack_seconds"), rest=_rest(data, _names(cls)))

    def to_dict(self):
        return {**_plain(self.rest), "value": self.value, "filtered": self.filtered.to_dict(),
                "unfiltered": self.unfiltered.to_dict(), "success": self.success,
                "success_wilson95": _interval(self.success, self.filtered.count),
                "norms": _plain(self.norms), "attack_seconds": self.attack_seconds}


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A white-box attack over several budgets and its gradient-masking verdict
    (masking_suspected None: not checked)."""
    target: str
    attack: str
    variant: str
    parameter: str
    num_examples: int
    points: tuple
    max_success: float | None = None
    max_success_count: int | None = None
    max_success_upper: float | None = None
    masking_suspected: bool | None = None
    rest: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="sweep"):
        data = _object(data, where)
        fixed = {k: _required(data, k, where)
                 for k in ("target", "attack", "variant", "parameter", "num_examples")}
        points = tuple(SweepPoint.from_dict(p, f"{where}.points[{i}]")
                       for i, p in enumerate(_required(data, "points", where)))
        return cls(**fixed, points=points,
                   **{k: data.get(k) for k in ("max_success", "max_success_count",
                                               "max_success_upper", "masking_suspected")},
                   rest=_rest(data, _names(cls)))

    def to_dict(self):
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name not in ("points", "rest")}
        out["max_success_wilson95"] = _interval(self.max_success,
                                                         self.max_success_count)
        return {**_plain(self.rest), **out, "points": [p.to_dict() for p in self.points]}


@dataclasses.dataclass(frozen=True)
class WorstCase:
    """The worst case per digit over the attacks of a threat model ("any attack"):
    rates over every attacked digit, and over the digits every attack covered
    (`common_num_examples`, `common`)."""
    setting: str
    target: str
    source: str
    attack: str
    variant: str
    attacks: tuple
    attacks_per_input: dict
    num_examples: int
    filtered: OutcomeRates
    unfiltered: OutcomeRates
    common_num_examples: int
    common: dict  # {"filtered", "unfiltered"} OutcomeRates
    rest: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="worst case"):
        data = _object(data, where)
        common = _object(_required(data, "all_attacks", where), f"{where}.all_attacks")
        return cls(**{k: _required(data, k, where)
                      for k in ("setting", "target", "source", "attack", "variant",
                                "attacks_per_input", "num_examples")},
                   attacks=tuple(_required(data, "attacks", where)),
                   **_pair(data, OutcomeRates, where),
                   common_num_examples=_required(common, "num_examples", f"{where}.all_attacks"),
                   common=_pair(common, OutcomeRates, f"{where}.all_attacks"),
                   rest=_rest(data, _names(cls) | {"all_attacks"}))

    def to_dict(self):
        return {**_plain(self.rest), "setting": self.setting, "target": self.target,
                "source": self.source, "attack": self.attack, "variant": self.variant,
                "attacks": list(self.attacks), "attacks_per_input": dict(self.attacks_per_input),
                "num_examples": self.num_examples, "filtered": self.filtered.to_dict(),
                "unfiltered": self.unfiltered.to_dict(),
                "all_attacks": {"num_examples": self.common_num_examples,
                                **{k: v.to_dict() for k, v in self.common.items()}}}


# ------------------------------------------------- accuracy at a fixed false-detection rate


@dataclasses.dataclass(frozen=True)
class Threshold(_Rates):
    """A threshold tau chosen on the clean test set (`count` digits): the false-detection
    rate and the clean accuracy it gives. threshold None: infinite (`flags` 'none' or
    'all')."""
    count: int
    threshold: float | None
    flags: str
    false_detection: float | None
    clean_accuracy: float | None

    @classmethod
    def from_dict(cls, data, where="threshold"):
        data = _object(data, where)
        return cls(**{f.name: _required(data, f.name, where) for f in dataclasses.fields(cls)})

    def rate_names(self):
        return ("false_detection", "clean_accuracy")


@dataclasses.dataclass(frozen=True)
class AtThreshold(_Rates):
    """Accuracy over `count` attacked digits at one tau: a flagged adversarial digit counted
    correct (`detection_correct`) or as an error (`rejection_error`)."""
    count: int
    detection_correct: float | None
    rejection_error: float | None

    @classmethod
    def from_dict(cls, data, where="at threshold"):
        data = _object(data, where)
        return cls(**{f.name: _required(data, f.name, where) for f in dataclasses.fields(cls)})




@dataclasses.dataclass(frozen=True)
class FixedFprRow:
    """One craft (or a threat model's worst case, attack 'any') at every threshold."""
    setting: str
    source: str
    attack: str
    variant: str
    num_examples: int
    at: dict  # label ('0.05', '0.01', 'argmax') -> AtThreshold

    @classmethod
    def from_dict(cls, data, where="row"):
        data = _object(data, where)
        at = _object(_required(data, "at", where), f"{where}.at")
        return cls(**{k: _required(data, k, where)
                      for k in ("setting", "source", "attack", "variant", "num_examples")},
                   at={label: AtThreshold.from_dict(v, f"{where}.at.{label}")
                       for label, v in at.items()})

    def to_dict(self):
        return {"setting": self.setting, "source": self.source, "attack": self.attack,
                "variant": self.variant, "num_examples": self.num_examples,
                "at": {label: v.to_dict() for label, v in self.at.items()}}


@dataclasses.dataclass(frozen=True)
class FixedFprTarget:
    outlier_class: int | None
    thresholds: dict  # label -> Threshold
    rows: tuple       # FixedFprRow

    @classmethod
    def from_dict(cls, data, where="target"):
        data = _object(data, where)
        thresholds = _object(_required(data, "thresholds", where), f"{where}.thresholds")
        return cls(outlier_class=_required(data, "outlier_class", where),
                   thresholds={label: Threshold.from_dict(v, f"{where}.thresholds.{label}")
                               for label, v in thresholds.items()},
                   rows=tuple(FixedFprRow.from_dict(r, f"{where}.rows[{i}]")
                              for i, r in enumerate(_required(data, "rows", where))))

    def to_dict(self):
        return {"outlier_class": self.outlier_class,
                "thresholds": {label: t.to_dict() for label, t in self.thresholds.items()},
                "rows": [r.to_dict() for r in self.rows]}


@dataclasses.dataclass(frozen=True)
class FixedFpr:
    """results.json "at_fixed_fpr": per target, the thresholds and the rows; the texts
    say which score, which threshold rule and which readings."""
    targets: dict  # name -> FixedFprTarget
    score: str = ""
    threshold_rule: str = ""
    readings: dict = dataclasses.field(default_factory=dict)
    clean_candidate: str = ""

    @classmethod
    def from_dict(cls, data, where="at_fixed_fpr"):
        data = _object(data, where)
        targets = _object(data.get("targets", {}), f"{where}.targets")
        return cls(targets={name: FixedFprTarget.from_dict(t, f"{where}.targets.{name}")
                            for name, t in targets.items()},
                   **{k: data[k] for k in ("score", "threshold_rule", "readings",
                                           "clean_candidate") if k in data})

    def to_dict(self):
        return {"score": self.score, "threshold_rule": self.threshold_rule,
                "readings": dict(self.readings), "clean_candidate": self.clean_candidate,
                "targets": {name: t.to_dict() for name, t in self.targets.items()}}


# ------------------------------------------- the standard evaluation and robustness curves


def _count_rate(data, where):
    """A keras_edd.stats.Rate from its dict {k, n, ...} (value and interval are derived)."""
    data = _object(data, where)
    try:
        return stats.Rate(_required(data, "k", where), _required(data, "n", where))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


_THRESHOLD_RATES = ("false_detection", "clean_accuracy", "robust_accuracy_detection_correct",
                    "robust_accuracy_rejection_error")


@dataclasses.dataclass(frozen=True)
class StandardThreshold:
    """The outlier class as a detector at one clean false-detection rate (tau chosen on
    the clean digits; keras_edd.robustness.ThresholdResult): Rates over the digits."""
    target_false_detection: float
    tau: float
    false_detection: stats.Rate
    clean_accuracy: stats.Rate
    robust_accuracy_detection_correct: stats.Rate
    robust_accuracy_rejection_error: stats.Rate

    @classmethod
    def from_dict(cls, data, where="threshold"):
        data = _object(data, where)
        return cls(target_false_detection=_required(data, "target_false_detection", where),
                   tau=_required(data, "tau", where),
                   **{k: _count_rate(_required(data, k, where), f"{where}.{k}")
                      for k in _THRESHOLD_RATES})

    def to_dict(self):
        return {"target_false_detection": self.target_false_detection, "tau": self.tau,
                **{k: getattr(self, k).to_dict() for k in _THRESHOLD_RATES}}


@dataclasses.dataclass(frozen=True)
class StandardEvaluation:
    """AutoAttack's standard evaluation of one target (keras_edd.evaluate's
    RobustnessResult.to_dict()): clean and robust accuracy, the cumulative robust accuracy
    after each attack in the order run, and with an outlier class the thresholds. The
    per-digit arrays, settings, checks and warnings are kept as recorded (`rest`)."""
    model: str
    norm: str
    eps: float
    n: int
    attacks: tuple
    outlier_class: int | None
    clean_accuracy: stats.Rate
    robust_accuracy: stats.Rate
    robust_accuracy_by_attack: dict  # attack name -> Rate, in the order run
    thresholds: tuple = ()           # StandardThreshold
    seconds: float | None = None
    rest: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="standard"):
        data = _object(data, where)
        by_attack = _object(_required(data, "robust_accuracy_by_attack", where),
                            f"{where}.robust_accuracy_by_attack")
        return cls(**{k: _required(data, k, where) for k in ("model", "norm", "eps", "n")},
                   attacks=tuple(_required(data, "attacks", where)),
                   outlier_class=data.get("outlier_class"),
                   clean_accuracy=_count_rate(_required(data, "clean_accuracy", where),
                                              f"{where}.clean_accuracy"),
                   robust_accuracy=_count_rate(_required(data, "robust_accuracy", where),
                                               f"{where}.robust_accuracy"),
                   robust_accuracy_by_attack={
                       name: _count_rate(rate, f"{where}.robust_accuracy_by_attack.{name}")
                       for name, rate in by_attack.items()},
                   thresholds=tuple(StandardThreshold.from_dict(t, f"{where}.thresholds[{i}]")
                                    for i, t in enumerate(data.get("thresholds") or [])),
                   seconds=data.get("seconds"), rest=_rest(data, _names(cls)))

    def threshold(self, false_detection):
        """The StandardThreshold chosen at this clean false-detection rate, or None."""
        return next((t for t in self.thresholds
                     if abs(t.target_false_detection - false_detection) < 1e-12), None)

    def to_dict(self):
        return {**_plain(self.rest), "model": self.model, "norm": self.norm, "eps": self.eps,
                "n": self.n, "attacks": list(self.attacks), "outlier_class": self.outlier_class,
                "clean_accuracy": self.clean_accuracy.to_dict(),
                "robust_accuracy": self.robust_accuracy.to_dict(),
                "robust_accuracy_by_attack": {name: rate.to_dict() for name, rate
                                              in self.robust_accuracy_by_attack.items()},
                "thresholds": [t.to_dict() for t in self.thresholds], "seconds": self.seconds}


@dataclasses.dataclass(frozen=True)
class CurveRecord:
    """A target's robustness curve (keras_edd.robustness_curve's RobustnessCurve.to_dict()):
    robust accuracy (a Rate) at each radius of `eps_grid`, and the median eps* (inf: more
    than half of the digits never broken, null in JSON). Has the attributes
    keras_edd.reporting.robustness_curve_figure draws. Per-digit eps* and the rest as
    recorded (`rest`)."""
    model: str
    norm: str
    n: int
    attacks: tuple
    outlier_class: int | None
    clean_accuracy: stats.Rate
    eps_grid: tuple          # float, increasing
    robust_accuracy: tuple   # Rate per radius
    median_eps: float
    seconds: float | None = None
    rest: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="robustness curve"):
        data = _object(data, where)
        points = _required(data, "curve", where)
        median = data.get("median_eps")
        return cls(**{k: _required(data, k, where) for k in ("model", "norm", "n")},
                   attacks=tuple(_required(data, "attacks", where)),
                   outlier_class=data.get("outlier_class"),
                   clean_accuracy=_count_rate(_required(data, "clean_accuracy", where),
                                              f"{where}.clean_accuracy"),
                   eps_grid=tuple(float(_required(p, "eps", f"{where}.curve[{i}]"))
                                  for i, p in enumerate(points)),
                   robust_accuracy=tuple(_count_rate(p, f"{where}.curve[{i}]")
                                         for i, p in enumerate(points)),
                   median_eps=float("inf") if median is None else float(median),
                   seconds=data.get("seconds"), rest=_rest(data, _names(cls) | {"curve"}))

    def at(self, eps):
        """The robust accuracy (Rate) at the grid radius `eps`, or None when the grid does
        not hold it."""
        return next((rate for value, rate in zip(self.eps_grid, self.robust_accuracy)
                     if abs(value - eps) <= 1e-9 * max(1.0, abs(eps))), None)

    def to_dict(self):
        return {**_plain(self.rest), "model": self.model, "norm": self.norm, "n": self.n,
                "attacks": list(self.attacks), "outlier_class": self.outlier_class,
                "clean_accuracy": self.clean_accuracy.to_dict(),
                "curve": [{"eps": eps, **rate.to_dict()}
                          for eps, rate in zip(self.eps_grid, self.robust_accuracy)],
                "median_eps": None if self.median_eps == float("inf") else self.median_eps,
                "seconds": self.seconds}


def _per_target(data, key, cls):
    section = _object(data.get(key) or {}, f"results.{key}")
    return {name: cls.from_dict(entry, f"{key}.{name}") for name, entry in section.items()}


# ------------------------------------------------------------------------------ models


@dataclasses.dataclass(frozen=True)
class ModelResult:
    """A scored model: its clean rates and sanity checks (`checks`); the rest of its
    record (path, sha256, a surrogate J's queries and agreement) in `rest`."""
    role: str
    outputs: int
    outlier_class: int | None
    clean_test_set: CleanRates
    clean_attacked: CleanRates
    checks: dict
    rest: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="model"):
        data = _object(data, where)
        return cls(role=_required(data, "role", where), outputs=_required(data, "outputs", where),
                   outlier_class=_required(data, "outlier_class", where),
                   **{k: CleanRates.from_dict(_required(data, k, where), f"{where}.{k}")
                      for k in ("clean_test_set", "clean_attacked")},
                   checks=dict(_required(data, "checks", where)),
                   rest=_rest(data, _names(cls)))

    def get(self, key, default=None):
        """A field of the record outside the schema (`rest`), e.g. 'kind', 'oracle'."""
        return self.rest.get(key, default)

    def to_dict(self):
        rest = _plain(self.rest)
        if "agreement_attacked" in rest:  # surrogate J: how often it agrees with its oracle
            rest["agreement_wilson95"] = {
                "attacked": _interval(rest["agreement_attacked"],
                                              self.clean_attacked.count),
                "test": _interval(rest.get("agreement_test"),
                                          rest.get("agreement_test_count"))}
        return {**rest, "role": self.role, "outputs": self.outputs,
                "outlier_class": self.outlier_class,
                "clean_test_set": self.clean_test_set.to_dict(),
                "clean_attacked": self.clean_attacked.to_dict(), "checks": _plain(self.checks)}


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Results:
    """An evaluation's results.json (see the module docstring)."""
    kind: str
    models: dict          # name -> ModelResult
    evaluations: tuple    # Evaluation
    sweeps: tuple = ()    # Sweep
    worst_case: tuple = ()  # WorstCase
    at_fixed_fpr: FixedFpr | None = None
    standard: dict = dataclasses.field(default_factory=dict)  # target -> StandardEvaluation
    robustness_curves: dict = dataclasses.field(default_factory=dict)  # target -> CurveRecord
    num_examples: dict = dataclasses.field(default_factory=dict)
    warnings: tuple = ()
    schema_version: int = SCHEMA_VERSION
    rest: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data):
        """The typed results of a results.json dict of any schema version (see the module
        docstring); ValueError (one line) when a required field is missing."""
        data = _object(data, "results")
        version = data.get("schema_version", 0)
        if isinstance(version, bool) or not isinstance(version, int) \
                or not 0 <= version <= SCHEMA_VERSION:
            raise ValueError(f"results schema_version={version!r}: this keras_edd reads "
                             f"versions 0 to {SCHEMA_VERSION}")
        models = _object(data.get("models", {}), "results.models")
        fixed = data.get("at_fixed_fpr")
        return cls(
            kind=data.get("kind", "evaluation"),
            models={name: ModelResult.from_dict(m, f"models.{name}") for name, m in models.items()},
            evaluations=tuple(Evaluation.from_dict(e, f"evaluations[{i}]")
                              for i, e in enumerate(data.get("evaluations", []))),
            sweeps=tuple(Sweep.from_dict(s, f"sweeps[{i}]")
                         for i, s in enumerate(data.get("sweeps", []))),
            worst_case=tuple(WorstCase.from_dict(w, f"worst_case[{i}]")
                             for i, w in enumerate(data.get("worst_case", []))),
            at_fixed_fpr=None if fixed is None else FixedFpr.from_dict(fixed),
            standard=_per_target(data, "standard", StandardEvaluation),
            robustness_curves=_per_target(data, "robustness_curves", CurveRecord),
            num_examples=dict(data.get("num_examples", {})),
            warnings=tuple(data.get("warnings", [])),
            rest=_rest(data, _names(cls)))

    def get(self, key, default=None):
        """A section outside the typed schema (`rest`): 'settings', 'dataset', 'detection',
        'training', 'stage_seconds', 'versions', 'files', ..."""
        return self.rest.get(key, default)

    def replace(self, **changes):
        """A copy with fields changed; a name that is not a field goes into `rest`."""
        rest = {**self.rest, **{k: v for k, v in changes.items() if k not in _names(Results)}}
        return dataclasses.replace(self, **{k: v for k, v in changes.items()
                                            if k in _names(Results)}, rest=rest)

    def to_dict(self):
        """results.json's dict, in the current schema version."""
        out = _plain(self.rest)
        out.update(kind=self.kind, schema_version=SCHEMA_VERSION,
                   models={name: m.to_dict() for name, m in self.models.items()},
                   evaluations=[e.to_dict() for e in self.evaluations],
                   sweeps=[s.to_dict() for s in self.sweeps],
                   worst_case=[w.to_dict() for w in self.worst_case],
                   num_examples=_plain(self.num_examples), warnings=list(self.warnings))
        if self.at_fixed_fpr is not None:
            out["at_fixed_fpr"] = self.at_fixed_fpr.to_dict()
        for key in ("standard", "robustness_curves"):  # absent: not computed (as before 3)
            if getattr(self, key):
                out[key] = {name: entry.to_dict() for name, entry in getattr(self, key).items()}
        if isinstance(out.get("detection"), dict):
            out["detection"] = _detection_with_intervals(out["detection"])
        return out


def _detection_with_intervals(detection):
    """results.json "detection" (kept as recorded) with the Wilson interval of each
    operating point: tpr and fpr over the entry's count (as many clean as adversarial
    inputs), clean_accuracy and flagged over the target's num_examples."""
    for entry in detection.get("entries", []):
        for score in ("softmax", "margin"):
            for point in (entry.get(score) or {}).get("at_fpr", {}).values():
                point[INTERVALS] = _intervals(point, ("tpr", "fpr"), entry["count"])
    for target in detection.get("targets", {}).values():
        for score in target.get("scores", {}).values():
            for point in score.get("at_threshold", {}).values():
                point[INTERVALS] = _intervals(point, ("clean_accuracy", "flagged"),
                                              target["num_examples"])
    return detection


def as_results(results):
    """`results` as a Results (a dict is read with Results.from_dict)."""
    return results if isinstance(results, Results) else Results.from_dict(results)


def migrate(data):
    """A results.json dict of an older schema version rewritten in the current one: the
    same numbers, the fields of the schema, `schema_version`. Computes nothing."""
    return Results.from_dict(data).to_dict()


def write_results(path, results):
    """The one writer of results.json: `results` (a Results or its dict) in the current
    schema version, atomically, keys sorted. Returns the dict written."""
    data = as_results(results).to_dict()
    files.write_json(path, data)
    return data


def read_results(path):
    """results.json as a Results (any schema version)."""
    return Results.from_dict(files.read_json(path))
