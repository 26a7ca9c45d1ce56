"""Helpers of the reliability tests: the tiny offline run, subprocess control, file snapshots.

Every run uses gin/testing/tiny_offline.gin (T5.1.1 tiny + HyperPrompt-Global on
the offline mixture hyperprompt_offline_v1, one device, no evaluation). Importing
this module also registers `reliability_test_empty_mixture`, whose second task
has no training examples, and `reliability_test_reordered_offline`, the offline
tasks in reverse order (`MIXTURE_OR_TASK_MODULE = 'reliability_testlib'`).
"""
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import seqio
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_FILE = "testing/tiny_offline.gin"
CACHE_DIR = os.path.join(tempfile.gettempdir(), f"hyperprompt_reliability_tests_{os.getuid()}")
EMPTY_MIXTURE = "reliability_test_empty_mixture"
REORDERED_MIXTURE = "reliability_test_reordered_offline"  # the offline table, reversed


def gin_args(model_dir, *bindings, steps=None):
  """Command-line arguments of a tiny run in `model_dir` (strings quoted for gin)."""
  args = [f"--gin_file={GIN_FILE}", f'--gin.MODEL_DIR="{model_dir}"']
  if steps is not None:
    args.append(f"--gin.TRAIN_STEPS={steps}")
  return args + [b if b.startswith("--") else f"--gin.{b}" for b in bindings]


def child_env(**extra):
  """Environment of a training subprocess: 8 fake CPU devices, quiet TF, shared jit cache."""
  env = dict(os.environ)
  env.update({
      "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
      "TF_CPP_MIN_LOG_LEVEL": "3",
      "CUDA_VISIBLE_DEVICES": "",
      "JAX_COMPILATION_CACHE_DIR": CACHE_DIR,
      "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
      "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests"),
                                     env.get("PYTHONPATH", "")]),
  })
  env.pop("HYPERPROMPT_FAULTS", None)
  env.update({k: str(v) for k, v in extra.items()})
  return env


def enable_compilation_cache():
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


class Child:
  """`python -m hyperprompt_jax.train ...` in a subprocess, output to files."""

  def __init__(self, args, workdir, name, **env):
    self.out_path = os.path.join(workdir, f"{name}.out")
    self.err_path = os.path.join(workdir, f"{name}.err")
    self._out, self._err = open(self.out_path, "w"), open(self.err_path, "w")
    self.proc = subprocess.Popen([sys.executable, "-m", "hyperprompt_jax.train", *args],
                                 cwd=ROOT, env=child_env(**env), stdout=self._out,
                                 stderr=self._err)

  def wait_for_file(self, path, timeout):
    """Waits until `path` exists; fails (killing the child) on timeout or early exit."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
      if self.proc.poll() is not None:
        raise AssertionError(f"the run exited ({self.proc.returncode}) before {path} "
                             f"appeared:\n{self.output()}")
      if time.monotonic() > deadline:
        self.kill()
        raise AssertionError(f"{path} did not appear within {timeout}s:\n{self.output()}")
      time.sleep(0.05)

  def signal(self, signum):
    self.proc.send_signal(signum)

  def kill(self):
    if self.proc.poll() is None:
      self.proc.send_signal(signal.SIGKILL)
    return self.wait(30)

  def wait(self, timeout):
    try:
      rc = self.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait(10)
      raise AssertionError(f"the run did not finish within {timeout}s:\n{self.output()}")
    self._out.close()
    self._err.close()
    return rc

  def stdout(self):
    with open(self.out_path) as f:
      return f.read()

  def stderr(self):
    with open(self.err_path) as f:
      return f.read()

  def output(self):
    return f"--- stdout\n{self.stdout()[-3000:]}\n--- stderr\n{self.stderr()[-3000:]}"


def snapshot(directory):
  """`{relative path: sha256}` of every file under `directory`."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
  return out


def error_lines(stderr):
  """The lines of stderr a user sees (absl / TF start-up noise dropped)."""
  noise = ("WARNING: All log messages before absl", "I0000", "W0000", "E0000")
  return [l for l in stderr.splitlines() if l.strip() and not l.startswith(noise)
          and "uncached FunctionDataset" not in l]


def read_state(model_dir, step):
  """`{path: numpy array}` of everything checkpoint_<step> holds (params, optimizer, RNG, step).

  Read as numpy arrays, so a checkpoint written on any mesh or number of processes reads
  here (Orbax refuses to restore one saved on other devices into jax arrays without
  target shardings).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  path = os.path.join(model_dir, f"checkpoint_{step}", "state")
  with ocp.PyTreeCheckpointer() as ckptr:
    metadata = ckptr.metadata(path)
    tree = getattr(metadata, "item_metadata", None) or getattr(metadata, "tree", metadata)
    item = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)
    restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                          item)
    state = ckptr.restore(path, args=ocp.args.PyTreeRestore(item=item,
                                                            restore_args=restore_args))
  flat, _ = jax.tree_util.tree_flatten_with_path(state)
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}


def assert_same_state(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ---------------------------------------------------------------------------
# A mixture with an empty training split.
# ---------------------------------------------------------------------------


def _register_empty_mixture():
  import hyperprompt_tasks  # pylint: disable=g-import-not-at-top
  from hyperprompt_tasks import vocabularies  # pylint: disable=g-import-not-at-top
  if EMPTY_MIXTURE in seqio.MixtureRegistry.names():
    return
  vocab = vocabularies.byte_vocabulary()
  features = {"inputs": seqio.Feature(vocab, add_eos=True),
              "targets": seqio.Feature(vocab, add_eos=True)}

  def rows(n):
    def fn(split, shuffle_files, seed=None):
      del shuffle_files, seed
      count = 0 if (n == 0 and split == "train") else 8
      return tf.data.Dataset.from_tensor_slices(
          {"inputs": ["abcd"] * count, "targets": ["a"] * count})
    return fn

  for name, n in (("reliability_test_full", 8), ("reliability_test_empty", 0)):
    hyperprompt_tasks.register_task(
        name, source=seqio.FunctionDataSource(rows(n), splits=("train", "validation")),
        preprocessors=[], output_features=features)
  hyperprompt_tasks.register_mixture(EMPTY_MIXTURE, [("reliability_test_full", 1.0),
                                                     ("reliability_test_empty", 1.0)])


def _register_reordered_mixture():
  import hyperprompt_tasks  # pylint: disable=g-import-not-at-top
  if REORDERED_MIXTURE not in seqio.MixtureRegistry.names():
    hyperprompt_tasks.register_mixture(REORDERED_MIXTURE,
                                       [(t, 1.0) for t in reversed(hyperprompt_tasks.offline.TASKS)])


_register_empty_mixture()
_register_reordered_mixture()
