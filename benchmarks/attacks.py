"""Benchmark keras_edd attacks against IBM ART 1.20 and cleverhans 4.0.0.

Same model, same inputs (the first --num_examples correctly classified test
digits), same parameters, one process; prints one JSON document.

  python benchmarks/attacks.py --model=saved_models/mnist-none-e6-s0/model.keras \
      --data_dir=../shared/data/mnist --competitor_examples=200 \
      --art_cw_examples=20 --output=/tmp/attacks.json

Optional competitors: `pip install "adversarial-robustness-toolbox==1.20.*"
"cleverhans==4.0.0"` (cleverhans may be installed with --no-deps); a missing
one is skipped with a note. Slow competitors run on the first
--competitor_examples / --art_cw_examples inputs only; each row states its `n`.

Per row: adv_per_s = n / wall-clock seconds of the fastest repeated call on
the same inputs (steady state; --repeats), adv_per_s_cold = n / seconds of the
first call (tracing included for ours; CW is run once), success_rate (untargeted: label != true label; JSMA:
reached its target), mean L0 / L2 / L_inf of x_adv - x over the successful
examples.

Square (score-based, no gradients): same eps, p_init and query budget for both.
ART's max_iter = N iterations come after a query on x and the stripe start, so
ours gets max_queries = N + 2 (its count includes those two); our row also
reports the mean / median / max queries per digit. ART draws from numpy's global
generator, seeded with --seed before each call.
"""

import json
import os
import platform
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

_MODEL = flags.DEFINE_string("model", None, "Trained model (.keras, logits output).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with the four MNIST IDX files.")
_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset name for keras_edd.data.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 200, "Correctly classified test inputs.")
_COMPETITOR_EXAMPLES = flags.DEFINE_integer(
    "competitor_examples", 200, "Inputs given to ART JSMA / PGD / Square and cleverhans PGD.")
_ART_CW_EXAMPLES = flags.DEFINE_integer(
    "art_cw_examples", 20, "Inputs given to ART's Carlini-Wagner (slow: ~0.15 adv/s).")
_ATTACKS = flags.DEFINE_list("attacks", ["fgsm", "jsma", "cw", "pgd", "square"],
                             "Attacks to run.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for JSMA targets, PGD starts and Square.")
_CW_EXTRA_LR = flags.DEFINE_float(
    "cw_extra_learning_rate", 0.1,
    "Also run our CW with this Adam learning rate (0 disables); see the report.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 2, "Calls per implementation on the same inputs (CW: always 1); adv_per_s "
    "uses the fastest call after the first, adv_per_s_cold the first.")
_SQUARE_EPS = flags.DEFINE_float(
    "square_eps", 0.3, "L_inf radius for Square (both implementations); 0.3 is the usual "
    "MNIST value, smaller radii separate the implementations' success rates.")
_SQUARE_MAX_ITER = flags.DEFINE_integer(
    "square_max_iter", 1000, "Square iterations after the start (ART max_iter; ours gets "
    "max_queries = this + 2).")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON here.")

