"""One-call robustness evaluation of a Keras model: `keras_edd.evaluate`.

  evaluate_model  evaluate(): AutoAttack's bookkeeping, the outlier-class thresholds
  suite           the attacks evaluate() can run and AutoAttack's standard list
  inputs          the checks of the model, images (uint8 or [0, 1] floats), labels
  result          RobustnessResult, ThresholdResult: summary(), to_dict()
  rates           Rate (k of n) and its 95 % Wilson interval

It sits above keras_edd.attacks and keras_edd.evaluation (the attack registry's
names; detection's outlier score and false-alarm threshold) and imports TensorFlow only when evaluate() runs.
"""

from keras_edd.robustness.evaluate_model import evaluate
from keras_edd.robustness.rates import Rate, wilson_interval
from keras_edd.robustness.result import RobustnessResult, ThresholdResult

__all__ = ["Rate", "RobustnessResult", "ThresholdResult", "evaluate", "wilson_interval"]
