"""Settings fields that carry their command-line flag, and the one walker over them.

Every field of a settings dataclass (keras_edd.config, keras_edd.attack_settings,
keras_edd.attack_registry.AttackConfig, keras_edd.runs.run_config) says in its metadata
what it is on the command line:

  flag(name, help, ...)    the field is the flag --name, with this help text;
  nested(...)              the field is a settings dataclass whose fields are flags;
  per_key(keys, ...)       a dict field: one flag, or one nested settings object, per key
                           (the attack caps --num_examples_<attack>, the attack settings
                           --<attack>_<field>);
  no_flag(reason)          the field is deliberately not a flag (the reason says why).

The walker reads that metadata: `flag_specs(cls)` lists the flags of a run config class
(name, kind, default, help, choices), `build(cls, read)` builds the config from the flag
values `read` returns, and `flag_values(config)` turns a config object back into flag
values (what a preset puts in place of the defaults). So a new flag is one field with its
`flag(...)` metadata plus its use. The absl side (defining the flags, reading them) is
keras_edd.cli.flag_groups; this module needs neither absl nor TensorFlow.
"""

import dataclasses
import enum
import types
import typing

_FLAG, _NESTED, _PER_KEY, _NO_FLAG = "flag", "nested", "per_key", "no_flag"
_UNSET = object()
# What `read` returns for a flag the binary did not define: the field keeps its default.
MISSING = object()


@dataclasses.dataclass(frozen=True)
class Flag:
    """The flag of one settings field (see `flag`)."""
    name: str
    help: str
    choices: tuple | None = None
    items: type = str
    zero_is_none: bool = False
    model: bool = False
    when: object = None
    optional: bool = False
    default: object = _UNSET


@dataclasses.dataclass(frozen=True)
class Nested:
    fixed: dict
    include: tuple


@dataclasses.dataclass(frozen=True)
class PerKey:
    keys: object
    flag: Flag | None
    item: type


@dataclasses.dataclass(frozen=True)
class FlagSpec:
    """One flag as the command line defines it: kind is boolean, integer, float, string,
    enum or list."""
    name: str
    kind: str
    default: object
    help: str
    choices: tuple | None = None


def flag(name, help, *, choices=None, items=str, zero_is_none=False, model=False, when=None,
         optional=False, default=_UNSET, **metadata):
    """Field metadata: the field is the flag --`name` with `help`.

    choices: an enum class (or values): a DEFINE_enum flag. items: the type of a list
    flag's items (float: a bad item is a one-line error). zero_is_none: the flag's 0 is
    the field's None. model: the value names a model file or a pretrained model (the
    binary resolves it). when(values): read the flag only when this is true of the
    fields before it (e.g. the adversarial-training flags only for that defense).
    optional: defined only where the enclosing `nested(include=...)` names the field.
    default: the flag's default when it is not the field's value (e.g. None where the
    field resolves a default that depends on another field). Other keyword arguments are
    kept as metadata of their own (e.g. omit_default).
    """
    if choices is not None:
        choices = tuple(c.value if isinstance(c, enum.Enum) else c for c in choices)
    return {_FLAG: Flag(name=name, help=help, choices=choices, items=items,
                        zero_is_none=zero_is_none, model=model, when=when, optional=optional,
                        default=default), **metadata}


def nested(*, fixed=None, include=(), **metadata):
    """Field metadata: a settings dataclass whose fields are flags; `fixed` sets fields
    that are not flags here (e.g. reproduce's extended model has defense="extended"),
    `include` names the `optional` flags defined here."""
    return {_NESTED: Nested(fixed=dict(fixed or {}), include=tuple(include)), **metadata}


def per_key(keys, *, name=None, help=None, item=int, zero_is_none=False, **metadata):
    """Field metadata of a dict field: with `name` (containing "{key}"), one flag per key of
    `keys()` (an iterable of names); without, `keys()` maps each key to its default
    settings object, whose fields are flags prefixed "<key>_"."""
    spec = None if name is None else Flag(name=name, help=help, zero_is_none=zero_is_none)
    return {_PER_KEY: PerKey(keys=keys, flag=spec, item=item), **metadata}