SETTINGS = {
    "fgsm": {"eps": 0.2},
    "jsma": {"theta": 1.0, "gamma": 0.07, "targets": "random t != y (seeded)"},
    "cw": {"confidence": 7.0, "max_iterations": 100, "binary_search_steps": 5,
           "learning_rate": 0.01, "initial_const": 0.01},
    "pgd": {"eps": 0.2, "eps_iter": 0.01, "nb_iter": 40, "rand_init": True},
    "square": {"p_init": 0.8, "nb_restarts": 1},  # eps and max_iter: --square_* flags
}


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _row(attack, implementation, x, x_adv, labels, seconds, *, targets=None, model=None,
         confidence=None, notes=None, settings=None):
    """Success and distortion statistics for one (attack, implementation) run."""
    import numpy as np
    from keras_edd.attacks import perturbation_norms
    x_adv = np.asarray(x_adv, np.float32)
    logits = np.asarray(model.predict(x_adv, batch_size=256, verbose=0))
    predicted = logits.argmax(axis=1)
    success = predicted == targets if targets is not None else predicted != labels
    norms = perturbation_norms(x, x_adv)
    n = len(x)
    cold, warm = seconds
    row = {
        "attack": attack, "implementation": implementation, "n": n,
        "seconds_cold": round(cold, 3), "seconds_warm": round(warm, 3) if warm else None,
        "adv_per_s": round(n / (warm or cold), 3), "adv_per_s_cold": round(n / cold, 3),
        "success_rate": round(float(success.mean()), 4),
        "misclassification_rate": round(float((predicted != labels).mean()), 4),
    }
    for name in ("l0", "l2", "linf"):
        row[f"mean_{name}"] = (round(float(norms[name][success].mean()), 4)
                               if success.any() else None)
    in_box = bool(x_adv.min() >= 0.0 and x_adv.max() <= 1.0)
    row["outputs_in_box"] = in_box
    if confidence is not None:
        own = logits[np.arange(n), labels]
        others = logits.copy()
        others[np.arange(n), labels] = -np.inf
        margin = others.max(axis=1) - own
        row["success_with_margin_ge_kappa"] = round(float((margin >= confidence - 1e-3).mean()), 4)
        row["min_margin_of_successes"] = (round(float(margin[success].min()), 4)
                                          if success.any() else None)
    if settings:
        row["settings"] = settings
    if notes:
        row["notes"] = notes
    _log(json.dumps(row))
    return row


def _skipped(attack, implementation, reason):
    row = {"attack": attack, "implementation": implementation, "skipped": reason}
    _log(json.dumps(row))
    return row


def _timed(fn, repeats=1):
    """Runs fn `repeats` times on the same inputs: (result, (cold, warm or None)).

    cold = the first call (tracing included); warm = the fastest later call.
    """
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, (times[0], min(times[1:]) if len(times) > 1 else None)


def _art_classifier(model, input_shape, num_classes):
    import keras
    from art.estimators.classification import TensorFlowV2Classifier
    return TensorFlowV2Classifier(
        model=model, nb_classes=num_classes, input_shape=input_shape,
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0))


def _import_or_none(name):
    try:
        module = __import__(name, fromlist=["_"])
        return module, None
    except Exception as exc:  # noqa: BLE001 - any import failure skips the competitor
        return None, f"{name} not importable ({type(exc).__name__}: {exc})"


