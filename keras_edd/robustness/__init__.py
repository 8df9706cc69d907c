"""One-call robustness evaluation of a Keras model: `keras_edd.evaluate`.

  evaluate_model  evaluate(): AutoAttack's bookkeeping, the outlier-class thresholds
  curve           robustness_curve(): eps* per digit (FAB, FAB-T), robust accuracy over eps
  suite           the attacks evaluate() can run and AutoAttack's standard list
  inputs          the checks of the model, images (uint8 or [0, 1] floats), labels
  points          how a returned point is judged (norms, tolerance, who wins), the checks
  result          RobustnessResult, ThresholdResult: summary(), to_dict()
  curve_result    RobustnessCurve: summary(), to_dict()
  rates           Rate (k of n) and its 95 % Wilson interval

It sits above keras_edd.attacks and keras_edd.evaluation (the attack registry's
names; detection's outlier score and false-alarm threshold) and imports TensorFlow only when
`keras_edd.evaluate` or `keras_edd.robustness_curve` is first used (keras_edd's lazy exports).
"""

from keras_edd.robustness.curve import robustness_curve
from keras_edd.robustness.curve_result import RobustnessCurve
from keras_edd.robustness.evaluate_model import evaluate
from keras_edd.robustness.rates import Rate, wilson_interval
from keras_edd.robustness.result import RobustnessResult, ThresholdResult

__all__ = ["Rate", "RobustnessCurve", "RobustnessResult", "ThresholdResult", "evaluate",
           "robustness_curve", "wilson_interval"]
