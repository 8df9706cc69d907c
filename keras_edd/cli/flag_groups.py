"""The flags of the four binaries in bin/, defined from the settings, and their values.

Binary-side only: the library never imports this package or reads FLAGS. Each
binary defines, at module level, the flags of the run config it builds, and builds
it with keras_edd.cli.configs (keyword arguments only):

    flag_groups.define_flags(RunConfig)                                   # bin/train
    config = configs.build(RunConfig)

The flags are the settings' fields: each field carries its flag's name and help
(keras_edd.setting_fields), and `define_flags` walks the run config class and defines
one flag per field: DEFINE_enum for a choice (its enum in keras_edd.config or
keras_edd.attack_settings), DEFINE_list for a list, and so on. The attack settings
give `--<attack>_<field>` (or the name a field gives its flag, e.g. --pgd_restarts)
and the attacks with a cap `--num_examples_<attack>`. A flag has one default in every
binary: the field's value in bin/reproduce's ReproduceConfig() (e.g. --epochs=50, also
for bin/train), unless its field names another.

RUN_ONLY names the flags that are no setting: --quick (with --preset) and
--allow_probability_teacher (with --teacher). The model files (--model, --target,
--surrogate) are flags of their binaries, which set the config's model fields from them.

`--preset=NAME` (evaluation binaries) puts the values of keras_edd.presets.PRESETS[NAME]
in place of the flags' defaults (flags given on the command line still win): `quick`,
a few-minute demo on the bundled MNIST sample (`--quick` is the same), or `paper`,
the settings of Papernot & McDaniel (2017) for every model and attack.
"""

from absl import flags

from keras_edd import setting_fields
from keras_edd.presets import PRESETS
from keras_edd.runs.run_config import ReproduceConfig

# The flags that are no setting, with their help; each is defined with the setting flag
# it goes with.
RUN_ONLY = {
    "quick": ("preset", "Same as --preset=quick."),
    "allow_probability_teacher": (
        "teacher", "Use a --teacher whose outputs look like probabilities, not logits "
        "(refused otherwise: its MC-dropout sigma is meaningless)."),
}

_DEFINE = {"boolean": flags.DEFINE_boolean, "integer": flags.DEFINE_integer,
           "float": flags.DEFINE_float, "string": flags.DEFINE_string,
           "list": flags.DEFINE_list}
_FLAGS = {}  # flag name -> absl FlagHolder, for the flags this binary defined
# preset name -> flag name -> its value under that preset
_PRESET_VALUES = {name: setting_fields.flag_values(preset) for name, preset in PRESETS.items()}


def flag_specs(config_class):
    """name -> setting_fields.FlagSpec of the setting flags of `config_class`."""
    return setting_fields.flag_specs(config_class, defaults=(ReproduceConfig(),))


def define_flags(config_class, flag_values=flags.FLAGS):
    """Define the flags of run config class `config_class` (RunConfig, WhiteboxConfig,
    BlackboxConfig or ReproduceConfig): one per setting, and the RUN_ONLY flags that go
    with them (in `flag_values`, absl's FLAGS unless a test gives its own)."""
    specs = flag_specs(config_class)
    for spec in specs.values():
        if spec.kind == "enum":
            _FLAGS[spec.name] = flags.DEFINE_enum(spec.name, spec.default, spec.choices,
                                                  spec.help, flag_values=flag_values)
        else:
            _FLAGS[spec.name] = _DEFINE[spec.kind](spec.name, spec.default, spec.help,
                                                   flag_values=flag_values)
    for name, (with_flag, text) in RUN_ONLY.items():
        if with_flag in specs:
            _FLAGS[name] = flags.DEFINE_boolean(name, False, text, flag_values=flag_values)


# ------------------------------------------------------------------------ values


def defined(name):
    """True when this binary defined flag `name`."""
    return name in _FLAGS


def preset():
    """The preset chosen by --preset (or --quick), None without one."""
    holder, quick = _FLAGS.get("preset"), _FLAGS.get("quick")
    name = holder.value if holder is not None else None
    if quick is not None and quick.value:
        if name not in (None, "quick"):
            raise ValueError(f"--quick and --preset={name}: choose one preset")
        name = "quick"
    return name


def value(name):
    """The flag's value, or its preset's value when a preset is on and it was not given."""
    holder = _FLAGS[name]
    chosen = preset()
    if chosen is not None and not holder.present and name in _PRESET_VALUES[chosen]:
        return _PRESET_VALUES[chosen][name]
    return holder.value
