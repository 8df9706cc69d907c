"""The config dataclasses built from the flag values (keras_edd.cli.flag_groups).

One builder per config, keyword arguments only, each reading the flags of the
groups the binary defined (with its preset's values where a preset is on); the
configs' validate() then checks them. Binary-side only, like the rest of
keras_edd.cli.
"""

import dataclasses
import os

from keras_edd import attack_registry
from keras_edd import config as config_lib
from keras_edd import pretrained
from keras_edd.cli.flag_groups import defined, preset, value
from keras_edd.runs.run_config import ReproduceConfig


def _floats(name):
    values = []
    for text in value(name) or ():
        try:
            values.append(float(text))
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a number") from None
    return tuple(values)


def data_config():
    return config_lib.DataConfig(dataset=value("dataset"), data_dir=value("data_dir"),
                                 train_limit=value("train_limit"), test_limit=value("test_limit"))


def train_config():
    return config_lib.TrainConfig(epochs=value("epochs"), batch_size=value("batch_size"),
                                  optimizer=value("optimizer"),
                                  learning_rate=value("learning_rate"), seed=value("seed"),
                                  precision=value("precision"))


_ADV_TRAIN_FLAGS = ("adv_train_attack", "adv_train_eps", "adv_train_step", "adv_train_steps",
                    "adv_train_schedule", "adv_train_lr_max", "adv_train_keep_best")


def defense_config(defense=None):
    """--defense (or `defense`), alpha, T, N, penalty, teacher epochs, --teacher if defined;
    the --adv_train_* settings for the adversarial defense."""
    defense = defense or value("defense")
    adversarial = {name: value(name) for name in _ADV_TRAIN_FLAGS} if (
        defense == "adversarial" and defined("adv_train_attack")) else {}
    return config_lib.DefenseConfig(
        defense=defense, alpha=value("alpha"),
        # adversarial training is at T = 1; --temperature is the distillations' T
        temperature=None if defense == "adversarial" else value("temperature"),
        mc_passes=value("mc_passes"),
        penalty_weight=value("penalty_weight"), teacher_epochs=value("teacher_epochs"),
        teacher_path=model_file(value("teacher")) if defined("teacher") else None,
        **adversarial)


def attack_config():
    settings = {}
    for name, row in attack_registry.ATTACKS.items():
        values = {field.name: value(f"{name}_{flag}")
                  for field, flag in row.settings.flag_fields()}
        settings[name] = dataclasses.replace(row.settings, **values)
    return attack_registry.AttackConfig(settings=settings, batch_size=value("attack_batch_size"),
                                        seed=value("attack_seed"))


def eval_config():
    sweep_attacks = value("sweep_attacks")
    caps = {name: value(f"num_examples_{name}") or None
            for name in attack_registry.NAMES if defined(f"num_examples_{name}")}
    return config_lib.EvalConfig(
        attacks=tuple(value("attacks") or ()), num_examples=value("num_examples"),
        max_examples=caps,
        extra_examples=(value("num_examples_extra") or None) if defined("num_examples_extra")
        else None,
        adaptive=value("adaptive"), sweeps=value("sweeps"),
        sweep_attacks=None if sweep_attacks is None else tuple(sweep_attacks),
        sweep_eps=_floats("sweep_eps"), sweep_gamma=_floats("sweep_gamma"),
        sweep_kappa=_floats("sweep_kappa"), sweep_num_examples=value("sweep_num_examples"),
        masking_threshold=value("masking_threshold"),
        masking_min_inputs=value("masking_min_inputs"), check_examples=value("check_examples"),
        attack=attack_config())


def substitute_config():
    return config_lib.SubstituteConfig(
        initial=value("substitute_initial"), rounds=value("substitute_rounds"),
        lam=value("substitute_lam"), tau=value("substitute_tau"),
        epochs_per_round=value("substitute_epochs_per_round"),
        batch_size=value("substitute_batch_size"))


def distribution_config():
    """--distribution, --cpu_devices and, for multi_worker, the TF_CONFIG environment
    variable (read here, on the binary side: the library takes it as an argument)."""
    kind = value("distribution")
    return config_lib.DistributionConfig(
        kind=kind, cpu_devices=value("cpu_devices"),
        tf_config=os.environ.get("TF_CONFIG") if kind == "multi_worker" else None)


def output_settings():
    """output_dir, run_name, progress (and the preset, where defined) as keyword arguments
    of a config."""
    out = {"output_dir": value("output_dir"), "run_name": value("run_name"),
           "progress": value("progress")}
    if defined("preset"):
        out["preset"] = preset()
    return out


def model_file(value):
    """A model flag's `.keras` path: a pretrained name (`paper:extended`) becomes its
    sha256-checked file in saved_models/ (keras_edd.pretrained); a path stays as given."""
    return pretrained.resolve_model(value)


def reproduce_config():
    """bin/reproduce's ReproduceConfig from its flags (also tools/make_pretrained.py's)."""
    return ReproduceConfig(
        data=data_config(), train=train_config(),
        extended=defense_config("extended"), adversarial=defense_config("adversarial"),
        distillation_temperature=value("distillation_temperature"),
        adversarial_epochs=value("adversarial_epochs") or None,
        evaluation=eval_config(), jacobian_substitute=value("jacobian_substitute"),
        substitute=substitute_config(), model_dir=value("model_dir"),
        pretrained=value("pretrained"), distribution=distribution_config(),
        **output_settings())
