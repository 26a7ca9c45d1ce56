"""Helpers of the multi-process tests: a task whose example ids survive into the batches, and
groups of real processes (`jax.distributed` on 127.0.0.1, CPU collectives, 4 devices each).

Importing this module registers `multihost_test_ids` (`MIXTURE_OR_TASK_MODULE =
'multihost_testlib'`): one task (index 0) of `TRAIN_EXAMPLES` training and
`VALIDATION_EXAMPLES` validation examples. Example i's input is its id, three digits, and
four letters; the target is the input's last letter. With the byte vocabulary the id is
bytes 1-3 of every row of `encoder_input_tokens` (after the task sentinel), so the ids a
process trained on can be read back from the batches it recorded (`data.RECORD_ENV`).
"""
import glob
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import seqio
import tensorflow as tf

import reliability_testlib as rl

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "multihost_child.py")
MIXTURE = "multihost_test_ids"
TASK = "multihost_test_ids_task"
TRAIN_EXAMPLES = 48
VALIDATION_EXAMPLES = 12
PROCESSES = 2
DEVICES_PER_PROCESS = 4
MESH = "(4, 2)"
WRITE_LOG_ENV = "HYPERPROMPT_TEST_WRITE_LOG"


def _example_text(split, i):
  letters = "abcd"[i % 4] + "abcd"[(i // 4) % 4] + "dcba"[(i // 16) % 4] + "abcd"[(i * 7) % 4]
  return f"{(i if split == 'train' else 500 + i):03d}{letters}"


def _rows(split, shuffle_files, seed=None):
  del shuffle_files, seed
  n = TRAIN_EXAMPLES if split == "train" else VALIDATION_EXAMPLES
  inputs = [_example_text(split, i) for i in range(n)]
  return tf.data.Dataset.from_tensor_slices({"inputs": inputs,
                                             "targets": [t[-1] for t in inputs]})


def accuracy(targets, predictions):
  return {"accuracy": 100.0 * float(np.mean([t == p for t, p in zip(targets, predictions)]))}


def _register():
  import hyperprompt_tasks  # pylint: disable=g-import-not-at-top
  from hyperprompt_tasks import vocabularies  # pylint: disable=g-import-not-at-top
  if MIXTURE in seqio.MixtureRegistry.names():
    return
  vocab = vocabularies.byte_vocabulary()
  features = {"inputs": seqio.Feature(vocab, add_eos=True),
              "targets": seqio.Feature(vocab, add_eos=True)}
  hyperprompt_tasks.register_task(
      TASK, source=seqio.FunctionDataSource(_rows, splits=("train", "validation")),
      preprocessors=[], output_features=features, metric_fns=[accuracy])
  hyperprompt_tasks.register_mixture(MIXTURE, [(TASK, 1.0)])


_register()


def example_ids(encoder_input_tokens):
  """The example id of every row of a batch's `encoder_input_tokens` (byte vocabulary)."""
  return [int(bytes(int(t) - 3 for t in row[1:4]).decode()) for row in encoder_input_tokens]


def recorded_batches(record_dir, process):
  """`{position: batch}` of the training batches `process` recorded (`data.RECORD_ENV`)."""
  out = {}
  for path in glob.glob(os.path.join(record_dir, f"process_{process}", "batch_*.npz")):
    with np.load(path) as f:
      out[int(os.path.basename(path)[len("batch_"):-len(".npz")])] = dict(f)
  return out


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def mesh_flags(mesh=MESH):
  return ["--gin.partitioning.Partitioner.num_partitions=None",
          f"--gin.partitioning.Partitioner.mesh_shape={mesh}",
          "--gin.partitioning.Partitioner.compiler_options="
          "{'xla_backend_optimization_level': 0}"]


class Outputs:
  """What the processes of one launch left in `workdir/<name>_<i>.{out,err,writes}`."""

  def __init__(self, workdir, name, pids):
    self.name, self.pids = name, list(pids)
    self.paths = [os.path.join(os.fspath(workdir), f"{name}_{i}") for i in range(len(pids))]

  def stdout(self, i):
    return _read(self.paths[i] + ".out")

  def stderr(self, i):
    return _read(self.paths[i] + ".err")

  def written(self, i):
    """Absolute paths process i wrote through Python (see multihost_child.py)."""
    return sorted(set(_read(self.paths[i] + ".writes").split()))

  def output(self):
    return "\n".join(f"--- {self.name} process {i} (pid {pid}) stdout\n"
                     f"{self.stdout(i)[-2000:]}\n--- stderr\n{self.stderr(i)[-3000:]}"
                     for i, pid in enumerate(self.pids))


class Processes(Outputs):
  """`PROCESSES` copies of `python -m MODULE ARGS` forming one jax.distributed job.

  Process i gets `--coordinator_address=127.0.0.1:<free port> --process_count=N
  --process_index=i`, `DEVICES_PER_PROCESS` CPU devices, its stdout / stderr in
  `workdir/<name>_<i>.{out,err}` and its log of written files in `<name>_<i>.writes`.
  `per_process(i)` adds arguments of process i only; `env(i)` its environment.
  """

  def __init__(self, module, args, workdir, name, per_process=lambda i: [],
               env=lambda i: {}, count=PROCESSES):
    os.makedirs(workdir, exist_ok=True)
    port = free_port()
    super().__init__(workdir, name, [None] * count)
    self.procs, self.files = [], []
    try:
      for i, base in enumerate(self.paths):
        out, err = open(base + ".out", "w"), open(base + ".err", "w")
        self.files += [out, err]
        flags = [f"--coordinator_address=127.0.0.1:{port}", f"--process_count={count}",
                 f"--process_index={i}"]
        # No persistent compilation cache: only process 0 writes it, so a warm cache
        # lets process 0 skip compilations that process 1 still does, and gloo gives a
        # process 30 s to join a collective the other one has entered.
        child_env = rl.child_env(
            XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}",
            JAX_ENABLE_COMPILATION_CACHE="false",
            **{WRITE_LOG_ENV: base + ".writes"}, **env(i))
        self.procs.append(subprocess.Popen(
            [sys.executable, CHILD, module, *args, *per_process(i), *flags], cwd=rl.ROOT,
            env=child_env, stdout=out, stderr=err))
        self.pids[i] = self.procs[-1].pid
    except BaseException:
      self.kill()
      raise

  def kill(self):
    """SIGKILLs every process still running and reaps them all."""
    for p in self.procs:
      if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    for p in self.procs:
      try:
        p.wait(30)
      except subprocess.TimeoutExpired:
        pass
    for f in self.files:
      f.close()

  def wait(self, timeout):
    """Exit statuses of all processes; on timeout they are killed and the test fails."""
    deadline = time.monotonic() + timeout
    try:
      for p in self.procs:
        p.wait(max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
      self.kill()
      raise AssertionError(f"{self.name} did not finish within {timeout}s:\n{self.output()}")
    self.kill()  # closes the files
    return [p.returncode for p in self.procs]

  def check(self, timeout):
    """Waits and fails, with every process's output, unless all exit with status 0."""
    codes = self.wait(timeout)
    assert codes == [0] * len(codes), self.output()

  def wait_for(self, paths, timeout):
    """Waits until every path exists; fails (killing all) on timeout or an early exit."""
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(p) for p in paths):
      if any(p.poll() is not None for p in self.procs):
        self.kill()
        raise AssertionError(f"{self.name} exited before {paths} appeared:\n{self.output()}")
      if time.monotonic() > deadline:
        self.kill()
        raise AssertionError(f"{paths} did not appear within {timeout}s:\n{self.output()}")
      time.sleep(0.05)

  def output(self):
    return f"exit statuses {[p.poll() for p in self.procs]}\n{super().output()}"


def _read(path):
  try:
    with open(path) as f:
      return f.read()
  except FileNotFoundError:
    return ""
