"""Frozen configuration dataclasses; `validate()` raises a clear ValueError.

Binaries turn their flags into these objects and pass them to one library
function; the library never reads absl FLAGS.
"""

import dataclasses
import math
import re

OPTIMIZERS = ("adam", "adadelta")
DEFAULT_LEARNING_RATES = {"adam": 1e-3, "adadelta": 0.1}  # adadelta 0.1 as in cleverhans v1
DEFENSES = ("none", "distillation", "extended")
DEFAULT_TEMPERATURES = {"none": 1.0, "distillation": 100.0, "extended": 4.0}
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check(condition, message):
    if not condition:
        raise ValueError(message)


def _check_count(name, value, minimum=1):
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
           f"{name}={value!r}: must be an integer >= {minimum}")


def _check_real(name, value, low=-math.inf, high=math.inf, *, low_open=False, high_open=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    _check(ok, f"{name}={value!r}: allowed range is {interval}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset, from where (see keras_edd.data), and optional subset sizes."""
    dataset: str = "mnist"
    data_dir: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None

    def validate(self):
        from keras_edd.data import DATASETS  # light import, no TensorFlow
        _check(self.dataset in DATASETS,
               f"dataset={self.dataset!r}: allowed values are {', '.join(sorted(DATASETS))}")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None:
                _check_count(name, value)
        return self


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The optimisation of one model by the custom training loop."""
    epochs: int = 6
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float | None = None  # None: DEFAULT_LEARNING_RATES[optimizer]
    seed: int = 0

    def validate(self):
        _check_count("epochs", self.epochs)
        _check_count("batch_size", self.batch_size)
        _check(self.optimizer in OPTIMIZERS,
               f"optimizer={self.optimizer!r}: allowed values are {', '.join(OPTIMIZERS)}")
        if self.learning_rate is not None:
            _check_real("learning_rate", self.learning_rate, 0.0, low_open=True)
        _check_count("seed", self.seed, minimum=0)
        return self

    @property
    def resolved_learning_rate(self):
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return DEFAULT_LEARNING_RATES[self.optimizer]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A training run: data, optimisation, and where its directory lives."""
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    output_dir: str = "saved_models"
    run_name: str | None = None  # None: derived from the settings, so a rerun resumes
    progress: bool = True

    def validate(self):
        self.data.validate()
        self.train.validate()
        _check(bool(self.output_dir), "output_dir='': must name a directory")
        if self.run_name is not None:
            _check(bool(_RUN_NAME.match(self.run_name)),
                   f"run_name={self.run_name!r}: use letters, digits, '.', '_' or '-' "
                   "(not starting with '.' or '-')")
        return self

    def resolved_run_name(self, dataset_name):
        """The run directory name; the default names the dataset actually loaded
        (e.g. mnist_sample when MNIST fell back to the bundled sample)."""
        if self.run_name:
            return self.run_name
        return f"{dataset_name}-none-e{self.train.epochs}-s{self.train.seed}"

    def to_dict(self):
        return dataclasses.asdict(self)
