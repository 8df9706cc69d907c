"""Jobs the tf.distribute tests run in their own processes (logical devices and
collective ops are set up once per process, before TensorFlow runs anything).

    python tests/distributed_jobs.py mirrored OUT.json
        train a tiny dropout-free CNN on one device and on 2 logical CPU devices
        (MirroredStrategy) from the same start; write both loss trajectories and
        the largest weight difference.
        Then the same mirrored run stopped after 2 epochs and resumed from its
        checkpoint to 4.

    python tests/distributed_jobs.py eval_whitebox OUT.json FLAGS...
        bin/eval_whitebox FLAGS (one worker of a cluster when TF_CONFIG and
        --distribution=multi_worker say so), recording in OUT.json the inputs each
        attack call got: {"calls": [{"attack", "start", "inputs"}]}, where start is
        the call's seed less --attack_seed (0), i.e. the index of its first input.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _images(n, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), np.arange(n) % 10


def mirrored(out):
    import keras
    import numpy as np
    from keras_edd import distribute, models
    from keras_edd.config import DistributionConfig
    from keras_edd.defense import training
    dist = distribute.start(DistributionConfig(kind="mirrored", cpu_devices=2))
    x, y = _images(128)
    targets = training.one_hot(y, 10)
    result = {"replicas": dist.num_replicas}
    weights = {}
    for name, distribution in (("single", None), ("mirrored", dist)):
        keras.utils.set_random_seed(3)
        with (dist.scope() if distribution else distribute.LOCAL.scope()):
            model = models.cleverhans_cnn(10, input_dropout=0.0, hidden_dropout=0.0)
        history = training.fit(model, x, targets, epochs=4, batch_size=32, seed=3,
                               learning_rate=1e-3, progress=False, log_epochs=False,
                               distribution=distribution)
        result[name] = history["train/loss"]
        result[name + "_accuracy"] = history["train/accuracy"]
        weights[name] = [np.asarray(w) for w in model.get_weights()]
    # Resume under the strategy: 2 epochs, a new process-like start, 2 more from the checkpoint.
    checkpoints = os.path.join(os.path.dirname(os.path.abspath(out)), "mirrored_checkpoints")
    for epochs in (2, 4):
        keras.utils.set_random_seed(3)
        with dist.scope():
            model = models.cleverhans_cnn(10, input_dropout=0.0, hidden_dropout=0.0)
        history = training.fit(model, x, targets, epochs=epochs, batch_size=32, seed=3,
                               learning_rate=1e-3, progress=False, log_epochs=False,
                               checkpoint_dir=checkpoints, distribution=dist)
    result["resumed"] = history["train/loss"]
    result["resumed_from_epoch"] = history["resumed_from_epoch"]
    result["max_weight_difference"] = max(
        float(np.max(np.abs(a - b))) for a, b in zip(weights["single"], weights["mirrored"]))
    result["max_resumed_weight_difference"] = max(
        float(np.max(np.abs(a - np.asarray(b))))
        for a, b in zip(weights["mirrored"], model.get_weights()))
    with open(out, "w") as f:
        json.dump(result, f)


def eval_whitebox(out, *flags):
    import runpy
    from keras_edd.evaluation import crafting
    calls = []
    craft = crafting.run_attack

    def recording(model, name, x, params, **kwargs):
        calls.append({"attack": name, "start": int(kwargs.get("seed", 0)), "inputs": len(x)})
        return craft(model, name, x, params, **kwargs)

    crafting.run_attack = recording
    sys.argv = ["bin/eval_whitebox", *flags]
    try:
        runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "bin", "eval_whitebox"), run_name="__main__")
    except SystemExit as exc:
        if exc.code:
            raise
    finally:
        with open(out, "w") as f:
            json.dump({"calls": calls}, f)


if __name__ == "__main__":
    {"mirrored": mirrored, "eval_whitebox": eval_whitebox}[sys.argv[1]](*sys.argv[2:])
