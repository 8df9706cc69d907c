"""tf.distribute: TF_CONFIG checks, shards, the sharded MC-dropout sigma, a mirrored run on
2 logical CPU devices, and a 2-worker MultiWorkerMirroredStrategy run of the binaries."""

import glob
import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, write_idx_folder
from keras_edd import config as config_lib
from keras_edd import distribute
from keras_edd.config import DistributionConfig


def _tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def test_parse_tf_config_reads_cluster_and_task():
    cluster, task_type, task_id = config_lib.parse_tf_config(json.dumps(
        {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]},
         "task": {"type": "worker", "index": 1}}))
    assert cluster == {"chief": ["a:1"], "worker": ["b:2", "c:3"]}
    assert (task_type, task_id) == ("worker", 1)
    assert distribute.worker_index(cluster, task_type, task_id) == 2
    assert distribute.worker_index(cluster, "chief", 0) == 0
    assert distribute.worker_index({"worker": ["b:2"]}, "worker", 0) == 0


@pytest.mark.parametrize("text, message", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('["a"]', "must be an object with 'cluster' and 'task'"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "not supported"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}',
     "name at least one worker address"),
    ('{"cluster": {"chief": [], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
     "'chief': must be a non-empty list"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
     "'host:port'"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}',
     "appears twice"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
     "task type 'chief'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
     r"task index 1: allowed range is 0\.\.0"),
])
def test_bad_tf_config_is_one_clear_error(text, message):
    with pytest.raises(ValueError, match=message) as info:
        config_lib.parse_tf_config(text)
    assert "\n" not in str(info.value)


def test_distribution_config_validates_kind_and_devices():
    DistributionConfig(kind="mirrored", cpu_devices=2).validate()
    with pytest.raises(ValueError, match="distribution='gpu': allowed values"):
        DistributionConfig(kind="gpu").validate()
    with pytest.raises(ValueError, match=r"cpu_devices=0: allowed range is \[1"):
        DistributionConfig(cpu_devices=0).validate()
    with pytest.raises(ValueError, match="TF_CONFIG"):
        DistributionConfig(kind="multi_worker").validate()
    # flags.json keeps the kind and the devices, never the cluster's addresses
    config = DistributionConfig(kind="multi_worker", tf_config=_tf_config([1, 2], 0))
    assert config.validate().to_dict() == {"kind": "multi_worker", "cpu_devices": None}


def test_a_run_directory_is_reopened_with_another_distribution(tmp_path):
    from keras_edd.runs import run_dirs
    from keras_edd.runs.run_config import RunConfig
    single = RunConfig(output_dir=str(tmp_path))
    mirrored = RunConfig(output_dir=str(tmp_path),
                         distribution=DistributionConfig(kind="mirrored", cpu_devices=2))
    assert "distribution" not in single.to_dict()  # older run directories still match
    assert mirrored.to_dict()["distribution"] == {"kind": "mirrored", "cpu_devices": 2}
    path, _ = run_dirs.prepare_run_dir(str(tmp_path), "run", single.to_dict())
    (tmp_path / "run" / "checkpoints").mkdir()  # the run has started
    assert run_dirs.prepare_run_dir(str(tmp_path), "run", mirrored.to_dict()) == (path, False)
    with pytest.raises(run_dirs.RunDirError, match="other settings"):
        run_dirs.prepare_run_dir(str(tmp_path), "run", RunConfig(
            output_dir=str(tmp_path), distribution=DistributionConfig(kind="mirrored"),
            train=single.train.__class__(epochs=7)).to_dict())


@pytest.mark.parametrize("n, count, align", [(100, 3, 32), (600, 2, 256), (20, 2, 1024),
                                             (7, 4, 1), (3, 5, 1), (0, 2, 8)])
