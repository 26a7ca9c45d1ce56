"""Non-finite loss / gradients: stop naming the step and the parameter, keep the checkpoints;
skip mode drops exactly the bad update. Faults are injected with HYPERPROMPT_FAULTS."""
import os

import jax.numpy as jnp
import numpy as np
import pytest

import reliability_testlib as rl
from hyperprompt_jax import faults
from hyperprompt_jax import reliability
from hyperprompt_jax import train as train_lib

rl.enable_compilation_cache()


def _run(capsys, model_dir, *bindings, steps):
  capsys.readouterr()
  rc = train_lib.main(rl.gin_args(model_dir, "LOG_PERIOD=5", *bindings, steps=steps))
  captured = capsys.readouterr()
  return rc, captured.out, [l for l in rl.error_lines(captured.err)
                            if not l.startswith("WARNING:")]


def _checkpoints(model_dir):
  return sorted(int(n.split("_")[1]) for n in os.listdir(model_dir)
                if n.startswith("checkpoint_"))


def _params(state):
  return {k: v for k, v in state.items() if k.startswith("['target']")}


def test_nan_loss_stops_at_its_step_and_keeps_the_last_checkpoint(capsys, monkeypatch,
                                                                  tmp_path):
  model_dir = tmp_path / "run"
  assert _run(capsys, model_dir, steps=5)[0] == 0
  kept = rl.snapshot(model_dir / "checkpoint_5")
  monkeypatch.setenv(faults.ENV, "nan@loss:7")
  rc, out, lines = _run(capsys, model_dir, steps=10)
  assert rc == 1
  assert "Resumed from" in out and "checkpoint_5" in out
  assert len(lines) == 1, lines
  num_params = len(_params(rl.read_state(model_dir, 5)))
  assert lines[0].startswith("error: non-finite training at step 7: loss nan; gradients "
                             f"non-finite in {num_params} of {num_params} parameters (first: "
                             "decoder/decoder_norm/scale)"), lines[0]
  assert f"MODEL_DIR keeps {model_dir}/checkpoint_5 (the latest complete checkpoint)" in lines[0]
  assert "SKIP_NONFINITE_STEPS" in lines[0]
  # Checked before the step-10 save (the loss was logged at 10 only after the check): the
  # bad state was never written and checkpoint_5 is byte for byte what it was.
  assert _checkpoints(model_dir) == [5]
  assert rl.snapshot(model_dir / "checkpoint_5") == kept


def test_inf_gradient_names_the_offending_parameter(capsys, monkeypatch, tmp_path):
  target = "encoder/layers_1/mlp/wo/kernel"
  monkeypatch.setenv(faults.ENV, f"inf@grad:2:{target}")
  rc, _, lines = _run(capsys, tmp_path / "run", steps=3)
  assert rc == 1 and len(lines) == 1, lines
  # Found at the end of step 3 (the first check), reported for step 2, the bad update.
  assert lines[0].startswith("error: non-finite training at step 2: loss "), lines[0]
  assert "(finite); gradients non-finite in 1 of " in lines[0]
  assert f"parameters (first: {target})" in lines[0]
  assert "MODEL_DIR holds no checkpoint yet" in lines[0]
  assert not _checkpoints(tmp_path / "run")


def test_skip_mode_drops_only_the_bad_update(capsys, monkeypatch, tmp_path):
  model_dir = tmp_path / "run"
  monkeypatch.setenv(faults.ENV, "nan@loss:3")
  rc, out, lines = _run(capsys, model_dir, "SKIP_NONFINITE_STEPS=True", "CHECKPOINT_PERIOD=1",
                        steps=4)
  assert rc == 0, lines
  assert "warning: skipped the update of step 3 (non-finite training at step 3: loss nan" in out
  assert _checkpoints(model_dir) == [1, 2, 3, 4]
  states = {s: rl.read_state(model_dir, s) for s in (2, 3, 4)}
  for key in states[2]:
    if key == "['state']['step']":
      continue
    np.testing.assert_array_equal(states[2][key], states[3][key], err_msg=key)  # dropped
  assert all(np.isfinite(v).all() for v in _params(states[4]).values())
  changed = [k for k in _params(states[3])
             if not np.array_equal(states[3][k], states[4][k])]
  assert changed  # step 4 trained again
  assert int(states[3]["['state']['step']"]) == 3


def _report(loss=False, grads=(), n=3, value=2.5):
  return {reliability.LOSS_KEY: np.array(loss),
          reliability.GRADS_KEY: np.array([i in grads for i in range(n)]),
          reliability.LOSS_VALUE_KEY: np.float32(np.nan if loss else value)}


def test_guard_reports_the_first_bad_step_and_limits_consecutive_skips():
  paths = ["a/kernel", "b/kernel", "c/scale"]
  stopped = []
  guard = reliability.NonFiniteGuard(paths, before_stop=lambda: stopped.append(True),
                                  kept=lambda: "; kept checkpoint_4")
  for step, report in ((5, _report()), (6, _report(grads=(1, 2))),
                       (7, _report(loss=True, grads=(0, 1, 2)))):
    guard.add(step, report)
  with pytest.raises(reliability.NonFiniteError) as e:
    guard.check()
  assert str(e.value).startswith(
      "non-finite training at step 6: loss 2.5 (finite); gradients non-finite in 2 of 3 "
      "parameters (first: b/kernel). Training stopped before saving this state; kept "
      "checkpoint_4.")
  assert stopped == [True]

  skipper = reliability.NonFiniteGuard(paths, skip=True, max_consecutive_skips=2)
  for step in (1, 2):
    skipper.add(step, _report(loss=step == 1))
  skipper.check()
  assert skipper.skipped_steps == [1]
  for step in (3, 4):
    skipper.add(step, _report(loss=True))
  with pytest.raises(reliability.NonFiniteError, match=r"2 consecutive updates were non-finite "
                     r"\(steps 3\.\.4\)"):
    skipper.check()


def test_guard_checks_the_parameters_before_a_save():
  guard = reliability.NonFiniteGuard(["a/kernel", "b/scale"], skip=True)
  guard.check(3, {"a": {"kernel": jnp.ones((2, 2))}, "b": {"scale": jnp.ones((2,))}})
  with pytest.raises(reliability.NonFiniteError, match=r"^non-finite parameters at step 3: 1 of 2 "
                     r"\(first: b/scale\) although the losses and gradients were finite"):
    guard.check(3, {"a": {"kernel": jnp.ones((2, 2))},
                    "b": {"scale": jnp.array([1.0, jnp.inf])}})


def test_fault_specs_are_parsed_strictly():
  assert faults.parse("pause@checkpoint_write:10; inf@grad:3:enc.*/kernel") == (
      faults.Fault("pause", "checkpoint_write", 10),
      faults.Fault("inf", "grad", 3, "enc.*/kernel"))
  for bad in ("pause@nowhere:3", "nan@loss", "inf@grad:3", "kill@train_step:3"):
    with pytest.raises(ValueError, match=faults.ENV):
      faults.parse(bad)
