"""keras_edd: extended defensive distillation and fast TF2 adversarial attacks.

Reproduces "Extending Defensive Distillation" (Papernot & McDaniel, 2017) in
TensorFlow 2 / Keras 3. The pipeline reads, module by module:
data -> models -> labeling (MC-dropout sigma, outlier labels) -> training (the
loop) -> train_run (teacher -> labels -> distilled model) -> attacks/ and
attack_registry -> metrics (the rates) -> evaluation (the engine) -> reproduce
(the whole pipeline) -> reporting. Settings: config; flags of bin/: cli.
"""

__version__ = "0.1.0"

import importlib.util as _importlib_util

# Checked without importing TensorFlow, so light entry points (flag validation) stay fast.
if _importlib_util.find_spec("tensorflow") is None:  # pragma: no cover - environment
    raise ImportError(
        "keras_edd needs TensorFlow >= 2.16: install it with "
        "`pip install 'keras_edd[cpu]'` (CPU) or `pip install 'keras_edd[gpu]'` (CUDA)")
