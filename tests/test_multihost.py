"""Multi-process runs end to end: two real processes on 127.0.0.1 (`jax.distributed`, gloo CPU
collectives), 4 CPU devices each, one (data 4, model 2) mesh over the 8 devices, the tiny
model of gin/testing/tiny_offline.gin on `multihost_test_ids` (multihost_testlib: 48 training
examples whose ids can be read back from the batches).

One uninterrupted two-process run (module fixture, 8 steps, checkpoints 4 and 8, batch 8: one
epoch is 6 steps) is the reference of every test: SIGKILL of both processes and resume, the
examples each host read, the global tokens/s of the progress line, eval and infer run by two
processes, and its checkpoint restored in one process on other meshes. Every child is killed
in teardown; a failing test prints each process's stdout / stderr tail. Under xdist the
workers share the one reference run (`reference`).
"""
import fcntl
import json
import os
import re
import shutil

import jax
import numpy as np
import pytest
import tensorflow as tf

import multihost_testlib as ml
import reliability_testlib as rl
from hyperprompt_jax import checkpoints as checkpoints_lib
from hyperprompt_jax import data as data_lib
from hyperprompt_jax import eval as eval_lib
from hyperprompt_jax import faults
from hyperprompt_jax import infer as infer_lib
from hyperprompt_jax import launch
from hyperprompt_jax import partitioning
from hyperprompt_jax import run_dir
from hyperprompt_jax import trainer as trainer_lib

STEPS = 8
PERIOD = 4
GLOBAL_BATCH = 8
EPOCH_STEPS = ml.TRAIN_EXAMPLES // GLOBAL_BATCH  # 6
RUN_TIMEOUT = 900  # seconds for a two-process launch (imports, compiles, 8 steps): 420 s was
# too short on the shared 2-core machine at load average 12
# Unshuffled: seqio repeats a task before it shuffles (its shuffle buffer mixes the end of
# one epoch with the start of the next), so only an unshuffled stream has exact epochs.
# The shuffled single-process resume is tests/test_kill_resume.py's.
TRAIN_BINDINGS = (f'MIXTURE_OR_TASK_NAME="{ml.MIXTURE}"',
                  'MIXTURE_OR_TASK_MODULE="multihost_testlib"',
                  f"CHECKPOINT_PERIOD={PERIOD}", f"LOG_PERIOD={PERIOD}",
                  f"BATCH_SIZE={GLOBAL_BATCH}", "train/data.DatasetConfig.shuffle=False")
MODEL_FLAGS = ["--gin_file=testing/tiny_offline_model.gin",
               f'--gin.MIXTURE_OR_TASK_NAME="{ml.MIXTURE}"',
               '--gin.MIXTURE_OR_TASK_MODULE="multihost_testlib"', "--gin.BATCH_SIZE=8"]


