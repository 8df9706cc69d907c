"""Settings drive the flags: every settings field is a flag (or says why not), every flag is a
field, the presets are typed configs checked at import, and a run directory records (and is
compared on) the settings of the attacks it runs."""

import dataclasses
import json
import os

import pytest
from absl import flags

from keras_edd import attack_registry, config, presets, setting_fields
from keras_edd.attack_registry import AttackConfig
from keras_edd.cli import configs, flag_groups
from keras_edd.config import DefenseConfig, EvalConfig
from keras_edd.presets import PAPER, QUICK
from keras_edd.runs import run_dirs
from keras_edd.runs.run_config import (BlackboxConfig, ReproduceConfig, RunConfig,
                                       WhiteboxConfig)
from keras_edd.setting_fields import flag

RUN_CONFIGS = (RunConfig, WhiteboxConfig, BlackboxConfig, ReproduceConfig)


def _field_flags(cls, prefix="", include=()):
    """The flag names the fields of `cls` declare, walked here from the metadata alone
    (not by setting_fields), with every field that is no flag named by its no_flag reason."""
    names = set()
    for field in dataclasses.fields(cls):
        meta = field.metadata
        spec = setting_fields.flag_of(field)
        if spec is not None:
            if not spec.optional or field.name in include:
                names.add(prefix + spec.name)
        elif "nested" in meta:
            fixed = meta["nested"].fixed
            inner = _field_flags(type(field.default), prefix, meta["nested"].include)
            names |= {n for n in inner if n not in {
                setting_fields.flag_of(f).name for f in dataclasses.fields(field.default)
                if f.name in fixed}}
        elif "per_key" in meta:
            per = meta["per_key"]
            if per.flag is None:
                for key, settings in per.keys().items():
                    names |= _field_flags(type(settings), f"{prefix}{key}_")
            else:
                names |= {per.flag.name.format(key=key) for key in per.keys()}
        else:
            assert setting_fields.is_no_flag(field) and meta["no_flag"], \
                f"{cls.__name__}.{field.name}: neither a flag nor a no_flag reason"
    return names


def _defined_flags(config_class, monkeypatch):
    values = flags.FlagValues()
    monkeypatch.setattr(flag_groups, "_FLAGS", {})
    flag_groups.define_flags(config_class, flag_values=values)
    return values


@pytest.mark.parametrize("config_class", RUN_CONFIGS, ids=lambda c: c.__name__)
def test_every_field_has_a_flag_and_every_flag_a_field(config_class, monkeypatch):
    assert setting_fields.unflagged_fields(config_class) == []
    defined = set(_defined_flags(config_class, monkeypatch))
    run_only = {name for name, (with_flag, _) in flag_groups.RUN_ONLY.items()
                if with_flag in defined}
    assert defined - run_only == _field_flags(config_class)
    # The run-only flags are documented and go with their setting flag.
    assert run_only == ({"quick"} if config_class is not RunConfig
                        else {"allow_probability_teacher"})


def test_a_field_without_a_flag_is_found():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Toy:
        flagged: int = dataclasses.field(default=1, metadata=flag("flagged", "A flag."))
        forgotten: int = 2

    assert setting_fields.unflagged_fields(Toy) == ["Toy.forgotten"]


def test_a_new_setting_is_one_field_with_its_flag():
    """The walker defines a field's flag from its metadata (an enum flag for choices, a list
    flag for a tuple) and builds the settings from the parsed flags."""
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Toy:
        rate: float = dataclasses.field(default=0.5, metadata=flag("toy_rate", "A rate."))
        mode: str = dataclasses.field(default="a", metadata=flag(
            "toy_mode", "A mode.", choices=("a", "b")))
        sizes: tuple = dataclasses.field(default=(1.0, 2.0), metadata=flag(
            "toy_sizes", "Sizes.", items=float))

    specs = setting_fields.flag_specs(Toy)
    assert {n: (s.kind, s.default) for n, s in specs.items()} == {
        "toy_rate": ("float", 0.5), "toy_mode": ("enum", "a"), "toy_sizes": ("list", ["1", "2"])}
    assert specs["toy_mode"].choices == ("a", "b")
    values = flags.FlagValues()
    holders = {s.name: (flags.DEFINE_enum(s.name, s.default, s.choices, s.help,
                                          flag_values=values) if s.kind == "enum" else
                        getattr(flags, f"DEFINE_{s.kind}")(s.name, s.default, s.help,
                                                           flag_values=values))
               for s in specs.values()}
    values(["prog", "--toy_mode=b", "--toy_sizes=0.25,4"])
    built = setting_fields.build(Toy, lambda name, _: holders[name].value)
    assert built == Toy(rate=0.5, mode="b", sizes=(0.25, 4.0))
    with pytest.raises(flags.IllegalFlagValueError):
        values(["prog", "--toy_mode=c"])


