"""The cost of one attack step on a shipped model: keras_edd (TensorFlow) vs PyTorch.

    python benchmarks/attack_step_cost.py --model=undefended --batch_size=250 --threads=2

Prints one JSON object. An attack step of AutoAttack is a forward pass (Square's
queries; FAB's and APGD's verdicts) or a forward pass plus the gradient of a loss
with respect to the input (APGD, FAB). On the digits an attack never breaks, both
sides of benchmarks/autoattack_parity.py run the same number of such steps, so the
ratio of one step's cost bounds how much faster keras_edd can be there: this script
measures it. TensorFlow runs the step as keras_edd's attacks do (a tf.function over
the Keras model in inference mode, float32), and also on a mixed_bfloat16 copy
(keras_edd.models.with_precision) for comparison; PyTorch runs the layer-by-layer
port of the parity benchmark (autoattack_parity.port_to_torch), when torch is
installed (`pip install -e ".[cpu,parity]"`). Both use --threads threads; each time
is the median of --rounds rounds of --steps steps on random inputs in [0, 1], after
two untimed steps. "cpu" lists the machine's instruction-set flags: bfloat16 is
cheaper only on CPUs with AVX512_BF16 or AMX.
"""

import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402

import autoattack_parity as parity  # noqa: E402  (the torch port, machine facts)

_MODEL = flags.DEFINE_string("model", "undefended", "A paper:NAME model.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per round.", lower_bound=1)
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds; the median is reported.", lower_bound=1)
# --batch_size (images per step) and --threads (TF intra-op and torch) are the
# parity benchmark's flags, imported with it; its other flags do nothing here.


def median_seconds(step, steps, rounds):
    """The median over `rounds` of the mean seconds of one call of `step` (which
    returns something whose evaluation waits for the work)."""
    for _ in range(2):
        np.asarray(step())
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(steps):
            out = step()
        np.asarray(out)
        times.append((time.perf_counter() - started) / steps)
    return statistics.median(times)


def tensorflow_steps(model, x, y):
    """{"forward": callable, "gradient": callable} of one TF step on (x, y)."""
    import tensorflow as tf
    x, y = tf.constant(x), tf.constant(y)

    @tf.function
    def forward(images):
        return tf.cast(model(images, training=False), tf.float32)

    @tf.function
    def gradient(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                y, tf.cast(model(images, training=False), tf.float32)))
        return tape.gradient(loss, images)

    return {"forward": lambda: forward(x), "gradient": lambda: gradient(x)}


def torch_steps(torch_model, x, y):
    import torch
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(y.astype(np.int64))

    def forward():
        with torch.no_grad():
            return torch_model(images)

    def gradient():
        inputs = images.clone().requires_grad_()
        loss = torch.nn.functional.cross_entropy(torch_model(inputs), labels, reduction="sum")
        return torch.autograd.grad(loss, inputs)[0]

    return {"forward": forward, "gradient": gradient}


def measure(name, *, batch_size, steps, rounds, threads):
    from keras_edd import models
    parity.set_threads(threads)
    model = models.load_pretrained(f"paper:{name}")
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch_size).astype(np.int32)
    sides = {"tensorflow_float32": tensorflow_steps(model, x, y),
             "tensorflow_mixed_bfloat16": tensorflow_steps(
                 models.with_precision(model, "mixed_bfloat16"), x, y)}
    try:
        import torch
        sides["torch_float32"] = torch_steps(parity.port_to_torch(model).eval(), x, y)
    except ImportError:
        torch = None
    ms = {side: {kind: round(1e3 * median_seconds(step, steps, rounds), 2)
                 for kind, step in fns.items()} for side, fns in sides.items()}
    out = {"model": f"paper:{name}", "batch_size": batch_size, "steps": steps,
           "rounds": rounds, "threads": threads, "milliseconds_per_step": ms,
           "torch": "installed" if torch else "not installed: torch side skipped",
           "cpu": parity.machine(), "versions": parity.versions()}
    if torch:
        out["torch_over_tensorflow_float32"] = {
            kind: round(ms["torch_float32"][kind] / ms["tensorflow_float32"][kind], 2)
            for kind in ("forward", "gradient")}
    return out


def main(argv):
    del argv
    print(json.dumps(measure(_MODEL.value, batch_size=flags.FLAGS.batch_size,
                             steps=_STEPS.value, rounds=_ROUNDS.value,
                             threads=flags.FLAGS.threads), indent=1))


if __name__ == "__main__":
    app.run(main)
