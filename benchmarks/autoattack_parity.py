"""keras_edd's standard AutoAttack evaluation against the reference AutoAttack.

The reference is fra31's AutoAttack as packaged on PyPI (`pyautoattack` 0.2.0, PyTorch),
run with version="standard": APGD-CE (1 restart), APGD-T (9 target classes), FAB-T (9
target classes), Square (5,000 queries, p_init 0.8), each on the digits still robust
after the previous one. Ours is `keras_edd.evaluate(model, x, y, eps=..., norm=...,
attacks="standard", seed=...)`. Both see the same digits: the first --num_digits
official MNIST test digits (uint8 / 255, every digit, misclassified ones count as
not robust). Prints one JSON document.

  python benchmarks/autoattack_parity.py --data_dir=../shared/data/mnist \
      --num_digits=1000 --cases=adversarial:linf:0.3,undefended:linf:0.1,undefended:l2:1.5 \
      --work_dir=/tmp/keras_edd_autoattack_parity --output=parity.json

Needs PyTorch and pyautoattack beside keras_edd (`pip install -e ".[cpu,parity]"`, best
in a venv of its own; docs/benchmarks.md). A 1,000-digit run of paper:adversarial at
L_inf 0.3 took 21 min for the reference and 15 min for ours on a 2-core AVX-512 Xeon
(all three default cases 72 min): both sides run in chunks of --chunk_size digits, each
finished chunk is kept under --work_dir (one result file per chunk and side), and a
rerun with the same flags reuses them, so a cut-off run resumes. Inside a reference
chunk the robust mask is also saved after each attack (read from the package's
`state_path` file), and a rerun goes on with the attacks left: pyautoattack 0.2.0
cannot restore its own state file (see make_reference_chunk). --sides=reference runs
the reference alone; --max_chunks bounds the new chunks per invocation.

The model: a shipped paper model (`keras_edd.models.load_pretrained("paper:NAME")`,
the cleverhans-v1 CNN, float32) ported layer by layer to an equivalent torch module
(NCHW; TF's 'same' padding, which puts the extra row/column at the bottom/right for
stride 2, computed exactly; the Flatten done in Keras' NHWC order). The port is
checked before anything runs: the logits of both on the first 100 test digits must
agree to --port_tolerance (max abs), else the run stops with the measured error.
The 11-logit paper:extended works too (the reference treats the outlier logit as an
ordinary class, and ours is called with outlier_class=None to match); parity there
is not a target.

Per case (model:norm:eps) the JSON has: clean and robust accuracy of both sides, the
difference in points, the cumulative robust accuracy after each attack side by side,
per-digit disagreements (robust in ours only / in the reference only), wall seconds
(sum over chunks run in this or earlier invocations; ours includes tf.function
tracing) and the ratio reference / ours, and the verdict on the targets: robust
accuracy within --tolerance_points of the reference, ours no slower, and >= 2x faster
where most digits fall early (reference robust accuracy after APGD-CE below 50 %).
Times are measured on whatever load the machine has ("machine" records the load
average); both sides run with --threads threads (TF intra-op and torch).
--reference_n_iter / --reference_square_queries shorten the reference's budget for
smoke runs; such a case is marked "standard_budget": false and is not judged.
"""

import hashlib
import json
import logging
import os
import platform
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from keras_edd.reporting.parity import ATTACKS  # noqa: E402  (light: no TensorFlow)

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CASES = "adversarial:linf:0.3,undefended:linf:0.1,undefended:l2:1.5"
# The targets: these cases must match the reference (any other case is judged
# the same way and reported, but is not one of the targets).
TARGET_CASES = ("adversarial:linf:0.3", "undefended:linf:0.1", "undefended:l2:1.5")

_CASES = flags.DEFINE_list("cases", DEFAULT_CASES.split(","),
                           "model:norm:eps triples; model is a paper:NAME model "
                           "(undefended, adversarial, extended, ...), norm linf or l2.")
