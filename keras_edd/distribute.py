"""Several devices and machines with tf.distribute: strategies, shards and merges.

A run is `none` (one process, one device: the default, numerically what the
package always did), `mirrored` (tf.distribute.MirroredStrategy over the local
GPUs, or over `cpu_devices` logical CPU devices) or `multi_worker`
(tf.distribute.MultiWorkerMirroredStrategy over the machines TF_CONFIG names).
`start(config)` (a keras_edd.config.DistributionConfig) makes the `Distribution`
of this process, once: logical devices and collective ops can be set up only
before TensorFlow first runs.

What runs where:
  training   the custom loop of keras_edd.defense.training runs its step with
             `strategy.run` on per-replica slices of each global batch (the batch
             size is unchanged; the loss is averaged over the global batch and the
             gradients summed over the replicas by the Keras optimizer).
  labelling  MC-dropout sigma (keras_edd.defense.labeling) and the attacks
  attacks    (keras_edd.evaluation.engine) are split across the *workers*: each takes a
             contiguous shard of the inputs, aligned on whole batches (chunks), so
             its dropout masks and attack seeds are those of a single-process run
             (an attack whose inputs do not depend on their call, CW with
             early_exit="sample", is split input by input: attack_registry.shard_align);
             `merge` sums the zero-padded shards with an all-reduce, which is exact
             (x + 0 = x), so every worker ends up with the single-process array.

Only the chief (task `chief`, or `worker` 0 when TF_CONFIG names no chief)
writes into the user's folders: the other workers do the same work in a private
scratch folder (`private_dir`, deleted at exit), as the TensorFlow multi-worker
guide describes. Whatever the chief decides from its files (a finished run to
reuse, a checkpoint to resume, a cached craft) is shared with `agree`,
`broadcast_json` and `broadcast_variables`, so the workers need no shared file
system and never disagree on which collective comes next.
"""

import atexit
import contextlib
import json
import os
import shutil
import tempfile

import numpy as np

from keras_edd import config as config_lib





def worker_index(cluster, task_type, task_id):
    """This task's place among the workers: the chief first, then the workers in order."""
    return (0 if task_type == "chief" else len(cluster.get("chief", [])) + task_id)


