"""The defense: making the models that are later attacked.

  losses                temperature cross-entropy and the logit penalty (pure math)
  labeling              MC-dropout uncertainty sigma(x), outlier-class labels k(x),
                        distillation labels
  training              the custom training loop: epochs, checkpoints and resuming,
                        TensorBoard scalars
  train_step            its compiled step, on one device or over replicas
  adversarial_training  the training-time adversaries of the adversarial-training baseline

Importing the package loads nothing; the defense's settings, defaults and choices
(ADV_TRAIN_ATTACKS, the adversaries' steps) are keras_edd.config's.
"""
