"""Whole runs: data -> model(s) -> run directory with models, logs and results.

`train_run(config)` is what `bin/train` calls. It validates everything and loads
the data before it writes anything, then trains in a run directory
(keras_edd.runs) that a rerun with the same settings resumes.
"""

import os
import time

import keras

from keras_edd import data as data_lib
from keras_edd import models, runs, training


def load_data(data_config):
    return data_lib.load_dataset(data_config.dataset, data_config.data_dir,
                                 train_limit=data_config.train_limit,
                                 test_limit=data_config.test_limit)


def train_run(config):
    """Train the undefended classifier f at T = 1 and save it as `model.keras`.

    Returns the results dict that is also written to `results.json`.
    """
    config.validate()
    t_start = time.perf_counter()
    dataset = load_data(config.data)
    if len(dataset.y_train) < config.train.batch_size:
        raise ValueError(f"batch_size={config.train.batch_size} exceeds the "
                         f"{len(dataset.y_train)} training examples")
    run_dir, finished = runs.prepare_run_dir(config.output_dir, config.resolved_run_name(dataset.name),
                                             config.to_dict())
    if finished:
        return runs.read_json(os.path.join(run_dir, "results.json"))
    keras.utils.set_random_seed(config.train.seed)
    model = models.cleverhans_cnn(dataset.num_classes, dataset.input_shape)
    train = config.train
    history = training.fit(
        model, dataset.x_train, training.one_hot(dataset.y_train, dataset.num_classes),
        epochs=train.epochs, batch_size=train.batch_size, optimizer=train.optimizer,
        learning_rate=train.resolved_learning_rate, seed=train.seed,
        eval_data=(dataset.x_test, dataset.y_test),
        checkpoint_dir=os.path.join(run_dir, "checkpoints", "model"),
        log_dir=os.path.join(run_dir, "logs", "model"), progress=config.progress,
        description="model")
    runs.save_model(model, os.path.join(run_dir, "model.keras"))
    clean = training.evaluate(model, dataset.x_test, dataset.y_test)
    results = {
        "run_dir": os.path.abspath(run_dir),
        "defense": "none",
        "dataset": dataset.summary(),
        "seed": train.seed,
        "settings": config.to_dict(),
        "models": {"model": {"path": "model.keras", "clean_accuracy": clean["accuracy"],
                             "parameters": int(model.count_params()), "history": history}},
        "clean_test_accuracy": clean["accuracy"],
        "versions": runs.versions(),
        "wall_seconds": time.perf_counter() - t_start,
    }
    runs.write_json(os.path.join(run_dir, "results.json"), results)
    return results