def run(model_path, data_dir, *, dataset="mnist", num_examples=200, competitor_examples=200,
        art_cw_examples=20, attacks=("fgsm", "jsma", "cw", "pgd", "square"), seed=0,
        cw_extra_learning_rate=0.1, repeats=2, square_eps=0.3, square_max_iter=1000):
    """Runs the benchmark and returns the result dictionary."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_edd import attacks as ours
    from keras_edd import data

    model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    model_fn = ours.utils.as_model_fn(model)
    loaded = data.load_dataset(dataset, data_dir=data_dir, allow_download=False)
    x_test = data.to_float(loaded.x_test)
    y_test = np.asarray(loaded.y_test).astype(np.int64)
    predicted = model.predict(x_test, batch_size=512, verbose=0).argmax(axis=1)
    correct = np.flatnonzero(predicted == y_test)
    x = x_test[correct[:num_examples]]
    labels = y_test[correct[:num_examples]]
    num_classes = int(model.output_shape[-1])
    input_shape = tuple(x.shape[1:])
    checks = ours.run_all_checks(model_fn, x[:64], labels[:64], action="warn")

    art, art_error = _import_or_none("art")
    cleverhans_pgd, ch_error = _import_or_none("cleverhans.tf2.attacks.projected_gradient_descent")
    cleverhans_fgm, _ = _import_or_none("cleverhans.tf2.attacks.fast_gradient_method")
    classifier = _art_classifier(model, input_shape, num_classes) if art else None
    nc = min(competitor_examples, len(x))
    timed = lambda fn: _timed(fn, repeats)  # CW runs once: each call is slow and traces anew
    rows = []

    if "fgsm" in attacks:
        eps = SETTINGS["fgsm"]["eps"]
        x_adv, sec = timed(lambda: ours.fgsm(model_fn, x, eps=eps).numpy())
        rows.append(_row("fgsm", "keras_edd", x, x_adv, labels, sec, model=model))
        if classifier is not None:
            from art.attacks.evasion import FastGradientMethod
            attack = FastGradientMethod(classifier, eps=eps, batch_size=nc)
            x_adv, sec = timed(lambda: attack.generate(x[:nc]))
            rows.append(_row("fgsm", "art", x[:nc], x_adv, labels[:nc], sec, model=model))
        if cleverhans_fgm is not None:
            x_adv, sec = timed(lambda: cleverhans_fgm.fast_gradient_method(
                model, tf.constant(x[:nc]), eps, np.inf, clip_min=0.0, clip_max=1.0).numpy())
            rows.append(_row("fgsm", "cleverhans4", x[:nc], x_adv, labels[:nc], sec,
                             model=model))

    if "jsma" in attacks:
        theta, gamma = SETTINGS["jsma"]["theta"], SETTINGS["jsma"]["gamma"]
        targets = ours.random_targets(labels, num_classes, seed=seed)
        variants = [
            ("keras_edd", dict(), "probabilities (cleverhans v1), top-2 pair search "
             "(exact for probabilities, see jsma.py)"),
            ("keras_edd_pair_matrix", dict(pair_search="matrix"),
             "probabilities, explicit 784x784 pair matrix (the literal cleverhans-v1 search)"),
            ("keras_edd_logits", dict(use_logits=True),
             "logit Jacobian, explicit pair matrix"),
        ]
        for name, kwargs, note in variants:
            x_adv, sec = timed(lambda: ours.jsma(model_fn, x, targets, theta=theta,
                                                  gamma=gamma, **kwargs).numpy())
            rows.append(_row("jsma", name, x, x_adv, labels, sec, targets=targets,
                             model=model, notes=note))
        if classifier is not None:
            from art.attacks.evasion import SaliencyMapMethod
            attack = SaliencyMapMethod(classifier, theta=theta, gamma=gamma,
                                       batch_size=nc, verbose=False)
            one_hot = np.eye(num_classes, dtype=np.float32)[targets[:nc]]
            x_adv, sec = timed(lambda: attack.generate(x[:nc], y=one_hot))
            rows.append(_row("jsma", "art", x[:nc], x_adv, labels[:nc], sec,
                             targets=targets[:nc], model=model,
                             notes="ART differentiates the model output (logits here)"))
        else:
            rows.append(_skipped("jsma", "art", art_error))

    if "cw" in attacks:
        cw = SETTINGS["cw"]
        kappa = cw["confidence"]
        common = dict(confidence=kappa, max_iterations=cw["max_iterations"],
                      binary_search_steps=cw["binary_search_steps"],
                      initial_const=cw["initial_const"])
        learning_rates = [cw["learning_rate"]]
        if cw_extra_learning_rate:
            learning_rates.append(cw_extra_learning_rate)
        for lr in learning_rates:
            x_adv, sec = _timed(lambda: ours.carlini_wagner_l2(
                model_fn, x, optimizer="adam", learning_rate=lr, **common).numpy())
            rows.append(_row("cw_l2", f"keras_edd_adam_lr{lr:g}", x, x_adv, labels, sec,
                             model=model, confidence=kappa,
                             settings=dict(common, optimizer="adam", learning_rate=lr)))
        if classifier is not None:
            from art.attacks.evasion import CarliniL2Method
            n_cw = min(art_cw_examples, len(x))
            attack = CarliniL2Method(
                classifier, confidence=kappa, targeted=False, learning_rate=cw["learning_rate"],
                binary_search_steps=cw["binary_search_steps"], max_iter=cw["max_iterations"],
                initial_const=cw["initial_const"], batch_size=n_cw, verbose=False)
            x_adv, sec = _timed(lambda: attack.generate(x[:n_cw]))
            rows.append(_row("cw_l2", "art", x[:n_cw], x_adv, labels[:n_cw], sec,
                             model=model, confidence=kappa,
                             notes="ART's own gradient descent with lr halving/doubling"))
        else:
            rows.append(_skipped("cw_l2", "art", art_error))
        rows.append(_cleverhans_cw(model, x[:2], kappa))

    if "pgd" in attacks:
        p = SETTINGS["pgd"]
        x_adv, sec = timed(lambda: ours.pgd(model_fn, x, eps=p["eps"], eps_iter=p["eps_iter"],
                                             nb_iter=p["nb_iter"], seed=seed).numpy())
        rows.append(_row("pgd", "keras_edd", x, x_adv, labels, sec, model=model))
        if classifier is not None:
            from art.attacks.evasion import ProjectedGradientDescent
            attack = ProjectedGradientDescent(
                classifier, norm=np.inf, eps=p["eps"], eps_step=p["eps_iter"],
                max_iter=p["nb_iter"], num_random_init=1, batch_size=nc, verbose=False)
            x_adv, sec = timed(lambda: attack.generate(x[:nc]))
            rows.append(_row("pgd", "art", x[:nc], x_adv, labels[:nc], sec, model=model))
        else:
            rows.append(_skipped("pgd", "art", art_error))
        if cleverhans_pgd is not None:
            x_adv, sec = timed(lambda: cleverhans_pgd.projected_gradient_descent(
                model, tf.constant(x[:nc]), p["eps"], p["eps_iter"], p["nb_iter"], np.inf,
                clip_min=0.0, clip_max=1.0, rand_init=True).numpy())
            rows.append(_row("pgd", "cleverhans4", x[:nc], x_adv, labels[:nc], sec,
                             model=model))
        else:
            rows.append(_skipped("pgd", "cleverhans4", ch_error))

    settings = dict(SETTINGS, square=_square_settings(square_eps, square_max_iter))
    if "square" in attacks:
        rows.extend(_square_rows(model, model_fn, classifier, art_error, x, labels, nc, seed,
                                 repeats, settings["square"]))

    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__, "numpy": np.__version__}
    for name in ("art", "cleverhans"):
        module, _ = _import_or_none(name)
        versions[name] = getattr(module, "__version__", "installed") if module else None
    return {
        "comparisons": _comparisons(rows),
        "load_average_1_5_15min": [round(v, 2) for v in os.getloadavg()],
        "model": model_path, "data_dir": data_dir, "num_examples": len(x),
        "clean_accuracy_test": round(float(np.mean(predicted == y_test)), 4),
        "cpu_count": os.cpu_count(), "versions": versions, "settings": settings,
        "repeats": repeats,
        "sanity_checks": checks, "results": rows,
    }


def _comparisons(rows):
    """Speed ratios and success of ours versus each competitor, per attack."""
    found = {(r["attack"], r["implementation"]): r for r in rows if "adv_per_s" in r}
    pairs = [("jsma", "keras_edd", "art"), ("jsma", "keras_edd_pair_matrix", "art"),
             ("cw_l2", "keras_edd_adam_lr0.01", "art"), ("cw_l2", "keras_edd_adam_lr0.1", "art"),
             ("pgd", "keras_edd", "art"), ("pgd", "keras_edd", "cleverhans4"),
             ("fgsm", "keras_edd", "art"), ("fgsm", "keras_edd", "cleverhans4"),
             ("square", "keras_edd", "art")]
    out = []
    for attack, mine, theirs in pairs:
        a, b = found.get((attack, mine)), found.get((attack, theirs))
        if a and b:
            out.append({"attack": attack, "ours": mine, "theirs": theirs,
                        "speedup": round(a["adv_per_s"] / b["adv_per_s"], 2),
                        "success_ours": a["success_rate"], "success_theirs": b["success_rate"],
                        "n_ours": a["n"], "n_theirs": b["n"]})
    return out


def _square_settings(eps, max_iter):
    return dict(SETTINGS["square"], eps=eps, max_iter=max_iter, query_budget=(
        f"ART max_iter={max_iter} iterations + query on x + stripe start = our "
        f"max_queries={max_iter + 2}"))


def _square_rows(model, model_fn, classifier, art_error, x, labels, nc, seed, repeats, q):
    """Square (L_inf, margin loss) for ours and ART's SquareAttack, same budget `q`."""
    import numpy as np
    from keras_edd import attacks as ours
    result, sec = _timed(lambda: ours.square(
        model_fn, x, eps=q["eps"], max_queries=q["max_iter"] + 2, p_init=q["p_init"],
        seed=seed, return_queries=True), repeats)
    x_adv, queries = result[0].numpy(), result[1].numpy()
    row = _row("square", "keras_edd", x, x_adv, labels, sec, model=model,
               notes="per-digit window and signs, no-op signs redrawn, stops on success")
    row.update(queries_mean=round(float(queries.mean()), 2),
               queries_median=float(np.median(queries)), queries_max=int(queries.max()))
    rows = [row]
    if classifier is None:
        rows.append(_skipped("square", "art", art_error))
        return rows
    from art.attacks.evasion import SquareAttack
    attack = SquareAttack(classifier, norm=np.inf, eps=q["eps"], max_iter=q["max_iter"],
                          p_init=q["p_init"], nb_restarts=q["nb_restarts"], batch_size=nc,
                          verbose=False)

    def art_call():
        np.random.seed(seed)
        return attack.generate(x[:nc])

    x_adv, sec = _timed(art_call, repeats)
    rows.append(_row("square", "art", x[:nc], x_adv, labels[:nc], sec, model=model,
                     notes="one window and one sign per iteration for the whole batch; "
                           "predicts every input each iteration"))
    return rows


