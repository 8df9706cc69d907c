"""Crafted adversarial examples, kept so that no craft is computed twice.

An evaluation asks for "attack A with params P on model M, inputs x[:n]". The
answer (x_adv, the seconds the craft took, and the per-input details the
attack reports, e.g. `success`) is kept in memory and, when the evaluation has
a run directory, in `<run_dir>/attacks/<attack>-<variant>-<key>-n<n>.npz`,
written atomically (keras_edd.files). A rerun of a killed evaluation loads the
finished crafts and computes only the missing ones, with the same numbers and
the crafts' original seconds.

The key holds everything that determines a craft:
  model          model_fingerprint: the weights' bytes, shapes and dtypes, the
                 layer classes and their dtype policies. It is computed from the
                 loaded model, so it is the same for every load of one .keras
                 file (the archive's config.json carries object ids that vary
                 between saves, so its bytes are not used) and for any file
                 holding the same weights;
  attack         the registry name and its function;
  params         the resolved settings (budget included);
  variant        plain / adaptive, and the outlier class the attack was told;
  chunk, seed    inputs per attack call and the attack seed (a chunk's seed is
                 seed + its first index);
  n, inputs      the number of inputs and the SHA-256 of x[:n] (checked on load).
A craft of n inputs also answers a request for its first m < n inputs when m is a
multiple of the chunk size: the first m // chunk calls saw exactly the same inputs
and seeds, so the prefix is what a fresh craft of m inputs returns.

Files hold arrays `x_adv`, `seconds`, `key` (the key as JSON) and one
`detail_<name>` per detail (`detail_success`: per-input success as the attack
itself judged it; JSMA: target reached; CW: margin >= kappa).
"""

import dataclasses
import glob
import hashlib
import json
import os
import zipfile

import numpy as np

from keras_edd import files

FORMAT = 1


@dataclasses.dataclass
class Craft:
    """One crafted batch. origin: computed (here), loaded (from a file), prefix
    (the first inputs of a longer craft) or memory (asked for again)."""
    x_adv: np.ndarray
    seconds: float
    details: dict
    origin: str


def model_fingerprint(model):
    """SHA-256 of what a model computes with: weights (bytes, shapes, dtypes), layer
    classes and dtype policies. None for a callable without Keras weights."""
    if not hasattr(model, "get_weights") or not hasattr(model, "layers"):
        return None
    digest = hashlib.sha256()
    for layer in model.layers:
        policy = getattr(getattr(layer, "dtype_policy", None), "name", "")
        digest.update(f"{type(layer).__name__}:{policy};".encode())
    for weight in model.get_weights():
        weight = np.ascontiguousarray(weight)
        digest.update(f"{weight.dtype.str}{weight.shape};".encode())
        digest.update(weight.tobytes())
    return digest.hexdigest()


def inputs_digest(x):
    x = np.ascontiguousarray(x, np.float32)
    return hashlib.sha256(f"{x.shape}".encode() + x.tobytes()).hexdigest()


def craft_key(model_id, attack, function, params, *, variant, outlier_class, chunk, seed):
    """The key of a craft apart from its inputs (a JSON-ready dict)."""
    return {"format": FORMAT, "model": model_id, "attack": attack, "function": function,
            "params": {k: params[k] for k in sorted(params)}, "variant": variant,
            "outlier_class": outlier_class, "chunk": int(chunk), "seed": int(seed)}


def key_digest(key):
    text = json.dumps(key, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class CraftCache:
    """Crafts in memory and, with a `directory`, on disk (see the module docstring)."""

    def __init__(self, directory=None):
        self.directory = directory
        self.memory = {}  # (digest, n) -> Craft
        self._fingerprints = {}  # id(model) -> (model, fingerprint)

    def model_id(self, model):
        """model_fingerprint, computed once per model object; for a model without
        weights, an id valid only in memory (its crafts are not written)."""
        entry = self._fingerprints.get(id(model))
        if entry is None or entry[0] is not model:
            entry = (model, model_fingerprint(model))
            self._fingerprints[id(model)] = entry
        return entry[1] or f"object:{id(model)}"

    def _path(self, key, n):
        name = f"{key['attack']}-{key['variant']}-{key_digest(key)}-n{n}.npz"
        return os.path.join(self.directory, name)

    def _persistent(self, key):
        return self.directory is not None and not key["model"].startswith("object:")

    def get(self, key, x, n):
        """The craft of x[:n] under `key`, or None: from memory, a file, or as the
        prefix of a longer craft whose chunks line up."""
        digest = key_digest(key)
        found = self.memory.get((digest, n))
        if found is not None:
            return dataclasses.replace(found, origin="memory")
        found = self._load(key, x, n)
        if found is None and n % key["chunk"] == 0:
            longer = sorted(m for d, m in self.memory if d == digest and m > n)
            longer += sorted(self._on_disk(key, n))
            for m in longer:
                whole = self.memory.get((digest, m)) or self._load(key, x, m)
                if whole is not None:
                    found = Craft(whole.x_adv[:n], whole.seconds * n / m,
                                  {k: v[:n] for k, v in whole.details.items()}, "prefix")
                    break
        if found is not None:
            self.memory[(digest, n)] = found
        return found

    def put(self, key, x, n, x_adv, seconds, details):
        """Keep a computed craft (in memory; on disk when persistent). Returns the Craft."""
        craft = Craft(np.asarray(x_adv, np.float32), float(seconds), dict(details), "computed")
        self.memory[(key_digest(key), n)] = craft
        if self._persistent(key):
            record = dict(key, n=int(n), inputs=inputs_digest(x[:n]))
            arrays = {"x_adv": craft.x_adv, "seconds": np.float64(craft.seconds),
                      "key": np.array(json.dumps(record, sort_keys=True)),
                      **{f"detail_{k}": np.asarray(v) for k, v in craft.details.items()}}
            files.atomic_write(self._path(key, n), lambda f: np.savez(f, **arrays), binary=True)
        return craft

    def _on_disk(self, key, n):
        if not self._persistent(key):
            return []
        sizes = []
        for path in glob.glob(self._path(key, "[0-9]*")):
            try:
                m = int(path.rsplit("-n", 1)[1][:-len(".npz")])
            except ValueError:
                continue
            if m > n:
                sizes.append(m)
        return sizes

    def _load(self, key, x, n):
        if not self._persistent(key) or len(x) < n:
            return None
        path = self._path(key, n)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                record = json.loads(str(f["key"]))
                arrays = {name: f[name] for name in f.files}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None  # unreadable: computed again (and rewritten)
        expected = json.loads(json.dumps(dict(key, n=int(n), inputs=inputs_digest(x[:n])),
                                         sort_keys=True))
        if record != expected:
            return None
        details = {name[len("detail_"):]: value for name, value in arrays.items()
                   if name.startswith("detail_")}
        return Craft(arrays["x_adv"], float(arrays["seconds"]), details, "loaded")
