"""The run configs built from the flag values (keras_edd.cli.flag_groups).

`build(config_class, **given)` walks the settings (keras_edd.setting_fields) and reads
each field's flag, with the preset's value where a preset is on and the flag was not
given; `given` sets the fields a binary fills itself (its model files). The configs'
validate() then checks them. Binary-side only, like the rest of keras_edd.cli.
"""

import dataclasses
import os

from keras_edd import pretrained, setting_fields
from keras_edd.cli.flag_groups import defined, preset, value


def _read(name, flag):
    """A setting flag's value for setting_fields.build."""
    if not defined(name):
        return setting_fields.MISSING
    if name == "preset":
        return preset()
    raw = value(name)
    return model_file(raw) if flag.model and raw is not None else raw


def build(config_class, **given):
    """`config_class` (a run config of keras_edd.runs.run_config) from this binary's flags;
    for distribution=multi_worker also the TF_CONFIG environment variable (read here, on
    the binary side: the library takes it as an argument)."""
    config = setting_fields.build(config_class, _read, fixed=given)
    if config.distribution.kind == "multi_worker":
        config = dataclasses.replace(config, distribution=dataclasses.replace(
            config.distribution, tf_config=os.environ.get("TF_CONFIG")))
    return config


def standard_attacks(config):
    """bin/eval_whitebox --attacks=standard: `config` set to run keras_edd.evaluate's
    standard list alone, at apgd_ce's eps and norm (WhiteboxConfig.standard)."""
    attacks = config.evaluation.attacks
    if "standard" not in attacks:
        return config
    if attacks != ("standard",):
        raise ValueError(f"attacks={','.join(attacks)}: 'standard' (AutoAttack's list) runs "
                         "alone")
    return dataclasses.replace(config, standard=True, evaluation=dataclasses.replace(
        config.evaluation, attacks=("apgd_ce",), sweeps=False))


def model_file(value):
    """A model flag's `.keras` path: a pretrained name (`paper:extended`) becomes its
    sha256-checked file in saved_models/ (keras_edd.pretrained); a path stays as given."""
    return pretrained.resolve_model(value)