_DATA_DIR = flags.DEFINE_string("data_dir", os.path.join(_REPO_ROOT, "..", "shared", "data",
                                                         "mnist"),
                                "Folder with the official MNIST IDX files.")
_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset name for keras_edd.data.")
_NUM_DIGITS = flags.DEFINE_integer("num_digits", 1000, "First test digits evaluated.")
_CHUNK_SIZE = flags.DEFINE_integer("chunk_size", 100, "Digits per saved chunk.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 100, "Batch size of both sides.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of both sides.")
_SIDES = flags.DEFINE_list("sides", ["reference", "ours"], "Which sides to run.")
_WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/keras_edd_autoattack_parity",
                                "Chunk results and reference state files (resume).")
_THREADS = flags.DEFINE_integer("threads", os.cpu_count() or 1,
                                "Threads of TF (intra-op) and torch.")
_PORT_TOLERANCE = flags.DEFINE_float("port_tolerance", 1e-4,
                                     "Max abs logit difference allowed for the torch port.")
_TOLERANCE_POINTS = flags.DEFINE_float("tolerance_points", 0.5,
                                       "Allowed |ours - reference| robust accuracy, points.")
_REF_N_ITER = flags.DEFINE_integer("reference_n_iter", 100,
                                   "Reference APGD/FAB iterations (100 = standard).")
_REF_SQUARE_QUERIES = flags.DEFINE_integer("reference_square_queries", 5000,
                                           "Reference Square queries (5000 = standard).")
_MAX_CHUNKS = flags.DEFINE_integer("max_chunks", None, "Stop each side after this many "
                                   "newly run chunks (the rest stays for a rerun).")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON here.")


class SideUnavailable(RuntimeError):
    """One side cannot run here (missing package or API); the other still does."""


class PortError(RuntimeError):
    """The torch port does not reproduce the Keras model's logits."""


# ------------------------------------------------------------------ the torch port