def _cleverhans_cw(model, x, kappa):
    """cleverhans 4's CW on two inputs: reported as a row or as the error it raises."""
    module, error = _import_or_none("cleverhans.tf2.attacks.carlini_wagner_l2")
    if module is None:
        return _skipped("cw_l2", "cleverhans4", error)
    try:
        start = time.perf_counter()
        module.carlini_wagner_l2(model, x, confidence=kappa, max_iterations=10,
                                 binary_search_steps=1)
        return {"attack": "cw_l2", "implementation": "cleverhans4", "n": len(x),
                "ran": True, "seconds": round(time.perf_counter() - start, 3)}
    except Exception as exc:  # noqa: BLE001 - recording the failure is the point
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return _skipped("cw_l2", "cleverhans4", f"crashed on Keras 3: {last[:300]}")


def main(argv):
    del argv
    if not _MODEL.value:
        raise app.UsageError("--model is required")
    result = run(_MODEL.value, _DATA_DIR.value, dataset=_DATASET.value,
                 num_examples=_NUM_EXAMPLES.value,
                 competitor_examples=_COMPETITOR_EXAMPLES.value,
                 art_cw_examples=_ART_CW_EXAMPLES.value, attacks=tuple(_ATTACKS.value),
                 seed=_SEED.value, cw_extra_learning_rate=_CW_EXTRA_LR.value,
                 repeats=_REPEATS.value, square_eps=_SQUARE_EPS.value,
                 square_max_iter=_SQUARE_MAX_ITER.value)
    text = json.dumps(result, indent=2, default=_json_default)
    print(text)
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as f:
            f.write(text + "\n")


def _json_default(value):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    app.run(main)