def test_the_flags_of_the_binaries_keep_their_defaults(monkeypatch):
    """One default per flag, bin/reproduce's (bin/train's --epochs too); enums list choices."""
    train = _defined_flags(RunConfig, monkeypatch)
    assert train["epochs"].default == 50 and train["temperature"].default is None
    assert train["defense"].default == "extended"
    assert set(train["defense"].parser.enum_values) == set(config.DEFENSES)
    evaluation = _defined_flags(WhiteboxConfig, monkeypatch)
    assert evaluation["attacks"].default == list(attack_registry.DEFAULT_NAMES)
    assert evaluation["sweep_eps"].default == [f"{v:g}" for v in config.DEFAULT_SWEEP_EPS]
    assert evaluation["num_examples_cw"].default == 100
    assert evaluation["cw_adam_optimizer"].default == "adam"
    assert evaluation["pgd_restarts"].help == "PGD random restarts."
    assert "num_examples_extra" not in evaluation and "num_examples_extra" in \
        _defined_flags(ReproduceConfig, monkeypatch)


def _built(config_class, argv, monkeypatch, **given):
    values = _defined_flags(config_class, monkeypatch)
    values(["prog", *argv])
    monkeypatch.setattr(flags, "FLAGS", values)
    return configs.build(config_class, **given)


def test_a_preset_fills_the_flags_not_given(monkeypatch):
    assert _built(ReproduceConfig, ["--preset=paper"], monkeypatch) == PAPER
    assert _built(ReproduceConfig, ["--quick"], monkeypatch) == QUICK
    explicit = _built(ReproduceConfig, ["--preset=paper", "--epochs=20", "--cw_max_iterations=7",
                                        "--num_examples_cw=5"], monkeypatch)
    assert explicit.train.epochs == 20 and explicit.extended.alpha == PAPER.extended.alpha
    assert explicit.evaluation.attack.settings["cw"].max_iterations == 7
    assert explicit.evaluation.max_examples["cw"] == 5
    assert explicit.evaluation.max_examples["jsma"] is None  # the paper's: no cap
    whitebox = _built(WhiteboxConfig, ["--preset=quick"], monkeypatch, model_path="m.keras")
    assert whitebox.evaluation == QUICK.evaluation and whitebox.data == QUICK.data
    assert whitebox.preset == "quick" and whitebox.model_path == "m.keras"


def test_the_presets_are_typed_run_configs():
    for name, preset in presets.PRESETS.items():
        assert isinstance(preset, ReproduceConfig) and preset.preset == name
        preset.validate()
    assert PAPER.evaluation.attack.settings["cw"].confidence == 7.0
    assert QUICK.data.dataset == "mnist_sample"


def _presets_source(old, new):
    path = os.path.join(os.path.dirname(presets.__file__), "presets.py")
    with open(path) as f:
        source = f.read()
    assert old in source
    return source.replace(old, new, 1)


@pytest.mark.parametrize("old,new,error,fragment", [
    ("dict(teacher_epochs=3, mc_passes=5)", "dict(teacher_epochs=3, mc_pases=5)", TypeError,
     "mc_pases"),
    ('_attack("square", max_queries=300)', '_attack("square", max_querys=300)', TypeError,
     "max_querys"),
    ('"square": _attack(', '"sqaure": _attack(', ValueError, "unknown attack 'sqaure'"),
    # a setting the extended model does not read: dead, not silently ignored
    ("extended=DefenseConfig(**_QUICK_MODELS)",
     "extended=DefenseConfig(adv_train_eps=0.2, **_QUICK_MODELS)", ValueError,
     "extended.adv_train_eps"),
    # two models that share --alpha given two values
    ("extended=DefenseConfig(**_QUICK_MODELS)",
     "extended=DefenseConfig(alpha=0.5, **_QUICK_MODELS)", ValueError, "--alpha would be both"),
])
def test_a_misspelt_or_dead_preset_setting_fails_at_import(old, new, error, fragment):
    source = _presets_source(old, new)
    with pytest.raises(error, match=fragment):
        exec(compile(source, "presets.py", "exec"), {"__name__": "presets_under_test"})


# ------------------------------------------------------------------------ run identity


def test_flags_json_records_the_settings_of_the_attacks_run():
    evaluation = EvalConfig(attacks=("fgsm", "jsma"), sweep_attacks=("pgd",))
    saved = WhiteboxConfig(model_path="m.keras", evaluation=evaluation).to_dict()["evaluation"]
    assert set(saved["attack"]) == {"fgsm_eps", "pgd_eps", "pgd_eps_iter", "pgd_nb_iter",
                                    "pgd_restarts", "pgd_loss", "jsma_theta", "jsma_gamma",
                                    "jsma_target_mode", "batch_size", "seed"}
    assert [k for k in saved if k.startswith("num_examples_")] == ["num_examples_jsma"]
    no_sweeps = dataclasses.replace(evaluation, sweeps=False).to_dict()
    assert not any(key.startswith("pgd_") for key in no_sweeps["attack"])


