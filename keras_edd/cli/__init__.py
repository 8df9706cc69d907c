"""The command line of the binaries in bin/ (binary-side only: the library never
imports this package or reads FLAGS).

  flag_groups  the flags of the four binaries, defined from their run configs' fields
               (keras_edd.setting_fields), and their values (presets applied:
               keras_edd.presets)
  configs      the run configs built from those values
  program      what every binary shares: flag errors as one line, the main wrapper,
               TensorFlow's start-up without its notices, the closing summary

Importing the package quiets TensorFlow's C++ logging before TensorFlow loads
(TF_CPP_MIN_LOG_LEVEL=2 unless already set), so a binary imports it first.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