def _train(model_dir, workdir, name, **env):
  args = rl.gin_args(model_dir, *TRAIN_BINDINGS, steps=STEPS) + ml.mesh_flags()
  record = os.path.join(workdir, f"{name}_batches")
  return ml.Processes("hyperprompt_jax.train", args, workdir, name,
                      env=lambda i: {data_lib.RECORD_ENV: record, **env})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted two-process run: `(workdir, model_dir, ml.Outputs)`.

  Run once per session: under xdist the workers share it (the first one to get here runs
  it, under a file lock, in the session's common temporary folder; the other waits).
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # shared by the workers of this session
  workdir = root / "multihost_reference"
  with open(f"{workdir}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    done, failed = workdir / "pids.json", workdir / "failed.txt"
    if failed.exists():
      pytest.fail(f"the reference run failed (in another worker):\n{failed.read_text()}")
    if not done.exists():
      shutil.rmtree(workdir, ignore_errors=True)
      run = _train(workdir / "reference", workdir, "reference")
      try:
        run.check(RUN_TIMEOUT)
      except AssertionError as e:
        failed.write_text(str(e))
        raise
      finally:
        run.kill()
      done.write_text(json.dumps(run.pids))
  return workdir, workdir / "reference", ml.Outputs(workdir, "reference",
                                                    json.loads(done.read_text()))


def _history(model_dir):
  return json.loads((model_dir / run_dir.METRICS_HISTORY).read_text())


def _ids_by_step(record_dir):
  """`{step: [ids of process 0's rows..., ids of process 1's rows...]}` of recorded batches."""
  per_process = [ml.recorded_batches(record_dir, p) for p in range(ml.PROCESSES)]
  assert per_process[0].keys() == per_process[1].keys()
  return {step: sum((ml.example_ids(b[step]["encoder_input_tokens"]) for b in per_process), [])
          for step in sorted(per_process[0])}


def test_sigkill_of_both_processes_and_resume_is_bit_identical(reference, tmp_path):
  _, ref_dir, _ = reference
  model_dir = tmp_path / "run"
  markers = [tmp_path / f"markers_{i}" for i in range(ml.PROCESSES)]
  pause = f"pause@train_step:{PERIOD + 2}"
  killed = ml.Processes(
      "hyperprompt_jax.train",
      rl.gin_args(model_dir, *TRAIN_BINDINGS, steps=STEPS) + ml.mesh_flags(), tmp_path,
      "killed", env=lambda i: {faults.ENV: pause, faults.DIR_ENV: markers[i]})
  try:
    # Both processes are past step 6 and checkpoint_4 is complete (renamed): SIGKILL both.
    killed.wait_for([m / f"train_step_{PERIOD + 2}" for m in markers] +
                    [model_dir / f"checkpoint_{PERIOD}"], RUN_TIMEOUT)
  finally:
    killed.kill()
  assert sorted(n for n in os.listdir(model_dir) if n.startswith("checkpoint_")
                and n.split("_")[1].isdigit()) == [f"checkpoint_{PERIOD}"]

  resumed = _train(model_dir, tmp_path, "resumed")
  try:
    resumed.check(RUN_TIMEOUT)
  finally:
    resumed.kill()
  for i in range(ml.PROCESSES):
    assert (f"Resumed from {model_dir}/checkpoint_{PERIOD} (step {PERIOD}, input batch "
            f"{PERIOD}).") in resumed.stdout(i), resumed.output()
  # Parameters, optimizer state, RNG and step of both checkpoints, bit for bit.
  for step in (PERIOD, STEPS):
    rl.assert_same_state(rl.read_state(model_dir, step), rl.read_state(ref_dir, step))
  # The same losses logged, the same input positions, the same batches after the restart.
  assert _history(model_dir) == _history(ref_dir)
  for step in (PERIOD, STEPS):
    meta = checkpoints_lib.CheckpointManager(str(model_dir)).read_metadata(step)
    ref_meta = checkpoints_lib.CheckpointManager(str(ref_dir)).read_metadata(step)
    assert meta["dataset_position"] == ref_meta["dataset_position"] == step
  resumed_ids = _ids_by_step(tmp_path / "resumed_batches")
  assert sorted(resumed_ids) == list(range(PERIOD + 1, STEPS + 1))
  reference_ids = _ids_by_step(reference[0] / "reference_batches")
  assert resumed_ids == {s: reference_ids[s] for s in resumed_ids}


def test_each_example_of_an_epoch_is_read_once_across_the_hosts(reference):
  workdir, _, _ = reference
  ids = _ids_by_step(workdir / "reference_batches")
  assert sorted(ids) == list(range(1, STEPS + 1))
  assert all(len(v) == GLOBAL_BATCH for v in ids.values())
  first_epoch = [i for s in range(1, EPOCH_STEPS + 1) for i in ids[s]]
  assert sorted(first_epoch) == list(range(ml.TRAIN_EXAMPLES))  # none dropped, none twice
  second_epoch = [i for s in range(EPOCH_STEPS + 1, STEPS + 1) for i in ids[s]]
  assert len(set(second_epoch)) == len(second_epoch)
  # The hosts read disjoint shards: no example of process 0 is ever read by process 1.
  per_process = [{i for b in ml.recorded_batches(workdir / "reference_batches", p).values()
                  for i in ml.example_ids(b["encoder_input_tokens"])}
                 for p in range(ml.PROCESSES)]
  assert not per_process[0] & per_process[1]
  assert len(per_process[0]) == len(per_process[1]) == ml.TRAIN_EXAMPLES // ml.PROCESSES


def _scalars(events_dir):
  """`{tag: {step: value}}` of the TensorBoard event files in `events_dir`."""
  out = {}
  for name in os.listdir(events_dir):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(events_dir, name)):
      for value in event.summary.value:
        out.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
  return out


def test_progress_reports_the_global_batch_tokens_per_second(reference):
  workdir, model_dir, run = reference
  lines = [l for l in run.stdout(0).splitlines() if l.startswith("step ")]
  assert len(lines) == STEPS // PERIOD and all(" global tokens/s " in l for l in lines), lines
  assert not [l for l in run.stdout(1).splitlines() if l.startswith("step ")]
  scalars = _scalars(model_dir / run_dir.TRAIN_SUMMARIES)
  batches = [ml.recorded_batches(workdir / "reference_batches", p) for p in range(ml.PROCESSES)]
  for end in range(PERIOD, STEPS + 1, PERIOD):
    steps = range(end - PERIOD + 1, end + 1)
    local = [sum(data_lib.batch_token_count(b[s]) for s in steps) for b in batches]
    logged = scalars["tokens_per_sec"][end] / scalars["steps_per_sec"][end] * PERIOD
    np.testing.assert_allclose(logged, sum(local), rtol=1e-5)  # both hosts' tokens
    assert abs(logged - local[0]) > 0.25 * local[0]  # not process 0's alone


def test_train_summaries_and_json_files_come_from_process_0(reference):
  workdir, model_dir, run = reference
  # TensorBoard event files carry the writer's pid in their name: one file, process 0's.
  events = os.listdir(model_dir / run_dir.TRAIN_SUMMARIES)
  assert len(events) == 1 and f".{run.pids[0]}." in events[0], (events, run.pids)
  # Process 1 writes its own checkpoint shards and recorded batches, nothing else.
  own = [p for p in run.written(1) if p.startswith(os.fspath(model_dir) + os.sep)]
  assert own and all(os.path.relpath(p, model_dir).startswith("checkpoint_") for p in own), own
  assert not [p for p in own if p.endswith(".json")]
  for name in (run_dir.MODEL_CONFIG, run_dir.METRICS_HISTORY, "task_table.json"):
    assert os.fspath(model_dir / name) in run.written(0)


def _eval_args(model_dir, out_dir):
  return MODEL_FLAGS + ["--gin_file=runs/eval.gin", f'--gin.CHECKPOINT_PATH="{model_dir}"',
                        f'--gin.EVAL_OUTPUT_DIR="{out_dir}"', "--gin.CHECKPOINT_STEPS='all'"]


def _infer_args(model_dir, out_dir):
  return MODEL_FLAGS + ["--gin_file=runs/infer.gin",
                        f'--gin.CHECKPOINT_PATH="{model_dir}/checkpoint_{STEPS}"',
                        f'--gin.INFER_OUTPUT_DIR="{out_dir}"', '--gin.INFER_SPLIT="validation"',
                        "--gin.TASK_FEATURE_LENGTHS={'inputs': 10, 'targets': 3}"]


def _files(directory):
  """`{relative path: bytes}` of the files under `directory` (event files: name only)."""
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      key = os.path.relpath(path, directory)
      if "tfevents" in name:
        out[os.path.join(os.path.dirname(key), "events")] = b""
      else:
        with open(path, "rb") as f:
          out[key] = f.read()
  return out


@pytest.mark.parametrize("command", ["eval", "infer"])
def test_eval_and_infer_run_two_process_and_write_once(reference, tmp_path, command):
  _, model_dir, _ = reference
  module = {"eval": "hyperprompt_jax.eval", "infer": "hyperprompt_jax.infer"}[command]
  args_of = {"eval": _eval_args, "infer": _infer_args}[command]
  # Each process is given its own output folder: process 1's must stay absent.
  outs = [tmp_path / f"out_{i}" for i in range(ml.PROCESSES)]
  run = ml.Processes(module, [], tmp_path, command,
                     per_process=lambda i: args_of(model_dir, outs[i])[:] + ml.mesh_flags())
  try:
    run.check(RUN_TIMEOUT)
  finally:
    run.kill()
  assert not os.path.exists(outs[1]), os.listdir(outs[1])
  assert not [p for p in run.written(1) if p.startswith(os.fspath(outs[1]))]
  two_process = _files(outs[0])

  # The same command in one process (this one: 8 devices, the same (4, 2) mesh).
  single = tmp_path / "single"
  fn = {"eval": eval_lib.evaluate, "infer": infer_lib.infer}[command]
  result = launch.run(fn, args_of(model_dir, single) + ml.mesh_flags())
  one_process = _files(single)
  if command == "eval":
    assert sorted(result) == [PERIOD, STEPS]
    expected = {run_dir.eval_results(PERIOD), run_dir.eval_results(STEPS),
                "best_checkpoints.json"}
    assert expected <= set(two_process), sorted(two_process)
    assert [n for n in two_process if n.endswith("events")], sorted(two_process)  # seqio's
    for step in (PERIOD, STEPS):
      name = run_dir.eval_results(step)
      ours, theirs = (json.loads(f[name]) for f in (two_process, one_process))
      assert ours["metrics"] == theirs["metrics"] == result[step]
  else:
    task = f"{ml.TASK}-validation-{STEPS}.jsonl"
    rows = [json.loads(l) for l in two_process[task].decode().splitlines()]
    assert [r["index"] for r in rows] == list(range(ml.VALIDATION_EXAMPLES))
    assert {r["inputs"] for r in rows} == {ml._example_text("validation", i)  # pylint: disable=protected-access
                                           for i in range(ml.VALIDATION_EXAMPLES)}
  # Everything process 0 wrote (JSON, JSONL predictions, event files) is what one process
  # writes, byte for byte (event files: the same names; they hold write times).
  assert set(two_process) == set(one_process)
  for name in two_process:
    assert two_process[name] == one_process[name], name


def restore_state(*, model, mesh_shape):
  """The full training state of the reference's last checkpoint on a one-process mesh."""
  partitioner = partitioning.Partitioner(mesh_shape=mesh_shape,
                                         compiler_options={"xla_backend_optimization_level": 0})
  trainer = trainer_lib.Trainer(model, model.optimizer_def, partitioner,
                                trainer_lib.batch_shapes(GLOBAL_BATCH,
                                                         {"inputs": 10, "targets": 3}))
  return trainer.abstract_state


@pytest.mark.parametrize("mesh", [(8, 1), (1, 1)])
def test_a_two_process_checkpoint_restores_in_one_process_on_another_mesh(reference, mesh):
  _, model_dir, _ = reference
  raw = rl.read_state(model_dir, STEPS)  # the arrays as stored, without a mesh
  abstract_state = launch.run(restore_state, [
      "--gin_file=testing/tiny_offline_model.gin", "--gin_file=optimizers/adafactor.gin",
      "--gin.DROPOUT_RATE=0.0", "--gin.restore_state.model=%MODEL",
      f"--gin.restore_state.mesh_shape={mesh}"])
  manager = checkpoints_lib.CheckpointManager(str(model_dir))
  state, metadata = manager.restore(STEPS, abstract_state)
  assert metadata["step"] == STEPS
  # Paths as 'state/opt_state/0/v/...' on both sides (optax states are namedtuples here,
  # dicts in the stored tree).
  raw = {re.sub(r"\]\[", "/", k).strip("[]").replace("'", ""): v for k, v in raw.items()}
  restored = {jax.tree_util.keystr(p, simple=True, separator="/"): v for p, v in
              jax.tree_util.tree_flatten_with_path(checkpoints_lib.state_tree(state))[0]}
  assert restored.keys() == raw.keys()
  for key, value in restored.items():
    assert value.sharding.mesh.devices.shape == mesh, key
    np.testing.assert_array_equal(np.asarray(value), raw[key], err_msg=key)


@pytest.mark.parametrize("flags,call", [
    ([], None),
    (["--coordinator_address=10.0.0.2:1234", "--process_count=4", "--process_index=3"],
     (("10.0.0.2:1234",), {"num_processes": 4, "process_id": 3})),
    (["--coordinator_address=auto"], ((), {})),  # Cloud TPU (and Slurm, Open MPI)
    (["--multiprocess_gpu"], ((), {})),  # t5x's flag, values from Slurm / Open MPI
    (["--multiprocess_gpu", "--coordinator_address=10.0.0.2:1234", "--process_count=2",
      "--process_index=0"], (("10.0.0.2:1234",), {"num_processes": 2, "process_id": 0})),
])
def test_distributed_flags_reach_jax_distributed_initialize(monkeypatch, flags, call):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
  args = launch.parse_args(flags)
  initialised = partitioning.initialize_distributed(
      args.coordinator_address, args.process_count, args.process_index,
      multiprocess_gpu=args.multiprocess_gpu)
  assert initialised == (call is not None) and calls == ([call] if call else [])


@pytest.mark.parametrize("flags", [["--process_count=2"],
                                   ["--coordinator_address=auto", "--process_index=1"]])
def test_incomplete_distributed_flags_are_one_clear_error(monkeypatch, flags):
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: pytest.fail("called"))
  args = launch.parse_args(flags)
  with pytest.raises(launch.ConfigurationError, match="process_"):
    partitioning.initialize_distributed(args.coordinator_address, args.process_count,
                                        args.process_index)