def tf_same_padding(size, kernel, stride):
    """(before, after) padding of TF's 'same' along one axis: after gets the extra one."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _keras_layers(model):
    """The cleverhans_cnn layers that carry weights, checked by name and shape."""
    names = ("conv1", "conv2", "conv3", "logits")
    layers = {}
    for name in names:
        try:
            layers[name] = model.get_layer(name)
        except ValueError as exc:
            raise PortError(f"{model.name}: no layer {name!r}; only keras_edd.models."
                            "cleverhans_cnn models can be ported") from exc
    expected = {"conv1": ("same", 2), "conv2": ("valid", 2), "conv3": ("valid", 1)}
    for name, (padding, stride) in expected.items():
        config = layers[name].get_config()
        if (config["padding"] != padding or tuple(config["strides"]) != (stride, stride)
                or config["activation"] != "relu" or tuple(config["dilation_rate"]) != (1, 1)):
            raise PortError(f"{name}: {config['padding']}/{config['strides']}/"
                            f"{config['activation']}, expected {padding}/{stride}/relu")
    return layers


def port_to_torch(model):
    """A torch.nn.Module (NCHW float32 in [0, 1] -> logits) equal to a cleverhans_cnn.

    Dropout layers are left out (inference); call .eval() anyway.
    """
    import numpy as np
    import torch

    layers = _keras_layers(model)
    height, width, channels = (int(d) for d in model.input_shape[1:])

    def conv(layer):
        kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
        module = torch.nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[:2],
                                 stride=tuple(layer.get_config()["strides"]), padding=0)
        with torch.no_grad():  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
            module.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            module.bias.copy_(torch.from_numpy(bias))
        return module

    kernel_1 = layers["conv1"].get_weights()[0].shape[:2]
    pad_h = tf_same_padding(height, kernel_1[0], 2)
    pad_w = tf_same_padding(width, kernel_1[1], 2)
    dense_w, dense_b = (np.asarray(w, np.float32) for w in layers["logits"].get_weights())

    class PortedCleverhansCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.padding = (pad_w[0], pad_w[1], pad_h[0], pad_h[1])  # left, right, top, bottom
            self.conv1 = conv(layers["conv1"])
            self.conv2 = conv(layers["conv2"])
            self.conv3 = conv(layers["conv3"])
            self.logits = torch.nn.Linear(dense_w.shape[0], dense_w.shape[1])
            with torch.no_grad():
                self.logits.weight.copy_(torch.from_numpy(dense_w.T.copy()))
                self.logits.bias.copy_(torch.from_numpy(dense_b))

        def forward(self, x):
            x = torch.nn.functional.pad(x, self.padding)
            x = torch.relu(self.conv1(x))
            x = torch.relu(self.conv2(x))
            x = torch.relu(self.conv3(x))
            # Keras flattens NHWC: go to channels-last before flattening.
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            return self.logits(x)

    del channels
    return PortedCleverhansCNN().eval()


def port_error(model, torch_model, x_nhwc):
    """Max abs difference of the logits of the Keras model and its port on x (NHWC)."""
    import numpy as np
    import torch

    x_nhwc = np.asarray(x_nhwc, np.float32)
    ours = np.asarray(model(x_nhwc, training=False), np.float64)
    with torch.no_grad():
        theirs = torch_model(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy())).numpy()
    return float(np.abs(ours - theirs.astype(np.float64)).max())


def checked_port(model, x_nhwc, tolerance):
    torch_model = port_to_torch(model)
    error = port_error(model, torch_model, x_nhwc)
    if not error <= tolerance:
        raise PortError(f"torch port of {model.name}: max abs logit difference {error:.3g} "
                        f"on {len(x_nhwc)} test digits exceeds {tolerance:g}")
    return torch_model, error


# ------------------------------------------------------------------ chunks and resume

def _code_version():
    """The git tree of the keras_edd package (our chunks are redone when its code changes,
    not on a commit elsewhere in the repository), else its version; uncommitted changes
    are not seen: use a new --work_dir then."""
    import subprocess

    import keras_edd
    try:
        return subprocess.run(["git", "rev-parse", "HEAD:keras_edd"], capture_output=True,
                              text=True, cwd=os.path.dirname(keras_edd.__file__), timeout=30,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return keras_edd.__version__


def parse_case(text):
    try:
        model, norm, eps = text.strip().split(":")
        eps = float(eps)
    except ValueError:
        raise app.UsageError(f"--cases: {text!r} is not model:norm:eps") from None
    norm = norm.lower()
    if norm not in ("linf", "l2"):
        raise app.UsageError(f"--cases: {text!r}: norm must be linf or l2")
    if not eps > 0:
        raise app.UsageError(f"--cases: {text!r}: eps must be > 0")
    return model, norm, eps


def case_key(model, norm, eps):
    return f"{model}:{norm}:{eps:g}"


def fingerprint(*arrays, **settings):
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for array in arrays:
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def run_chunks(side, run_chunk, x, y, *, folder, chunk_size, settings, max_chunks=None,
               log=print):
    """Runs `run_chunk(x, y, chunk_folder)` chunk by chunk, reusing finished chunks.

    A chunk's result file is reused when its fingerprint (digits, labels, settings)
    matches. Returns the list of chunk results (None for chunks left for a rerun).
    """
    results = []
    new_runs = 0
    for start in range(0, len(x), chunk_size):
        stop = min(start + chunk_size, len(x))
        tag = f"chunk_{start:05d}-{stop:05d}"
        path = os.path.join(folder, side, f"{tag}.json")
        key = fingerprint(x[start:stop], y[start:stop], side=side, **settings)
        saved = _read_json(path)
        if saved is not None and saved.get("fingerprint") == key:
            saved["reused"] = True
            results.append(saved)
            log(f"{side} {tag}: reused {path}")
            continue
        if max_chunks is not None and new_runs >= max_chunks:
            results.append(None)
            continue
        chunk_folder = os.path.join(folder, side, tag)
        os.makedirs(chunk_folder, exist_ok=True)
        begin = time.perf_counter()
        result = run_chunk(x[start:stop], y[start:stop], chunk_folder)
        result.update(fingerprint=key, start=start, stop=stop, reused=False,
                      seconds_this_run=round(time.perf_counter() - begin, 2))
        result.setdefault("seconds", result["seconds_this_run"])
        _write_json(path, result)
        new_runs += 1
        log(f"{side} {tag}: {result['robust_count']}/{stop - start} robust, "
            f"{result['seconds']:.1f} s")
        results.append(result)
    return results


def merge_chunks(results, num_digits):
    """Whole-run numbers from chunk results, or None if some chunk is missing."""
    if not results or any(r is None for r in results):
        return None
    robust = [bool(v) for r in results for v in r["robust"]]
    clean = sum(r["clean_count"] for r in results)
    cumulative = {attack: sum(r["cumulative_robust_count"][attack] for r in results)
                  for attack in ATTACKS}
    return {"digits": num_digits, "clean_accuracy": clean / num_digits,
            "robust_accuracy": sum(robust) / num_digits,
            "robust_accuracy_by_attack": {a: c / num_digits for a, c in cumulative.items()},
            "robust": robust,
            "seconds": round(sum(r["seconds"] for r in results), 2),
            "attack_seconds": _attack_seconds(results),
            "chunk_seconds": [r["seconds"] for r in results],
            "chunks_reused": sum(bool(r.get("reused")) for r in results),
            "attacks_skipped": sorted({a for r in results for a in r.get("attacks_skipped", ())}),
            "threads": results[-1].get("threads")}


def _attack_seconds(results):
    """Seconds per attack summed over the chunks; {} unless every chunk recorded them
    (chunks made before our side kept them have none)."""
    if not all(r.get("attack_seconds") for r in results):
        return {}
    return {a: round(sum(r["attack_seconds"].get(a, 0.0) for r in results), 2)
            for a in ATTACKS}


def chunk_summary(results):
    """Chunks done, and while some are missing the numbers over the finished ones."""
    done = [r for r in results if r is not None]
    out = {"done": len(done), "total": len(results),
           "reused": sum(bool(r.get("reused")) for r in done),
           "resumed": sum(bool(r.get("resumed")) for r in done)}
    if done and len(done) < len(results):
        digits = sum(r["stop"] - r["start"] for r in done)
        partial = merge_chunks(done, digits)
        out["partial"] = {k: v for k, v in partial.items() if k != "robust"}
    return out


def fill_cumulative(counts, final_count):
    """Cumulative robust counts after each attack; attacks skipped (nothing robust
    left) or not reported keep the previous count."""
    out, previous = {}, None
    for attack in ATTACKS:
        value = counts.get(attack, previous)
        out[attack] = final_count if value is None else int(value)
        previous = out[attack]
    return out


# ------------------------------------------------------------------ the reference side

class _ReferenceLog(logging.Handler):
    """Follows pyautoattack's log. At the end of each attack it reads the package's
    state file (written after every batch) and saves in `progress` the chunk's robust
    mask, the count and the seconds, so a cut-off chunk resumes after that attack."""

    _DONE = re.compile(r"robust accuracy after ([A-Z-]+):")

    def __init__(self, state_path, progress_path, progress, subset, log):
        super().__init__(logging.DEBUG)
        self.state_path, self.progress_path, self.progress = state_path, progress_path, progress
        self.subset, self.log = subset, log
        self.begin = self.mark = time.perf_counter()
        self.seconds_before = progress.get("seconds_before", 0.0)

    def chunk_mask(self):
        """The chunk's robust mask: the package's flags on `subset`, False elsewhere."""
        state = _read_json(self.state_path) or {}
        mask = [False] * len(self.progress["robust"])
        for index, flag in zip(self.subset, state.get("_robust_flags") or []):
            mask[index] = bool(flag)
        return mask

    def emit(self, record):
        match = self._DONE.match(record.getMessage())
        if not match:
            return
        attack = match.group(1).lower()
        now = time.perf_counter()
        self.progress["robust"] = self.chunk_mask()
        count = sum(self.progress["robust"])
        self.progress["attacks"][attack] = {"robust_count": count,
                                            "seconds": round(now - self.mark, 2)}
        self.mark = now
        # Wall time so far, kept even if the process is killed before the chunk ends.
        self.progress["seconds_before"] = round(self.seconds_before + now - self.begin, 2)
        _write_json(self.progress_path, self.progress)
        self.log(f"  reference {attack}: {count} robust, "
                 f"{self.progress['attacks'][attack]['seconds']:.1f} s")


def reference_settings(n_iter, square_queries):
    return {"n_iter": n_iter, "square_queries": square_queries,
            "standard": n_iter == 100 and square_queries == 5000}


def make_reference_chunk(torch_model, *, norm, eps, seed, batch_size, n_iter, square_queries,
                         log=print):
    """A run_chunk function for run_chunks: pyautoattack's standard evaluation.

    Resuming: pyautoattack 0.2.0 cannot restore its own state file (to_disk writes the
    set of attacks as the text "{'apgd-ce', ...}", which from_disk compares with a set
    and refuses; past that, a restored run ends on an unbound `y_adv`), so a chunk
    resumes here per attack instead: progress.json keeps the robust mask after each
    finished attack, and a rerun hands the package only the still-robust digits and
    the attacks not yet run (each run with a fresh `state_path` file, which this
    script reads for the flags). An attack cut off midway is run again whole on those
    digits (same seed, other batches).
    """
    from pathlib import Path

    import numpy as np
    import torch
    from pyautoattack import AutoAttack

    logger = logging.getLogger("auto-attack")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # its per-batch messages are read by _ReferenceLog only

    def run_chunk(x, y, folder):
        x_t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        y_t = torch.from_numpy(y.astype(np.int64))
        with torch.no_grad():
            clean = (torch_model(x_t).argmax(1) == y_t).numpy()
        progress_path = os.path.join(folder, "progress.json")
        progress = _read_json(progress_path)
        resumed = bool(progress and progress.get("attacks") and "robust" in progress
                       and len(progress["robust"]) == len(x))
        if not resumed:
            progress = {"attacks": {}, "seconds_before": 0.0, "runs": 0,
                        "robust": [bool(c) for c in clean]}
        remaining = [a for a in ATTACKS if a not in progress["attacks"]]
        subset = [i for i, r in enumerate(progress["robust"]) if r]
        if remaining and subset:
            attack = AutoAttack(torch_model, norm={"linf": "Linf", "l2": "L2"}[norm],
                                eps=eps, version="standard", seed=seed, device="cpu")
            if n_iter != 100:
                attack.apgd.n_iter = attack.apgd_targeted.n_iter = attack.fab.n_iter = n_iter
            attack.square.n_queries = square_queries
            attack.attacks_to_run = remaining  # the standard order, less those done
            progress["runs"] += 1
            state_path = Path(folder) / f"state_{progress['runs']}.json"
            if state_path.exists():
                state_path.unlink()
            handler = _ReferenceLog(str(state_path), progress_path, progress, subset, log)
            logger.addHandler(handler)
            try:
                attack.run_standard_evaluation(x_t[subset], y_t[subset],
                                               batch_size=batch_size, state_path=state_path)
            finally:
                logger.removeHandler(handler)
            # Attacks skipped because no digit was left robust, and the final flags.
            progress["robust"] = handler.chunk_mask()
            for name in remaining:
                progress["attacks"].setdefault(name, {"robust_count": sum(progress["robust"]),
                                                      "seconds": 0.0})
            progress["seconds_before"] = round(handler.seconds_before
                                               + time.perf_counter() - handler.begin, 2)
            _write_json(progress_path, progress)
        robust = [bool(r) for r in progress["robust"]]
        counts = {a: v["robust_count"] for a, v in progress["attacks"].items()}
        return {"robust": robust, "robust_count": int(sum(robust)),
                "clean_count": int(clean.sum()),
                "cumulative_robust_count": fill_cumulative(counts, int(sum(robust))),
                "attack_seconds": {a: v["seconds"] for a, v in progress["attacks"].items()},
                "seconds": progress["seconds_before"], "resumed": resumed,
                "package_runs": progress["runs"], "threads": torch.get_num_threads()}

    return run_chunk


# ------------------------------------------------------------------ our side

def _attack_name(name):
    return str(name).strip().lower().replace("_", "-").replace(" ", "-")


def _count(rate, n):
    """Digits behind a rate: a Rate's k, or round(value * n) for a plain number."""
    k = getattr(rate, "k", None)
    return int(k) if k is not None else int(round(float(rate) * n))


