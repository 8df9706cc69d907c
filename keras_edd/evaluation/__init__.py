"""The evaluation: attacking the trained models and scoring the attacks.

  attack_registry  one row per attack (its function, budget, settings dataclass):
                   dispatch, sweeps and flags read it; AttackConfig
  attack_cache     crafted adversarial examples kept so that no craft is computed twice
  engine           white-box and black-box runs, budget sweeps, sanity checks
  metrics          recovered / detected / misclassified, attack_failed, norms
  detection        the outlier class as a detector: scores, ROC, AUROC
  substitute       surrogate J, the Jacobian-augmented substitute of black-box attacks

The attacks themselves are keras_edd.attacks. Importing the package loads nothing:
the flags and configs read attack_registry before TensorFlow is imported.
"""