def _old_flags_json(config_, missing=("fab_t",)):
    """flags.json as the old rule wrote it (every attack's settings and caps, whichever
    attacks ran) before the attacks `missing` were in the registry."""
    flags_ = json.loads(json.dumps(config_.to_dict()))
    evaluation = flags_["evaluation"]
    for name in attack_registry.NAMES:
        if name not in missing:
            evaluation["attack"].update(attack_registry.settings_keys(name))
            if attack_registry.get(name).max_examples:
                evaluation[f"num_examples_{name}"] = attack_registry.get(name).max_examples
    return flags_


def _started_run(tmp_path, flags_):
    folder = tmp_path / "whitebox-run"
    folder.mkdir()
    (folder / "flags.json").write_text(json.dumps(flags_))
    (folder / "attacks").mkdir()  # started: something besides flags.json
    return folder


def test_an_old_evaluation_run_resumes_after_an_attack_joined_the_registry(tmp_path):
    current = WhiteboxConfig(model_path="m.keras",
                             evaluation=EvalConfig(attacks=("fgsm", "pgd"), sweeps=False))
    old = _old_flags_json(current)
    # The rule before: every attack's settings saved and compared, so the run was refused
    # with "other settings (evaluation.attack.fab_t_eps, ...)".
    def old_rule(flags_):
        return {k: v for k, v in flags_.items() if k not in config.NOT_SETTINGS}
    assert list(config.identity_diff(old_rule(old), old_rule(_old_flags_json(current, ())))) \
        == sorted(f"evaluation.attack.{key}" for key in attack_registry.settings_keys("fab_t"))
    _started_run(tmp_path, old)
    path, finished = run_dirs.prepare_run_dir(str(tmp_path), "whitebox-run", current.to_dict())
    assert not finished and json.loads((tmp_path / "whitebox-run" / "flags.json").read_text()) \
        == old  # kept as it was


def test_the_settings_of_the_attacks_run_still_identify_the_run(tmp_path):
    current = WhiteboxConfig(model_path="m.keras",
                             evaluation=EvalConfig(attacks=("fgsm", "pgd"), sweeps=False))
    old = _old_flags_json(current)
    old["evaluation"]["attack"]["pgd_eps"] = 0.3  # an attack the run runs
    old["evaluation"]["attack"]["cw_confidence"] = 3.0  # one it does not: ignored
    _started_run(tmp_path, old)
    with pytest.raises(run_dirs.RunDirError,
                       match=r"other settings \(evaluation\.attack\.pgd_eps\)"):
        run_dirs.prepare_run_dir(str(tmp_path), "whitebox-run", current.to_dict())


def test_attacks_run_counts_the_swept_ones():
    assert config.attacks_run(("fgsm",), True, ("pgd",)) == ("fgsm", "pgd")
    assert config.attacks_run(("fgsm", "cw"), True, None) == ("fgsm", "cw")
    assert config.attacks_run(("fgsm",), False, ("pgd",)) == ("fgsm",)


def test_attack_config_refuses_an_unknown_attack():
    with pytest.raises(ValueError, match="unknown attack 'fgsn'"):
        AttackConfig(settings={"fgsn": attack_registry.get("fgsm").settings})


def test_a_defense_reads_only_its_own_flags():
    """--adv_train_* apply to adversarial training only, --temperature to the others."""
    values = {"defense": "extended", "adv_train_eps": 0.1, "temperature": 3.0, "alpha": 0.5}
    read = (lambda name, _: values.get(name, setting_fields.MISSING))
    assert setting_fields.build(DefenseConfig, read) == DefenseConfig(temperature=3.0, alpha=0.5)
    values["defense"] = "adversarial"
    assert setting_fields.build(DefenseConfig, read) == DefenseConfig(
        defense="adversarial", adv_train_eps=0.1, alpha=0.5)


def test_the_settings_that_identify_each_defense_come_from_the_fields():
    """keras_edd.pretrained compares a pretrained model on these (a new adv_train_* field
    with config._adv_train_flag metadata is compared without another edit)."""
    adversarial = tuple(f.name for f in dataclasses.fields(DefenseConfig)
                        if f.name.startswith("adv_train_"))
    assert len(adversarial) == 7
    assert {d: config.defense_identifies(d) for d in config.DEFENSES} == {
        "none": (), "adversarial": adversarial,
        "distillation": ("temperature", "teacher_epochs"),
        "extended": ("alpha", "temperature", "mc_passes", "penalty_weight")}
