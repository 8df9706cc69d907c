"""Crafting an evaluation's adversarial examples: each craft made once, kept and shared.

A craft is one attack's x_adv, at one setting, for the first n attacked inputs, computed
on one source model. `Crafting.adversarial` takes it from memory or from the run
directory (keras_edd.evaluation.attack_cache) when it was made before (also as the first
inputs of a longer craft), and otherwise computes it through the attack registry
(run_attack); in a multi-worker run each worker computes its shard and the
shards are merged (`Crafting.shared_craft`). The seconds of the crafts are counted per
stage of the evaluation, apart for those computed here and those loaded.
"""

import collections
import dataclasses
import time

import numpy as np

from keras_edd import attack_registry
from keras_edd import progress as progress_lib
from keras_edd.evaluation import attack_cache
from keras_edd.formatting import format_params


class Crafting:
    """The crafts of one evaluation on its attacked inputs x, with their seconds."""

    def __init__(self, x, config, progress, cache_dir=None, distribution=None):
        self.x = x
        self.config = config
        self.progress = progress
        self.distribution = distribution
        self.crafts = attack_cache.CraftCache(cache_dir)
        self.details = {}  # (craft key digest, n) -> the per-sample fields it reported
        self.stage = None
        # Seconds of crafting computed here, and the recorded seconds of crafts
        # loaded from the run directory, per stage; crafts counted by origin.
        self.computed_seconds = collections.Counter()
        self.loaded_seconds = collections.Counter()
        self.craft_counts = collections.Counter()

    def log(self, message):
        if self.progress:
            print(message, flush=True)

    def crafted(self, source, attack, variant, n, budget=None):
        """(craft key, params, outlier_class the attack is told, variant) of one craft."""
        settings = self.config.attack
        params = attack_registry.attack_params(attack, settings, budget)
        outlier_class = source.attack_outlier_class(variant)
        if attack_registry.get(attack).real_targets:
            # A targeted attack (JSMA) aims at a real class, never at the outlier
            # ("detected") class, so its plain and adaptive variants coincide.
            outlier_class = source.outlier_class
            variant = "plain"
        key = attack_cache.craft_key(
            self.crafts.model_id(source.model), attack, attack_registry.get(attack).function,
            params, variant=variant, outlier_class=outlier_class,
            chunk=attack_registry.chunk_size(attack, settings.batch_size), seed=settings.seed)
        return key, params, outlier_class, variant

    def adversarial(self, source, attack, variant, n, budget=None):
        """(x_adv, params, seconds) for the first n inputs, attacked on `source`.

        A craft made before (in this run, by the interrupted run whose directory
        this is, or as the first inputs of a longer craft) is not computed again;
        see keras_edd.evaluation.attack_cache.
        """
        settings = self.config.attack
        key, params, outlier_class, variant = self.crafted(source, attack, variant, n, budget)
        craft = self.crafts.get(key, self.x, n)
        what = (f"{attack} ({variant}) on {source.name}, {n} inputs, "
                f"{format_params(params)}")
        if self.distribution is not None and self.distribution.num_workers > 1:
            craft = self.shared_craft(craft, key, source, attack, params, outlier_class, n)
            if craft.origin == "computed":
                self.computed_seconds[self.stage] += craft.seconds
            elif craft.origin == "loaded":
                self.loaded_seconds[self.stage] += craft.seconds
        elif craft is None:
            details = {}
            t = time.perf_counter()
            with progress_lib.bar(total=n, desc=f"{attack} ({variant}) on {source.name}",
                                  progress=self.progress, unit="input") as bar:
                x_adv = run_attack(source.model, attack, self.x[:n], params,
                                              outlier_class=outlier_class,
                                              batch_size=settings.batch_size, seed=settings.seed,
                                              on_chunk=bar.update, details=details)
            craft = self.crafts.put(key, self.x, n, x_adv, time.perf_counter() - t, details)
            self.computed_seconds[self.stage] += craft.seconds
        elif craft.origin == "loaded":
            self.loaded_seconds[self.stage] += craft.seconds
        self.craft_counts[craft.origin] += 1
        self.details[(attack_cache.key_digest(key), n)] = craft.details
        if craft.origin != "memory":
            self.log(f"  {what}: {craft.seconds:.1f}s"
                     + ("" if craft.origin == "computed" else f" ({craft.origin})"))
        return craft.x_adv, params, craft.seconds

    def shared_craft(self, craft, key, source, attack, params, outlier_class, n):
        """The craft of x[:n] on every worker of a multi-worker run.

        If the chief has it (from its run directory or memory), it is broadcast.
        Otherwise each worker attacks its contiguous shard of whole chunks, with the
        chunk seeds of a single-process run (seed + the chunk's first index), or,
        for an attack that is per input at these params (CW with early_exit="sample",
        attack_registry.shard_align), its shard of single inputs, and the shards
        (x_adv and the per-input details) are merged exactly; the chief keeps the
        result in its run directory under the single-process key.
        """
        dist = self.distribution
        settings = self.config.attack
        shape = (n,) + self.x.shape[1:]
        if dist.agree(craft is not None):
            meta = dist.broadcast_json({"seconds": craft.seconds, "origin": craft.origin,
                                        "details": _schema(craft.details)}
                                       if dist.is_chief else None)
            x_adv = dist.broadcast(craft.x_adv if dist.is_chief else np.zeros(shape, np.float32))
            details = {name: dist.broadcast(craft.details[name] if dist.is_chief else
                                            np.zeros((n, *trailing), dtype))
                       for name, (trailing, dtype) in meta["details"].items()}
            if dist.is_chief:
                return craft
            shared = self.crafts.put(key, self.x, n, x_adv, meta["seconds"], details)
            return dataclasses.replace(shared, origin=meta["origin"])
        t = time.perf_counter()
        start, stop = dist.shard(n, align=attack_registry.shard_align(
            attack, params, settings.batch_size))
        part_details = {}
        x_adv = np.zeros(shape, np.float32)
        if stop > start:
            with progress_lib.bar(total=stop - start, desc=f"{attack} on {source.name} "
                                  f"[{start}:{stop}]", progress=self.progress,
                                  unit="input") as bar:
                x_adv[start:stop] = run_attack(
                    source.model, attack, self.x[start:stop], params,
                    outlier_class=outlier_class, batch_size=settings.batch_size,
                    seed=settings.seed + start, on_chunk=bar.update, details=part_details)
        # The chief's shard is never empty (n >= 1): its details name the fields.
        schema = dist.broadcast_json(_schema(part_details) if dist.is_chief else None)
        details = {}
        for name, (trailing, dtype) in schema.items():
            full = np.zeros((n, *trailing), dtype)
            if stop > start:
                full[start:stop] = part_details[name]
            details[name] = dist.merge(full)
        x_adv = dist.merge(x_adv)
        return self.crafts.put(key, self.x, n, x_adv, time.perf_counter() - t, details)

    def details_of(self, key, n):
        """The per-sample fields the craft of `key` on the first n inputs reported."""
        return self.details.get((attack_cache.key_digest(key), n))


