"""keras_edd: extended defensive distillation and fast TF2 adversarial attacks.

Reproduces "Extending Defensive Distillation" (Papernot & McDaniel, 2017) in
TensorFlow 2 / Keras 3. The pipeline reads, folder by folder:
data, models -> defense/ (losses, MC-dropout labels, the training loop) ->
attacks/ -> evaluation/ (attack registry, engine, metrics, detection, surrogate J)
-> reporting/ (results files, report.md, TensorBoard, figures). runs/ holds the
run directories and the runs of the binaries (train, evaluate, reproduce: the
whole pipeline). Settings: config; the flags of bin/: cli/.
"""

__version__ = "0.1.0"

import importlib.util as _importlib_util

# Checked without importing TensorFlow, so light entry points (flag validation) stay fast.
if _importlib_util.find_spec("tensorflow") is None:  # pragma: no cover - environment
    raise ImportError(
        "keras_edd needs TensorFlow >= 2.16: install it with "
        "`pip install 'keras_edd[cpu]'` (CPU) or `pip install 'keras_edd[gpu]'` (CUDA)")

# The public API, loaded on first use so that `import keras_edd` stays light.
_LAZY = {
    "evaluate": ("keras_edd.robustness", "evaluate"),
    "RobustnessResult": ("keras_edd.robustness", "RobustnessResult"),
    "robustness_curve": ("keras_edd.robustness", "robustness_curve"),
    "RobustnessCurve": ("keras_edd.robustness", "RobustnessCurve"),
    "Rate": ("keras_edd.robustness", "Rate"),
    "load_pretrained": ("keras_edd.models", "load_pretrained"),
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_edd' has no attribute {name!r}")
    import importlib
    module, attribute = _LAZY[name]
    return getattr(importlib.import_module(module), attribute)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