def make_our_chunk(model, *, norm, eps, seed, batch_size):
    """A run_chunk function for run_chunks: keras_edd.evaluate(attacks="standard")."""
    import numpy as np

    import keras_edd
    evaluate = getattr(keras_edd, "evaluate", None)
    if evaluate is None:
        raise SideUnavailable("keras_edd.evaluate is not available in this keras_edd "
                              f"({os.path.dirname(keras_edd.__file__)}); our side skipped")

    def run_chunk(x, y, folder):
        del folder
        import tensorflow as tf
        begin = time.perf_counter()
        result = evaluate(model, x, y, eps=eps, norm=norm, attacks="standard",
                          outlier_class=None, batch_size=batch_size, seed=seed,
                          progress=False)
        seconds = time.perf_counter() - begin
        by_attack = result.robust_accuracy_by_attack
        items = by_attack.items() if hasattr(by_attack, "items") else by_attack
        counts = {_attack_name(a): _count(rate, len(x)) for a, rate in items}
        robust = [bool(v) for v in np.asarray(result.robust).reshape(-1)]
        return {"robust": robust, "robust_count": int(sum(robust)),
                "clean_count": _count(result.clean_accuracy, len(x)),
                "cumulative_robust_count": fill_cumulative(counts, int(sum(robust))),
                "attacks_reported": sorted(counts),
                "attacks_skipped": [str(a[0] if isinstance(a, (tuple, list)) else a)
                                    for a in getattr(result, "attacks_skipped", ())],
                "attack_seconds": {_attack_name(a): round(s, 2) for a, s
                                   in getattr(result, "seconds_by_attack", {}).items()},
                "seconds": round(seconds, 2),
                "threads": tf.config.threading.get_intra_op_parallelism_threads()}

    return run_chunk