def _schema(details):
    """{name: (per-input shape, dtype)} of a craft's details, JSON-ready."""
    return {name: (list(np.shape(value)[1:]), np.asarray(value).dtype.str)
            for name, value in details.items()}


def run_attack(model, name, x, params, *, outlier_class=None, batch_size=100, seed=0,
          on_chunk=None, details=None):
    """Adversarial examples for float32 inputs x, computed on `model` (y = its prediction).

    Calls of `attack_registry.chunk_size(name, batch_size)` inputs; an attack that takes `seed`
    gets seed + the chunk's first index, so a prefix of whole chunks is the same
    craft as the start of a longer one. on_chunk(k) is called after each chunk
    (or, for an attack that takes `progress`, each time k inputs finish inside a call)
    of k inputs (progress bars). `details`, a dict, receives the per-input
    arrays the attack reports besides x_adv (a function taking
    `return_details` is asked for them; a result with fields, such as JSMA's
    (x_adv, target, success), gives its other fields), concatenated over chunks:
    e.g. details["success"]. Returns x_adv as a float32 numpy array shaped like x.
    """
    row = attack_registry.get(name)
    step = attack_registry.chunk_size(name, batch_size)
    out, parts = [], {}
    for start in range(0, len(x), step):
        kwargs = dict(params, outlier_class=outlier_class)
        if row.takes_seed:
            kwargs["seed"] = seed + start
        if row.takes_details:
            kwargs["return_details"] = True
        if row.takes_progress and on_chunk is not None:
            kwargs["progress"] = on_chunk
        chunk = x[start:start + step]
        result = row.fn(model, chunk, **kwargs)
        adv = getattr(result, "x_adv", result)
        for field, value in getattr(result, "_asdict", dict)().items():
            if field != "x_adv":
                parts.setdefault(field, []).append(np.asarray(value))
        out.append(np.asarray(adv, np.float32))
        if on_chunk is not None and not row.takes_progress:
            on_chunk(len(chunk))
    if details is not None:
        details.update({field: np.concatenate(values, axis=0) for field, values in parts.items()
                        if all(np.ndim(v) >= 1 for v in values)})
    return np.concatenate(out, axis=0)
