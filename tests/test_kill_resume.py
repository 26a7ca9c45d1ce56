"""Kill and resume: `python -m hyperprompt_jax.train` in a subprocess is stopped with SIGTERM
(preemption) and SIGKILL (between checkpoints and in the middle of a checkpoint write),
restarted, and must end with exactly the state of an uninterrupted run.

The kill points are made deterministic with HYPERPROMPT_FAULTS pauses (`faults.py`): the
child writes a marker file and sleeps at the named point; the test then signals it.
Checkpoints every 5 steps, 15 steps in all; every wait is bounded.
"""
import glob
import os
import signal

import pytest

import reliability_testlib as rl
from hyperprompt_jax import faults
from hyperprompt_jax import train as train_lib

rl.enable_compilation_cache()
STEPS = 15
START_TIMEOUT = 300  # seconds until a child reaches a pause point (imports + compile)
RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted run of the same command (in this process)."""
  model_dir = tmp_path_factory.mktemp("reference") / "run"
  assert train_lib.main(rl.gin_args(model_dir, steps=STEPS)) == 0
  return rl.read_state(model_dir, STEPS)


def _steps(model_dir):
  return sorted(int(n.split("_")[1]) for n in os.listdir(model_dir)
                if n.startswith("checkpoint_") and n.split("_")[1].isdigit())


def _paused_child(tmp_path, model_dir, name, fault):
  markers = tmp_path / "markers"
  child = rl.Child(rl.gin_args(model_dir, steps=STEPS), tmp_path, name,
                   **{faults.ENV: fault, faults.DIR_ENV: markers})
  point, step = fault.split("@")[1].split(":")
  child.wait_for_file(markers / f"{point}_{step}", START_TIMEOUT)
  return child


def _finish(tmp_path, model_dir, resumed_from):
  child = rl.Child(rl.gin_args(model_dir, steps=STEPS), tmp_path, "finish")
  assert child.wait(RUN_TIMEOUT) == 0, child.output()
  assert f"Resumed from {model_dir}/checkpoint_{resumed_from} (step {resumed_from}, input " \
         f"batch {resumed_from})." in child.stdout(), child.output()
  assert not [n for n in os.listdir(model_dir) if "tmp" in n]  # partial writes cleaned up
  return rl.read_state(model_dir, STEPS)


def test_sigterm_saves_and_sigkill_during_a_checkpoint_write_loses_nothing(tmp_path,
                                                                           reference):
  model_dir = tmp_path / "run"
  # Preemption after step 7 (not a checkpoint step): the run saves checkpoint_7, says so on
  # one line and exits with 128 + SIGTERM.
  child = _paused_child(tmp_path, model_dir, "sigterm", "pause@train_step:7")
  child.signal(signal.SIGTERM)
  assert child.wait(RUN_TIMEOUT) == 143, child.output()
  lines = [l for l in rl.error_lines(child.stderr()) if not l.startswith("WARNING:")]
  assert lines == [f"preempted (SIGTERM) at step 7: saved {model_dir}/checkpoint_7; rerun the "
                   "same command to resume."], child.output()
  assert _steps(model_dir) == [5, 7]

  # Restarted, then SIGKILLed while checkpoint_10 is being written: only its temporary
  # folder exists.
  child = _paused_child(tmp_path, model_dir, "sigkill_write", "pause@checkpoint_write:10")
  assert f"Resumed from {model_dir}/checkpoint_7 (step 7" in child.stdout()
  partial = glob.glob(str(model_dir / "checkpoint_10.*"))
  assert partial and not os.path.exists(model_dir / "checkpoint_10"), os.listdir(model_dir)
  child.kill()
  assert _steps(model_dir) == [5, 7] and glob.glob(str(model_dir / "checkpoint_10.*"))

  # Restarted: resumes from checkpoint_7 (never the partial checkpoint_10) and ends with
  # the uninterrupted run's parameters, optimizer state, RNG and step, bit for bit.
  rl.assert_same_state(_finish(tmp_path, model_dir, resumed_from=7), reference)
  assert _steps(model_dir) == [5, 7, 10, 15]


def test_sigkill_between_checkpoints_resumes_from_the_last_complete_one(tmp_path, reference):
  model_dir = tmp_path / "run"
  child = _paused_child(tmp_path, model_dir, "sigkill_step", "pause@train_step:8")
  # checkpoint_5 is written in the background; kill once it is complete (renamed).
  child.wait_for_file(model_dir / "checkpoint_5", START_TIMEOUT)
  child.kill()
  assert _steps(model_dir) == [5]
  rl.assert_same_state(_finish(tmp_path, model_dir, resumed_from=5), reference)
