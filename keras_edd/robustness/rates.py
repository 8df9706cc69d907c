"""Rates with their uncertainty: `Rate` (k of n) and `wilson_interval`.

They live in keras_edd.stats, the one implementation of the Wilson interval that every
layer uses (results.json, results.csv, report.md, the masking check); imported here so
`keras_edd.robustness.rates` keeps working.
"""

from keras_edd.stats import Z_95, Rate, wilson_interval

__all__ = ["Rate", "Z_95", "wilson_interval"]