# ------------------------------------------------------------------ report

def machine():
    info = {"cores": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "load_average": [round(v, 2) for v in os.getloadavg()]}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and "cpu_model" not in info:
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                if line.startswith("flags") and "avx_flags" not in info:
                    info["avx_flags"] = sorted(flag for flag in line.split(":", 1)[1].split()
                                               if flag.startswith(("avx", "amx")))
    except OSError:
        pass
    return info


def versions():
    from importlib import metadata
    out = {}
    for name in ("tensorflow", "tensorflow-cpu", "keras", "torch", "pyautoattack", "numpy",
                 "keras_edd"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def compare(case, ours, reference, *, tolerance_points, standard_budget):
    """The side-by-side row of one case (either side may be None)."""
    row = {}
    for side, merged in (("ours", ours), ("reference", reference)):
        if merged is not None:
            row[side] = {k: (round(v, 4) if isinstance(v, float) else v)
                         for k, v in merged.items() if k != "robust"}
            row[side]["robust_accuracy_by_attack"] = {
                a: round(v, 4) for a, v in merged["robust_accuracy_by_attack"].items()}
    if ours is None or reference is None:
        row["targets"] = {"judged": False, "why": "a side did not finish"}
        return row
    diff = 100.0 * (ours["robust_accuracy"] - reference["robust_accuracy"])
    row["robust_accuracy_difference_points"] = round(diff, 2)
    row["clean_accuracy_difference_points"] = round(
        100.0 * (ours["clean_accuracy"] - reference["clean_accuracy"]), 2)
    row["by_attack_difference_points"] = {
        a: round(100.0 * (ours["robust_accuracy_by_attack"][a]
                          - reference["robust_accuracy_by_attack"][a]), 2) for a in ATTACKS}
    robust_o, robust_r = ours["robust"], reference["robust"]
    row["disagreements"] = {
        "robust_only_in_ours": sum(o and not r for o, r in zip(robust_o, robust_r)),
        "robust_only_in_reference": sum(r and not o for o, r in zip(robust_o, robust_r))}
    ratio = reference["seconds"] / ours["seconds"] if ours["seconds"] > 0 else None
    row["speed_up"] = None if ratio is None else round(ratio, 2)
    falls_early = reference["robust_accuracy_by_attack"]["apgd-ce"] < 0.5
    targets = {"judged": standard_budget, "is_issue_target": case in TARGET_CASES,
               "accuracy_within_points": abs(diff) <= tolerance_points,
               "not_slower": ratio is not None and ratio >= 1.0,
               "most_fall_early": falls_early,
               "twice_as_fast": None if not falls_early else (ratio is not None
                                                              and ratio >= 2.0)}
    skipped = ours.get("attacks_skipped") or []
    if skipped:  # ours is then an upper bound, not AutoAttack's standard evaluation
        targets["ours_attacks_skipped"] = skipped
    targets["met"] = bool(standard_budget and not skipped
                          and targets["accuracy_within_points"] and targets["not_slower"]
                          and targets["twice_as_fast"] is not False)
    if not standard_budget:
        targets["why"] = "reference budget shortened"
    row["targets"] = targets
    return row


def set_threads(threads):
    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TF already initialised
        pass
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass


def run(cases, *, data_dir, dataset="mnist", num_digits=1000, chunk_size=100, batch_size=100,
        seed=0, sides=("reference", "ours"), work_dir, port_tolerance=1e-4,
        tolerance_points=0.5, reference_n_iter=100, reference_square_queries=5000,
        max_chunks=None, log=None):
    """Runs the cases and returns the result dictionary."""
    import numpy as np

    from keras_edd import data, files, models, pretrained
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    loaded = data.load_dataset(dataset, data_dir=data_dir, allow_download=False)
    x_all = data.to_float(loaded.x_test)
    y_all = np.asarray(loaded.y_test).astype(np.int64)
    x, y = x_all[:num_digits], y_all[:num_digits]
    ref_settings = reference_settings(reference_n_iter, reference_square_queries)
    out = {"digits": int(len(x)), "data": {"dataset": dataset, "split": "test",
                                           "first": int(len(x)), "data_dir": data_dir},
           "settings": {"chunk_size": chunk_size, "batch_size": batch_size, "seed": seed,
                        "sides": list(sides), "tolerance_points": tolerance_points,
                        "port_tolerance": port_tolerance, "reference": ref_settings},
           "machine": machine(), "versions": versions(), "errors": {}, "cases": {}}
    loaded_models = {}
    for model_name, norm, eps in cases:
        key = case_key(model_name, norm, eps)
        if model_name not in loaded_models:
            loaded_models[model_name] = models.load_pretrained(f"paper:{model_name}")
        model = loaded_models[model_name]
        folder = os.path.join(work_dir, key.replace(":", "_"))
        base = {"model": model_name, "model_sha256": files.sha256(
                    pretrained.model_path(f"paper:{model_name}")),
                "norm": norm, "eps": eps, "seed": seed, "batch_size": batch_size,
                "chunk_size": chunk_size}
        merged = {"ours": None, "reference": None}
        case_out = {"model": f"paper:{model_name}", "norm": norm, "eps": eps,
                    "logits": int(model.output_shape[-1]),
                    "standard_budget": ref_settings["standard"]}
        if "reference" in sides:
            try:
                try:
                    import pyautoattack  # noqa: F401
                    import torch  # noqa: F401
                except ImportError as exc:
                    raise SideUnavailable(f"reference side needs torch and pyautoattack "
                                          f"(pip install -e '.[cpu,parity]'): {exc}") from None
                torch_model, error = checked_port(model, x_all[:100], port_tolerance)
                case_out["port_max_abs_logit_difference"] = error
                log(f"{key}: torch port max abs logit difference {error:.2e}")
                chunk = make_reference_chunk(
                    torch_model, norm=norm, eps=eps, seed=seed, batch_size=batch_size,
                    n_iter=reference_n_iter, square_queries=reference_square_queries,
                    log=log)
                results = run_chunks("reference", chunk, x, y, folder=folder,
                                     chunk_size=chunk_size, max_chunks=max_chunks, log=log,
                                     settings=dict(base, **ref_settings))
                merged["reference"] = merge_chunks(results, len(x))
                case_out["reference_chunks"] = chunk_summary(results)
            except SideUnavailable as exc:
                out["errors"]["reference"] = str(exc)
                log(f"reference side: {exc}")
        if "ours" in sides:
            try:
                chunk = make_our_chunk(model, norm=norm, eps=eps, seed=seed,
                                       batch_size=batch_size)
                results = run_chunks("ours", chunk, x, y, folder=folder,
                                     chunk_size=chunk_size, max_chunks=max_chunks, log=log,
                                     settings=dict(base, code=_code_version()))
                merged["ours"] = merge_chunks(results, len(x))
                case_out["ours_chunks"] = chunk_summary(results)
            except SideUnavailable as exc:
                out["errors"]["ours"] = str(exc)
                log(f"our side: {exc}")
        case_out.update(compare(key, merged["ours"], merged["reference"],
                                tolerance_points=tolerance_points,
                                standard_budget=ref_settings["standard"]))
        if not case_out["targets"]["judged"] and (merged["ours"] is None
                                                  or merged["reference"] is None):
            case_out["targets"]["why"] = "; ".join(
                {"ours": "our", "reference": "reference"}[side] + " side "
                + (out["errors"].get(side) or ("not requested (--sides)" if side not in sides
                                               else "has chunks left for a rerun"))
                for side in ("reference", "ours") if merged[side] is None)
        out["cases"][key] = case_out
    out["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    out["targets_met"] = {key: case["targets"].get("met") for key, case in out["cases"].items()
                          if case["targets"].get("judged")}
    return out


def main(argv):
    del argv
    cases = [parse_case(text) for text in _CASES.value]
    sides = [s.strip() for s in _SIDES.value]
    unknown = set(sides) - {"ours", "reference"}
    if unknown or not sides:
        raise app.UsageError(f"--sides: {sorted(unknown)} not in ours, reference")
    if _CHUNK_SIZE.value < 1 or _NUM_DIGITS.value < 1 or _BATCH_SIZE.value < 1:
        raise app.UsageError("--chunk_size, --num_digits and --batch_size must be >= 1")
    set_threads(_THREADS.value)
    try:
        result = run(cases, data_dir=_DATA_DIR.value, dataset=_DATASET.value,
                     num_digits=_NUM_DIGITS.value, chunk_size=_CHUNK_SIZE.value,
                     batch_size=_BATCH_SIZE.value, seed=_SEED.value, sides=sides,
                     work_dir=_WORK_DIR.value, port_tolerance=_PORT_TOLERANCE.value,
                     tolerance_points=_TOLERANCE_POINTS.value,
                     reference_n_iter=_REF_N_ITER.value,
                     reference_square_queries=_REF_SQUARE_QUERIES.value,
                     max_chunks=_MAX_CHUNKS.value)
    except PortError as exc:
        sys.exit(f"error: {exc}")
    print(json.dumps(result, indent=2))
    for key, case in result["cases"].items():
        targets = case["targets"]
        verdict = ("not judged: " + targets.get("why", "")) if not targets["judged"] else (
            "met" if targets["met"] else "NOT met")
        print(f"{key}: target {verdict}", file=sys.stderr)
    if _OUTPUT.value:
        _write_json(_OUTPUT.value, result)


if __name__ == "__main__":
    app.run(main)
