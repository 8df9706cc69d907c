"""The evaluation: attacking the trained models and scoring the attacks.

  attack_registry  one row per attack (its function, budget, settings dataclass):
                   dispatch, sweeps and flags read it; AttackConfig
  attack_settings  the settings dataclass of each attack, with its flags' help
  attack_cache     crafted adversarial examples kept so that no craft is computed twice
  engine           evaluate_models: clean checks, white-box and black-box runs, sweeps,
                   detection, stage by stage
  crafting         each craft computed once (or loaded), shared across workers
  scoring          one entry of rates per attack run, the checks, sweeps and
                   gradient-masking verdicts
  metrics          recovered / detected / misclassified, attack_failed, norms
  detection        the outlier class as a detector: scores, ROC, AUROC
  substitute       surrogate J, the Jacobian-augmented substitute of black-box attacks

The attacks themselves are keras_edd.attacks. Importing the package loads nothing:
the flags and configs read attack_registry before TensorFlow is imported.
"""