def test_shards_are_contiguous_aligned_and_cover_the_inputs(n, count, align):
    bounds = [distribute.shard_bounds(n, i, count, align) for i in range(count)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    for (_, stop), (start, _) in zip(bounds, bounds[1:]):
        assert stop == start
    for start, stop in bounds:
        assert start % align == 0 or start == n
        assert start <= stop
    sizes = [stop - start for start, stop in bounds]
    assert n == 0 or sizes[0] > 0  # the chief always has inputs to name the details by
    blocks = [-(-size // align) for size in sizes]  # as even as whole blocks allow
    assert max(blocks) - min(blocks) <= 1


def test_attacks_per_input_split_input_by_input_others_by_whole_calls():
    """CW with early_exit="sample" runs each input on its own (tests/test_attacks_cw.py), so
    a multi-worker craft splits it input by input: 1,000 digits, fewer than its one
    1,024-input call, reach both workers. With early_exit="batch" (the batch's loss stops
    it) and for the attacks not marked per input, the shards stay whole calls."""
    from keras_edd.config import EvalConfig
    from keras_edd import attack_registry
    settings = EvalConfig().attack

    def shards(attack, batch_size=300, **changes):
        params = dict(attack_registry.attack_params(attack, settings), **changes)
        align = attack_registry.shard_align(attack, params, batch_size)
        return [distribute.shard_bounds(1000, i, 2, align) for i in range(2)]

    for attack in ("cw", "cw_adam"):
        assert shards(attack) == [(0, 500), (500, 1000)]
        assert shards(attack, batch_size=1000) == [(0, 500), (500, 1000)]
        assert shards(attack, early_exit="batch") == [(0, 1000), (1000, 1000)]
    for attack in ("fgsm", "pgd", "jsma", "square"):  # 4 calls of 300: 2 each
        assert shards(attack) == [(0, 600), (600, 1000)]
    marked = {name for name, row in attack_registry.ATTACKS.items()
              if row.is_per_input(attack_registry.attack_params(name, settings))}
    assert marked == {"cw", "cw_adam"}
    for name in marked:  # a seed of its own would be the call's (seed + its first index)
        assert not attack_registry.get(name).takes_seed


class _OneProcessShards(distribute.Distribution):
    """Worker `index` of `num_workers`, its merge the identity: summing the workers' results
    is then what the all-reduce computes."""

    def merge(self, array):
        return np.asarray(array)


def test_sharded_mc_sigma_equals_one_process():
    import keras
    from keras_edd import models
    from keras_edd.defense import labeling
    keras.utils.set_random_seed(0)
    model = models.cleverhans_cnn(10)
    images = np.random.default_rng(0).integers(0, 256, (100, 28, 28, 1), dtype=np.uint8)
    whole = labeling.mc_uncertainty(model, images, passes=4, batch_size=32, seed=7)
    parts = [labeling.mc_uncertainty(model, images, passes=4, batch_size=32, seed=7,
                                     distribution=_OneProcessShards(index=i, num_workers=3))
             for i in range(3)]
    for i, part in enumerate(parts):  # each worker computed only its own shard
        start, stop = distribute.shard_bounds(100, i, 3, 32)
        assert np.all(part[:start] == 0) and np.all(part[stop:] == 0)
        assert np.all(part[start:stop] > 0)
    np.testing.assert_array_equal(np.sum(parts, axis=0), whole)  # bit-identical


def _run(args, env=None, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO, **(env or {})), timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("binary, args, env, message", [
    ("train", ["--distribution=multi_worker"], {}, "needs the TF_CONFIG environment variable"),
    ("train", ["--distribution=multi_worker"], {"TF_CONFIG": "{'cluster': 1}"},
     "TF_CONFIG is not valid JSON"),
    ("train", ["--cpu_devices=0"], {}, r"cpu_devices=0: allowed range is \[1, inf\)"),
    ("train", ["--distribution=tpu"], {}, "distribution='tpu': allowed values are"),
    ("eval_whitebox", ["--model=MODEL", "--distribution=multi_worker"],
     {"TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", '
      '"index": 3}}'}, r"task index 3: allowed range is 0\.\.0"),
])
def test_bad_distribution_settings_exit_2_with_one_line(tmp_path, binary, args, env, message):
    model = tmp_path / "model.keras"
    model.write_bytes(b"")
    out = tmp_path / "out"
    args = [a.replace("MODEL", str(model)) for a in args]
    env = {"TF_CONFIG": "", **env} if "TF_CONFIG" not in env else env
    result = _run([f"bin/{binary}", f"--output_dir={out}", "--noprogress", *args], env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bin/{binary}: error: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_mirrored_on_two_cpu_devices_matches_one_device(tmp_path):
    """Dropout off; same start and batches: the loss trajectories agree to float32 rounding
    (the gradients are summed over 2 half batches instead of over one batch)."""
    out = tmp_path / "mirrored.json"
    result = _run(["tests/distributed_jobs.py", "mirrored", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(out.read_text())
    assert found["replicas"] == 2
    assert len(found["single"]) == 4
    np.testing.assert_allclose(found["mirrored"], found["single"], rtol=1e-4)
    assert found["mirrored"][0] == pytest.approx(found["single"][0], rel=1e-6)
    np.testing.assert_allclose(found["mirrored_accuracy"], found["single_accuracy"], atol=1e-6)
    # stopped after 2 epochs and resumed under the strategy: the same run, exactly
    assert found["resumed_from_epoch"] == 2
    assert found["resumed"] == found["mirrored"]
    assert found["max_resumed_weight_difference"] == 0.0


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_workers(binary, args, tmp_path, timeout=240, job=None):
    """Run `bin/<binary> args` as 2 workers of one cluster; each worker's TMPDIR is a
    folder of tmp_path (its private scratch space lives there). With `job`, run
    `tests/distributed_jobs.py <job> args` instead, "{index}" in args replaced by the
    worker's index."""
    ports = _free_ports(2)
    procs = []
    try:
        for index in range(2):
            tmp = tmp_path / f"worker{index}_tmp"
            tmp.mkdir(exist_ok=True)
            env = dict(os.environ, PYTHONPATH=REPO, TMPDIR=str(tmp),
                       TF_CONFIG=_tf_config(ports, index))
            command = [f"bin/{binary}"] if job is None else ["tests/distributed_jobs.py", job]
            procs.append(subprocess.Popen(
                [sys.executable, *command, *(a.replace("{index}", str(index)) for a in args),
                 "--distribution=multi_worker", "--noprogress"], cwd=REPO, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        deadline = time.monotonic() + timeout
        outputs = [p.communicate(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    return [stdout for stdout, _ in outputs]


@pytest.mark.slow
def test_multi_worker_train_and_fgsm_match_one_process(tmp_path):
    """2 workers (local processes, TF_CONFIG on 127.0.0.1): bin/train (extended: teacher,
    sharded MC-dropout sigma, distilled; one epoch each), then bin/eval_whitebox with FGSM
    split across the workers. The chief's run directories hold what one process computes
    from the same models; the other worker writes nothing outside its scratch space."""
    data = tmp_path / "data"
    write_idx_folder(str(data), n_train=600, n_test=40)  # 600: 3 labelling batches of 256
    out = tmp_path / "out"
    stdout = _run_workers("train", [f"--data_dir={data}", f"--output_dir={out}", "--epochs=1",
                                    "--teacher_epochs=1", "--mc_passes=2", "--batch_size=32"],
                          tmp_path)
    assert "worker 1: done" in stdout[1]
    (run_dir,) = glob.glob(str(out / "*"))
    results = json.loads(open(os.path.join(run_dir, "results.json")).read())
    assert results["distribution"] == {"kind": "multi_worker", "workers": 2, "replicas": 2,
                                       "worker": 0}
    assert results["models"]["distilled"]["history"]["epoch"] == [1]

    # sigma: worker 0 labelled the first 512 images, worker 1 the last 88; merged, it is
    # the single-process sigma of the saved teacher, bit for bit
    from keras_edd import data as data_lib
    from keras_edd import models
    from keras_edd.config import DataConfig
    from keras_edd.defense import labeling
    dataset = data_lib.load_data(DataConfig(data_dir=str(data)))
    teacher = models.load_model(os.path.join(run_dir, "teacher.keras"))
    sigma = np.load(os.path.join(run_dir, "labels", "sigma_train.npy"))
    np.testing.assert_array_equal(
        sigma, labeling.mc_uncertainty(teacher, dataset.x_train, passes=2, seed=0))

    model = os.path.join(run_dir, "distilled.keras")
    args = [f"--model={model}", f"--data_dir={data}", "--attacks=fgsm", "--num_examples=32",
            "--attack_batch_size=8", "--nosweeps", "--check_examples=8"]
    _run_workers("eval_whitebox", args + [f"--output_dir={tmp_path / 'eval'}"], tmp_path)
    (eval_dir,) = glob.glob(str(tmp_path / "eval" / "*"))
    found = json.loads(open(os.path.join(eval_dir, "results.json")).read())
    assert found["distribution"]["workers"] == 2

    import dataclasses
    from keras_edd.config import EvalConfig
    from keras_edd.runs import eval_run
    from keras_edd.runs.run_config import WhiteboxConfig
    single = eval_run.run_whitebox(WhiteboxConfig(
        model_path=model, data=DataConfig(data_dir=str(data)), evaluation=EvalConfig(
            attacks=("fgsm",), num_examples=32, sweeps=False, check_examples=8,
            attack=dataclasses.replace(EvalConfig().attack, batch_size=8)),
        output_dir=str(tmp_path / "single"), progress=False))
    entries = [e for e in found["evaluations"] if e["attack"] == "fgsm"]
    assert len(entries) == 2  # plain and adaptive (the distilled model has an outlier class)
    for got, want in zip(entries, [e for e in single["evaluations"] if e["attack"] == "fgsm"]):
        assert got["params"] == want["params"] and got["variant"] == want["variant"]
        assert got["filtered"] == want["filtered"] and got["unfiltered"] == want["unfiltered"]
        assert got["num_examples"] == 32
    for path in glob.glob(os.path.join(eval_dir, "attacks", "*.npz")):
        twin = os.path.join(glob.glob(str(tmp_path / "single" / "*"))[0], "attacks",
                            os.path.basename(path))
        np.testing.assert_array_equal(np.load(path)["x_adv"], np.load(twin)["x_adv"])

    # the non-chief worker left nothing behind: no second run directory, an empty TMPDIR
    assert len(os.listdir(out)) == 1 and len(os.listdir(tmp_path / "eval")) == 1
    assert os.listdir(tmp_path / "worker1_tmp") == []


@pytest.mark.slow
def test_multi_worker_resumes_from_the_chiefs_checkpoint(tmp_path):
    """A 2-worker run killed after its first distilled epoch: only the chief's folder holds
    the teacher, the labels and the checkpoint. Rerun, the other worker takes them from the
    chief (no shared file system) and the result equals the uninterrupted run's exactly."""
    import shutil
    data = tmp_path / "data"
    write_idx_folder(str(data), n_train=192, n_test=20)
    out = tmp_path / "out"
    common = [f"--data_dir={data}", f"--output_dir={out}", "--epochs=2", "--teacher_epochs=1",
              "--mc_passes=2", "--batch_size=32"]
    _run_workers("train", common + ["--run_name=whole"], tmp_path)
    # the state of a run killed during its second distilled epoch
    shutil.copytree(out / "whole", out / "cut")
    (out / "cut" / "results.json").unlink()
    (out / "cut" / "distilled.keras").unlink()
    checkpoints = out / "cut" / "checkpoints" / "distilled"
    for path in checkpoints.glob("ckpt-2.*"):
        path.unlink()
    (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n'
                                            'all_model_checkpoint_paths: "ckpt-1"\n')
    _run_workers("train", common + ["--run_name=cut"], tmp_path)
    whole = json.loads((out / "whole" / "results.json").read_text())
    cut = json.loads((out / "cut" / "results.json").read_text())
    assert cut["models"]["distilled"]["history"]["resumed_from_epoch"] == 1
    assert cut["models"]["distilled"]["history"]["train/loss"] == \
        whole["models"]["distilled"]["history"]["train/loss"]
    from keras_edd import models
    for a, b in zip(models.load_model(str(out / "whole" / "distilled.keras")).get_weights(),
                    models.load_model(str(out / "cut" / "distilled.keras")).get_weights()):
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(out)) == ["cut", "whole"]
    assert os.listdir(tmp_path / "worker1_tmp") == []


@pytest.mark.slow
def test_multi_worker_cw_splits_one_call_and_matches_one_process(tmp_path):
    """bin/eval_whitebox on 2 workers with CW (early_exit="sample") on 6 inputs, one call's
    worth (chunk 1,024): each worker attacks 3 of them, and the merged craft is the
    one-process craft (x_adv within 1e-5; success, L2 and iteration counts of every input;
    the rates), under the same craft file name (cache key)."""
    import keras
    from keras_edd import models
    data = tmp_path / "data"
    write_idx_folder(str(data), n_train=20, n_test=12)
    keras.utils.set_random_seed(0)
    model = str(tmp_path / "model.keras")
    models.cleverhans_cnn(10).save(model)  # untrained: CW needs few steps
    flags = [f"--model={model}", f"--data_dir={data}", "--attacks=cw", "--num_examples=6",
             "--nosweeps", "--check_examples=2", "--cw_max_iterations=20",
             "--cw_binary_search_steps=2", "--cw_confidence=0", "--cw_initial_const=30"]
    _run_workers(None, [str(tmp_path / "worker{index}.json"), *flags,
                        f"--output_dir={tmp_path / 'eval'}"], tmp_path, job="eval_whitebox")
    single = _run(["tests/distributed_jobs.py", "eval_whitebox", str(tmp_path / "single.json"),
                   *flags, f"--output_dir={tmp_path / 'single'}", "--noprogress"])
    assert single.returncode == 0, single.stderr[-3000:]
    calls = [[c for c in json.loads((tmp_path / f"worker{i}.json").read_text())["calls"]
              if c["attack"] == "cw"] for i in range(2)]
    assert calls == [[{"attack": "cw", "start": 0, "inputs": 3}],
                     [{"attack": "cw", "start": 3, "inputs": 3}]]
    assert json.loads((tmp_path / "single.json").read_text())["calls"] == \
        [{"attack": "cw", "start": 0, "inputs": 6}]

    (eval_dir,) = glob.glob(str(tmp_path / "eval" / "*"))
    (single_dir,) = glob.glob(str(tmp_path / "single" / "*"))
    (craft,) = glob.glob(os.path.join(eval_dir, "attacks", "cw-*.npz"))
    got = np.load(craft)
    want = np.load(os.path.join(single_dir, "attacks", os.path.basename(craft)))
    assert 0 < want["detail_success"].sum()  # a craft that moved the inputs
    assert len(set(map(tuple, want["detail_iterations"]))) > 1  # inputs stop on their own
    np.testing.assert_allclose(got["x_adv"], want["x_adv"], atol=1e-5)
    np.testing.assert_array_equal(got["detail_success"], want["detail_success"])
    np.testing.assert_array_equal(got["detail_iterations"], want["detail_iterations"])
    np.testing.assert_allclose(got["detail_l2"], want["detail_l2"], rtol=1e-5)
    found = json.loads(open(os.path.join(eval_dir, "results.json")).read())
    expected = json.loads(open(os.path.join(single_dir, "results.json")).read())
    assert found["distribution"]["workers"] == 2
    (entry,) = [e for e in found["evaluations"] if e["attack"] == "cw"]
    (twin,) = [e for e in expected["evaluations"] if e["attack"] == "cw"]
    assert entry["num_examples"] == 6 and entry["params"] == twin["params"]
    assert entry["filtered"] == twin["filtered"]
    assert entry["unfiltered"] == twin["unfiltered"]