def shard_bounds(n, index, count, align=1):
    """[start, stop) of worker `index` of `count` in range(n): contiguous shards of whole
    `align`-sized blocks (the last block may be short), as even as the blocks allow; the
    first workers take the extra blocks, so the chief's shard is empty only when n = 0."""
    base, extra = divmod(-(-n // align), count)

    def first(i):
        return (i * base + min(i, extra)) * align

    return min(first(index), n), min(first(index + 1), n)


class Distribution:
    """This process's place in a run: its tf.distribute strategy (None: one device) and,
    for multi_worker, which worker it is. Built by `start`."""

    def __init__(self, kind="none", strategy=None, *, index=0, num_workers=1):
        self.kind = kind
        self.strategy = strategy
        self.index = index
        self.num_workers = num_workers
        self._scratch = None

    @property
    def is_chief(self):
        return self.index == 0

    @property
    def num_replicas(self):
        return 1 if self.strategy is None else self.strategy.num_replicas_in_sync

    @property
    def local_replicas(self):
        return 1 if self.strategy is None else len(self.strategy.extended.worker_devices)

    def scope(self):
        """The strategy's scope (variables made in it are mirrored); a no-op for `none`."""
        return contextlib.nullcontext() if self.strategy is None else self.strategy.scope()

    def shard(self, n, align=1):
        """This worker's [start, stop) of n inputs (see shard_bounds)."""
        return shard_bounds(n, self.index, self.num_workers, align)

    # ------------------------------------------------------------------ collectives
    # Every worker must make the same calls in the same order (collective ops pair up
    # by order); with one worker they return their argument and communicate nothing.

    def merge(self, array):
        """The sum over workers of `array` (same shape and dtype everywhere).

        With disjoint shards and zeros elsewhere this is the gathered array, exactly.
        """
        array = np.asarray(array)
        if self.num_workers == 1:
            return array
        import tensorflow as tf
        wire = {np.dtype(np.float32): tf.float32, np.dtype(np.float64): tf.float64}.get(
            array.dtype, tf.int64)
        value = tf.convert_to_tensor(array.astype(wire.as_numpy_dtype, copy=False))
        local = self.local_replicas

        def first_local_replica(context):
            return value if context.replica_id_in_sync_group % local == 0 else \
                tf.zeros_like(value)

        per_replica = self.strategy.experimental_distribute_values_from_function(
            first_local_replica)
        total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return total.numpy().astype(array.dtype, copy=False)

    def broadcast(self, array):
        """The chief's `array` on every worker (each passes an array of that shape)."""
        array = np.asarray(array)
        return self.merge(array if self.is_chief else np.zeros_like(array))

    def agree(self, flag):
        """The chief's truth value of `flag`, on every worker."""
        return bool(self.broadcast(np.array([int(bool(flag))], np.int64))[0])

    def broadcast_json(self, obj):
        """The chief's JSON-ready `obj` on every worker (the others may pass None)."""
        if self.num_workers == 1:
            return obj
        payload = np.frombuffer(json.dumps(obj).encode(), np.uint8) if self.is_chief else \
            np.zeros(0, np.uint8)
        size = int(self.broadcast(np.array([payload.size], np.int64))[0])
        data = self.broadcast(payload.astype(np.int64) if self.is_chief else
                              np.zeros(size, np.int64))
        return json.loads(data.astype(np.uint8).tobytes().decode())

    def broadcast_variables(self, variables):
        """Give every worker the chief's values of `variables` (weights, optimizer slots,
        dropout RNG states, counters): what it restored or loaded, the others did not."""
        if self.num_workers == 1:
            return
        for variable in variables:
            variable.assign(self.broadcast(variable.numpy()))

    # ------------------------------------------------------------------ files

    def private_dir(self, path):
        """`path` for the chief; for another worker, a folder of its scratch space that
        mirrors it (the chief alone writes into the user's folders)."""
        if self.is_chief:
            return path
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix=f"keras_edd-worker{self.index}-")
            atexit.register(shutil.rmtree, self._scratch, ignore_errors=True)
        absolute = os.path.abspath(path)
        if absolute.startswith(self._scratch + os.sep):
            return absolute
        return os.path.join(self._scratch, absolute.lstrip(os.sep))

    def describe(self):
        """For results.json: the kind, the workers, the replicas, and which worker wrote it."""
        return {"kind": self.kind, "workers": self.num_workers, "replicas": self.num_replicas,
                "worker": self.index}


LOCAL = Distribution()
_STARTED = {}


def start(config):
    """The Distribution of `config` (a DistributionConfig, or None for `none`), made once
    per process; a second call with other settings raises ValueError."""
    if config is None or (config.kind == "none" and config.cpu_devices is None):
        return _STARTED.get("current", LOCAL) if config is None else LOCAL
    key = (config.kind, config.cpu_devices, config.tf_config)
    if "current" in _STARTED:
        if _STARTED["key"] != key:
            raise ValueError(f"distribution={config.kind}: this process already runs "
                             f"{_STARTED['key'][0]} (a strategy is set up once per process)")
        return _STARTED["current"]
    import tensorflow as tf
    if config.cpu_devices is not None:
        split_cpu(config.cpu_devices)
    if config.kind == "none":
        dist = LOCAL
    elif config.kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        dist = Distribution("mirrored", tf.distribute.MirroredStrategy(devices))
    else:
        cluster, task_type, task_id = config_lib.parse_tf_config(config.tf_config)
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id,
            rpc_layer="grpc")
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        dist = Distribution("multi_worker", strategy,
                            index=worker_index(cluster, task_type, task_id),
                            num_workers=sum(len(v) for v in cluster.values()))
    _STARTED.update(current=dist, key=key)
    return dist


def split_cpu(count):
    """Split the first CPU into `count` logical devices (before TensorFlow runs anything)."""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError:
        raise ValueError(f"cpu_devices={count}: TensorFlow already runs in this process; "
                         "logical devices are set up only before it starts") from None