def no_flag(reason, **metadata):
    """Field metadata: not a flag, for `reason` (e.g. set by the binary from --model)."""
    return {_NO_FLAG: reason, **metadata}


def flag_of(field):
    """The Flag of a dataclass field (named after the field unless it names itself), or
    None."""
    spec = field.metadata.get(_FLAG)
    if spec is None or spec.name:
        return spec
    return dataclasses.replace(spec, name=field.name)


def is_no_flag(field):
    return _NO_FLAG in field.metadata


def _base_type(annotation):
    """int for `int | None`, and so on."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else object
    return typing.get_origin(annotation) or annotation


def _kind(annotation, spec):
    if spec.choices is not None:
        return "enum"
    base = _base_type(annotation)
    for kind, types_ in (("boolean", (bool,)), ("integer", (int,)), ("float", (float,)),
                         ("list", (tuple, list)), ("string", (str,))):
        if base in types_:
            return kind
    raise TypeError(f"flag --{spec.name}: no flag kind for a field of type {annotation!r}")


def _optional(annotation):
    return type(None) in typing.get_args(annotation)


def _default_of(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(f"settings field {field.name!r} has no default")


def _included(spec, field, include):
    return not spec.optional or field.name in include


# ------------------------------------------------------------------------------- walker


def _leaves(cls, prefix="", include=(), fixed=None):
    """(flag name, field annotation, Flag) of every flag of settings class `cls`."""
    for field in dataclasses.fields(cls):
        if field.name in (fixed or {}):
            continue
        meta = field.metadata
        if _FLAG in meta:
            if _included(meta[_FLAG], field, include):
                yield prefix + flag_of(field).name, field.type, flag_of(field)
        elif _NESTED in meta:
            yield from _leaves(type(_default_of(field)), prefix, meta[_NESTED].include,
                               meta[_NESTED].fixed)
        elif _PER_KEY in meta:
            per = meta[_PER_KEY]
            if per.flag is None:
                for key, settings in per.keys().items():
                    yield from _leaves(type(settings), f"{prefix}{key}_")
            else:
                for key in per.keys():
                    spec = dataclasses.replace(per.flag, name=per.flag.name.format(key=key),
                                               help=per.flag.help.format(key=key))
                    yield prefix + spec.name, per.item, spec


def flag_values(config, prefix="", include=(), fixed=None):
    """The flag values that `build` turns into `config` (a settings object): name ->
    value, for the flags that apply to it. ValueError when one flag would need two
    values (e.g. two models that share --alpha given two alphas)."""
    out = {}
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}

    def put(name, value):
        if name in out and out[name] != value:
            raise ValueError(f"--{name} would be both {out[name]!r} and {value!r}: the "
                             "settings that share this flag must agree")
        out[name] = value

    for field in dataclasses.fields(config):
        if field.name in (fixed or {}):
            continue
        meta, value = field.metadata, values[field.name]
        if _FLAG in meta:
            spec = flag_of(field)
            if _included(spec, field, include) and (spec.when is None or spec.when(values)):
                put(prefix + spec.name, _to_flag(spec, value))
        elif _NESTED in meta:
            for name, v in flag_values(value, prefix, meta[_NESTED].include,
                                       meta[_NESTED].fixed).items():
                put(name, v)
        elif _PER_KEY in meta:
            per = meta[_PER_KEY]
            if per.flag is None:
                for key in per.keys():
                    for name, v in flag_values(value[key], f"{prefix}{key}_").items():
                        put(name, v)
            else:
                for key in per.keys():
                    put(prefix + per.flag.name.format(key=key), _to_flag(per.flag, value.get(key)))
    return out


def flag_specs(cls, defaults=()):
    """name -> FlagSpec of every flag of run config class `cls`. A flag's default is its
    Flag's `default` if set, else its value in the first of `defaults` (settings objects)
    where it applies, else in `cls()`."""
    known = {}
    for instance in (*defaults, cls()):
        for name, value in flag_values(instance).items():
            known.setdefault(name, value)
    specs = {}
    for name, annotation, spec in _leaves(cls):
        default = spec.default if spec.default is not _UNSET else known.get(name)
        specs[name] = FlagSpec(name=name, kind=_kind(annotation, spec), default=default,
                               help=spec.help, choices=spec.choices)
    return specs


def build(cls, read, *, prefix="", include=(), fixed=None, base=None):
    """A `cls` (settings dataclass) from flag values: `read(name, flag)` gives the value of
    flag `name` (MISSING: not defined here, the field keeps its default). `fixed` sets
    fields directly; `base` (an instance) gives the fields that are not flags."""
    kwargs = dict(fixed or {})
    for field in dataclasses.fields(cls):
        if field.name in kwargs:
            continue
        meta = field.metadata
        if _FLAG in meta:
            spec = flag_of(field)
            if not _included(spec, field, include) or (spec.when is not None and
                                                       not spec.when(kwargs)):
                continue
            raw = read(prefix + spec.name, spec)
            if raw is not MISSING:
                kwargs[field.name] = _from_flag(field.type, spec, raw, prefix + spec.name)
        elif _NESTED in meta:
            kwargs[field.name] = build(type(_default_of(field)), read, prefix=prefix,
                                       include=meta[_NESTED].include, fixed=meta[_NESTED].fixed)
        elif _PER_KEY in meta:
            per = meta[_PER_KEY]
            if per.flag is None:
                kwargs[field.name] = {key: build(type(settings), read, prefix=f"{prefix}{key}_",
                                                 base=settings)
                                      for key, settings in per.keys().items()}
            else:
                got = {}
                for key in per.keys():
                    spec = dataclasses.replace(per.flag, name=per.flag.name.format(key=key))
                    raw = read(prefix + spec.name, spec)
                    if raw is not MISSING:
                        got[key] = _from_flag(per.item, spec, raw, prefix + spec.name)
                kwargs[field.name] = got
    return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)


def _to_flag(spec, value):
    """A field's value as its flag's value."""
    if spec.zero_is_none and value is None:
        return 0
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [f"{v:g}" if isinstance(v, float) else str(v) for v in value]
    return value


def _from_flag(annotation, spec, raw, name):
    """A flag's value as its field's value."""
    if spec.zero_is_none:
        return raw or None
    if _kind(annotation, spec) == "list":
        if raw is None:
            return None if _optional(annotation) else ()
        values = []
        for text in raw:
            try:
                values.append(spec.items(text))
            except ValueError:
                raise ValueError(f"{name}: {text!r} is not a number") from None
        return tuple(values)
    return raw


def unflagged_fields(cls, seen=None):
    """The dotted names of the fields of settings class `cls` (and the settings inside it)
    that say nothing about their flag: neither flag, nested, per_key nor no_flag."""
    seen = set() if seen is None else seen
    if cls in seen:
        return []
    seen.add(cls)
    out = []
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if _NESTED in meta:
            out += [f"{field.name}.{n}" for n in unflagged_fields(type(_default_of(field)), seen)]
        elif _PER_KEY in meta and meta[_PER_KEY].flag is None:
            for key, settings in meta[_PER_KEY].keys().items():
                out += [f"{field.name}[{key}].{n}" for n in unflagged_fields(type(settings), seen)]
        elif not ({_FLAG, _PER_KEY, _NO_FLAG} & set(meta)):
            out.append(f"{cls.__name__}.{field.name}")
    return out


def differences(a, b, prefix=""):
    """The dotted names of the fields where settings objects `a` and `b` differ."""
    if type(a) is not type(b) or not dataclasses.is_dataclass(a):
        return [prefix.rstrip(".") or "(the object)"] if a != b else []
    out = []
    for field in dataclasses.fields(a):
        va, vb = getattr(a, field.name), getattr(b, field.name)
        if isinstance(va, dict) and isinstance(vb, dict):
            for key in sorted(set(va) | set(vb)):
                out += differences(va.get(key), vb.get(key), f"{prefix}{field.name}[{key}].")
        else:
            out += differences(va, vb, f"{prefix}{field.name}.")
    return out
