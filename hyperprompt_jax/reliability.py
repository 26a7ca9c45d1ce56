# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""What a training run does when something goes wrong, and how to configure it.

Every fault below ends in one line on stderr (no traceback) and leaves what is
already in MODEL_DIR as it was (a bug, by contrast, keeps its traceback):

* configuration mistakes (unknown task or gin name, feature lengths too short
  for the task sentinel, more tasks than NUM_TASKS, a MODEL_DIR holding another
  model or task table, a checkpoint that does not fit, an empty split) are
  refused before training starts: `error: ...`, exit status 2
  (`errors.ConfigError`; checks in `preflight.py` and `data.py`);
* a NaN or Inf in the loss, the gradients or the updated parameters stops the
  run before the bad state is saved: `error: non-finite ... at step N ...
  (first: <parameter>)`, exit status 1 (`NonFiniteError`); with
  `skip_nonfinite_steps` such updates are dropped instead;
* SIGTERM (preemption) saves a checkpoint at the next step boundary and exits
  with status 143 (`Preempted`); SIGKILL or a crash at any point,
  even in the middle of a checkpoint write, loses at most the steps since the
  last complete checkpoint: Orbax writes into a temporary folder and renames it
  when complete, a restart ignores (and removes) temporary folders and resumes
  bit-identically (parameters, optimizer state, RNG and input position).

`ReliabilityConfig` holds the switches (gin: `reliability.ReliabilityConfig`,
macros `ALLOW_CONFIG_CHANGE` and `SKIP_NONFINITE_STEPS` in runs/finetune.gin).

This module holds the switches and the two run-time guards (`RunGuards` bundles
them for the launcher):

**Non-finite values** in losses, gradients and parameters are detected, reported
by name and never saved.

Inside the jitted train step `guard_update(loss, grad_squares(grads), old_state, new_state,
skip=...)` flags, every update, a non-finite loss and each parameter whose
gradient holds a NaN / Inf (one flag per parameter, in `jax.tree_util` order,
i.e. sorted paths), from the per-parameter sums of squares (`grad_squares`)
that the step also sums into the gradient norm it reports, so the check adds no
pass over the parameters or gradients. In skip mode a bad update keeps the
old parameters and optimizer state (the step counter still advances).

On the host `NonFiniteGuard` collects these reports without waiting for the
device and checks them where the loop synchronises anyway (log steps) and
before every checkpoint write; before a write it also checks the parameters
themselves (an update can turn finite gradients into non-finite parameters,
e.g. an infinite learning rate). So a bad state is never saved. The first bad
update stops training with `NonFiniteError`, naming the step, the loss and the
first offending parameter:

  error: non-finite training at step 7: loss nan; gradients non-finite in 67 of 67
  parameters (first: decoder/decoder_norm/scale). Training stopped before saving
  this state; MODEL_DIR keeps .../checkpoint_5 (the latest complete checkpoint). ...

**Preemption.** Schedulers (Borg, Kubernetes, SLURM, spot VMs) send SIGTERM some
seconds before they kill a job. `PreemptionWatcher` turns it into a request that the loop
honours at the next step boundary: save the current state, wait until it is
written, raise `Preempted` (exit status 143 = 128 + SIGTERM). Rerunning the same
command resumes from that checkpoint. A second SIGTERM while saving kills the
process as usual.

With several processes (`jax.distributed`), jax's preemption sync manager
catches SIGTERM on any host and `multihost_utils.reached_preemption_sync_point`
makes every host stop at the same step; no Python handler is installed then.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils

from hyperprompt_jax import errors


class RunStopped(Exception):
  """Training stopped early on purpose; `str(e)` is the one line the command prints.

  Attributes:
    exit_code: the command's exit status.
    prefix: printed before the message.
  """
  exit_code = 1
  prefix = "error: "

  def __init__(self, message: str):
    super().__init__(message)
    self.message = message


@dataclasses.dataclass(frozen=True)
class ReliabilityConfig:
  """Fault handling switches of `train` (all safe by default).

  Attributes:
    allow_config_change: resume in a MODEL_DIR whose saved model config
      (`model_config.json`) or task table (`task_table.json`) differs from this
      run's; the old files are kept as `*.replaced-<time>.json` (ALLOW_CONFIG_CHANGE).
    skip_nonfinite_steps: drop an update whose loss, gradients or new parameters
      are not finite (the step counter, input position and dropout key still
      advance) instead of stopping (SKIP_NONFINITE_STEPS).
    max_consecutive_skips: stop anyway after this many skipped steps in a row.
    truncation_check_examples: examples per task and split read before training
      to count inputs / targets longer than TASK_FEATURE_LENGTHS (0: no count).
    handle_sigterm: save a checkpoint and exit on SIGTERM (preemption).
  """
  allow_config_change: bool = False
  skip_nonfinite_steps: bool = False
  max_consecutive_skips: int = 10
  truncation_check_examples: int = 1000
  handle_sigterm: bool = True

  def __post_init__(self):
    if self.max_consecutive_skips < 1:
      raise errors.ConfigError(
          f"max_consecutive_skips must be >= 1, got {self.max_consecutive_skips}.")
    if self.truncation_check_examples < 0:
      raise errors.ConfigError("truncation_check_examples must be >= 0, got "
                               f"{self.truncation_check_examples}.")


# ---------------------------------------------------------------------------
# Non-finite values: flagged inside the train step, checked on the host.
# ---------------------------------------------------------------------------

LOSS_KEY = "nonfinite/loss"  # bool []: the loss is NaN / Inf
GRADS_KEY = "nonfinite/grads"  # bool [P]: per parameter, its gradient is NaN / Inf
LOSS_VALUE_KEY = "nonfinite/loss_value"  # float32 []: the differentiated loss
REPORT_KEYS = (LOSS_KEY, GRADS_KEY, LOSS_VALUE_KEY)


class NonFiniteError(RunStopped):
  """Training met a NaN / Inf and stopped before saving it."""
  exit_code = 1


def param_paths(tree: Any) -> List[str]:
  """`'a/b/kernel'` path of every leaf of `tree`, in `jax.tree_util` leaf order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
          for path, _ in flat]


def nonfinite_leaves(tree: Any) -> jax.Array:
  """bool `[num_leaves]`: True where a leaf holds a NaN or Inf."""
  leaves = jax.tree_util.tree_leaves(tree)
  if not leaves:
    return jnp.zeros((0,), bool)
  return jnp.stack([jnp.logical_not(jnp.all(jnp.isfinite(x))) for x in leaves])


def grad_squares(grads: Any) -> jax.Array:
  """float32 `[P]`: each parameter's gradient sum of squares (`jax.tree_util` order).

  The terms of the global gradient norm (`sqrt(sum(...))`); a term is NaN / Inf
  as soon as one entry of its gradient is (or overflows when squared).
  """
  return jnp.stack([optax.tree.norm(g, squared=True) for g in jax.tree_util.tree_leaves(grads)])


def guard_update(loss: jax.Array, squares: jax.Array, old_state: Any, new_state: Any,
                 skip: bool = False) -> Tuple[Any, Dict[str, jax.Array]]:
  """`(state, report)` of one update (traced inside the train step).

  Args:
    loss: the differentiated scalar loss.
    squares: `grad_squares(grads)` of its gradients, which the step also
      turns into the gradient norm it reports (one computation for both).
    old_state / new_state: `TrainState` before / after the update.
    skip: keep `old_state`'s parameters and optimizer state (with
      `new_state.step`) when the loss or the gradients are not finite.

  Returns:
    the state to continue with, and the report (`REPORT_KEYS`; True = not finite).
  """
  report = {LOSS_KEY: jnp.logical_not(jnp.isfinite(loss)),
            GRADS_KEY: jnp.logical_not(jnp.isfinite(squares)),
            LOSS_VALUE_KEY: jnp.asarray(loss, jnp.float32)}
  if not skip:
    return new_state, report
  bad = report[LOSS_KEY] | jnp.any(report[GRADS_KEY])
  kept = jax.tree_util.tree_map(lambda old, new: jnp.where(bad, old, new),
                                (old_state.params, old_state.opt_state),
                                (new_state.params, new_state.opt_state))
  return new_state.replace(params=kept[0], opt_state=kept[1]), report


def is_bad(report: Mapping[str, Any]) -> bool:
  return bool(np.any(report[LOSS_KEY]) or np.any(report[GRADS_KEY]))


def _named(flags: Any, paths: Sequence[str]) -> Tuple[List[str], int]:
  flags = np.asarray(flags)
  return [paths[i] if i < len(paths) else f"#{i}" for i in np.flatnonzero(flags)], flags.size


def describe(step: int, report: Mapping[str, Any], paths: Sequence[str],
             loss: Optional[float] = None) -> str:
  """One line naming what is non-finite at `step` and the first offending parameter."""
  parts = []
  if np.any(report[LOSS_KEY]):
    parts.append(f"loss {loss if loss is not None else 'nan'}")
  elif loss is not None:
    parts.append(f"loss {loss:.6g} (finite)")
  bad, total = _named(report[GRADS_KEY], paths)
  if bad:
    parts.append(f"gradients non-finite in {len(bad)} of {total} parameters (first: {bad[0]})")
  return f"non-finite training at step {step}: " + "; ".join(parts)


class NonFiniteGuard:
  """Host side: checks the per-step reports lazily, raises or logs skipped steps.

  Args:
    paths: parameter paths in leaf order (`param_paths(params)`).
    skip: the train step keeps the old state on a bad update (skip mode).
    max_consecutive_skips: in skip mode, stop after this many bad steps in a row.
    before_stop: called before raising (e.g. wait for in-flight checkpoint writes).
    kept: returns a sentence on what MODEL_DIR still holds (appended to the error).
  """

  def __init__(self, paths: Sequence[str], *, skip: bool = False,
               max_consecutive_skips: int = 10,
               before_stop: Optional[Callable[[], None]] = None,
               kept: Optional[Callable[[], str]] = None):
    self.paths = list(paths)
    self.skip = skip
    self.max_consecutive_skips = max_consecutive_skips
    self._before_stop = before_stop
    self._kept = kept
    self._pending: List[Tuple[int, Dict[str, Any]]] = []
    self.skipped_steps: List[int] = []
    self._consecutive = 0
    self._params_flags = jax.jit(nonfinite_leaves)

  def add(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Records the report of the update that made `step` (no device sync)."""
    if LOSS_KEY in metrics:
      self._pending.append((int(step), {k: metrics[k] for k in REPORT_KEYS if k in metrics}))

  def check(self, step: Optional[int] = None, params: Any = None) -> None:
    """Fetches the pending reports (and checks `params`, if given, as of `step`).

    Raises:
      NonFiniteError: at the first bad update (skip mode: after too many in a row),
        or if `params` hold a NaN / Inf.
    """
    if self._pending:
      pending, self._pending = self._pending, []
      for (bad_step, _), report in zip(pending, jax.device_get([r for _, r in pending])):
        self._check_report(bad_step, report)
    if params is not None:
      bad, total = _named(jax.device_get(self._params_flags(params)), self.paths)
      if bad:
        self._stop(f"non-finite parameters at step {step}: {len(bad)} of {total} (first: "
                   f"{bad[0]}) although the losses and gradients were finite: an optimizer "
                   "update produced them (learning rate? optimizer settings?)", skippable=False)

  def _check_report(self, step: int, report: Mapping[str, Any]) -> None:
    if not is_bad(report):
      self._consecutive = 0
      return
    line = describe(step, report, self.paths, float(report[LOSS_VALUE_KEY])
                    if LOSS_VALUE_KEY in report else None)
    if self.skip:
      self.skipped_steps.append(step)
      self._consecutive += 1
      print(f"warning: skipped the update of step {step} ({line}); "
            f"{len(self.skipped_steps)} skipped so far.", flush=True)
      logging.warning("skipped step %d: %s", step, line)
      if self._consecutive < self.max_consecutive_skips:
        return
      line = (f"{self._consecutive} consecutive updates were non-finite (steps "
              f"{step - self._consecutive + 1}..{step}); last: {line}")
    self._stop(line)

  def _stop(self, line: str, skippable: bool = True) -> None:
    if self._before_stop is not None:
      self._before_stop()
    kept = self._kept() if self._kept is not None else ""
    hint = ("" if self.skip or not skippable else " Fix the cause (learning rate, data, dtype) "
            "and rerun to resume, or set SKIP_NONFINITE_STEPS = True to drop such updates.")
    raise NonFiniteError(f"{line}. Training stopped before saving this state{kept}.{hint}")


# ---------------------------------------------------------------------------
# Preemption (SIGTERM).
# ---------------------------------------------------------------------------

_REQUESTED = threading.Event()


def preemption_requested() -> bool:
  """Whether this process received SIGTERM while a watcher was active."""
  return _REQUESTED.is_set()


class Preempted(RunStopped):
  """Training saved a checkpoint and stopped because of SIGTERM."""
  exit_code = 128 + signal.SIGTERM
  prefix = ""

  def __init__(self, step: int, checkpoint_dir: Optional[str]):
    where = f"saved {checkpoint_dir}" if checkpoint_dir else "no checkpoint saved"
    super().__init__(f"preempted (SIGTERM) at step {step}: {where}; rerun the same command "
                     "to resume.")
    self.step = step
    self.checkpoint_dir = checkpoint_dir


class PreemptionWatcher:
  """Turns SIGTERM into `should_stop(step) -> True` at a step boundary.

  `start()` installs the handler, `stop()` restores the previous one (also as a
  context manager). Outside the main thread no handler can be installed; the
  watcher then only reports jax's multi-host sync point.
  """

  def __init__(self, enabled: bool = True):
    self.enabled = enabled
    self._previous = None
    self._installed = False

  def _handler(self, signum, frame):
    del frame
    logging.warning("received signal %d: saving a checkpoint at the next step boundary.",
                    signum)
    _REQUESTED.set()
    # A second signal gets the previous behaviour (by default: terminate now).
    signal.signal(signum, self._previous if self._previous is not None else signal.SIG_DFL)

  def __enter__(self) -> "PreemptionWatcher":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

  def start(self) -> "PreemptionWatcher":
    _REQUESTED.clear()
    if not self.enabled or jax.process_count() > 1:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handler)
      self._installed = True
    except ValueError:  # not the main thread
      logging.info("SIGTERM handler not installed (not in the main thread).")
    return self

  def stop(self) -> None:
    if self._installed:
      if signal.getsignal(signal.SIGTERM) == self._handler:
        signal.signal(signal.SIGTERM, self._previous if self._previous is not None
                      else signal.SIG_DFL)
      self._installed = False

  def should_stop(self, step: int) -> bool:
    """True (on every host at the same step) once a preemption was signalled."""
    if not self.enabled:
      return False
    if jax.process_count() > 1:
      try:
        return bool(multihost_utils.reached_preemption_sync_point(int(step)))
      except RuntimeError:  # preemption service not enabled
        return False
    return preemption_requested()


# ---------------------------------------------------------------------------
# Both guards of one training run.
# ---------------------------------------------------------------------------


class RunGuards:
  """The non-finite guard and the preemption watcher of one run, configured by `cfg`.

  Args:
    cfg: the run's `ReliabilityConfig`.
    params: the (abstract) parameters, for the names in the messages.
    before_stop: called before a stop (e.g. let checkpoint writes finish).
    kept: returns a sentence on what MODEL_DIR still holds (appended to the error).
  """

  def __init__(self, cfg: ReliabilityConfig, params: Any, *,
               before_stop: Optional[Callable[[], None]] = None,
               kept: Optional[Callable[[], str]] = None):
    self._before_stop = before_stop
    self.nonfinite = NonFiniteGuard(
        param_paths(params), skip=cfg.skip_nonfinite_steps,
        max_consecutive_skips=cfg.max_consecutive_skips, before_stop=self._stopping, kept=kept)
    self.preemption = PreemptionWatcher(enabled=cfg.handle_sigterm)

  def _stopping(self) -> None:
    if self._before_stop is not None:
      self._before_stop()
    self.preemption.stop()  # the previous SIGTERM handler again

  def start(self) -> None:
    self.preemption.start()

  def stop(self) -> None:
    self.preemption.stop()

  def after_step(self, step: int, metrics: Mapping[str, Any], last: bool) -> bool:
    """Records the step's non-finite report; True when SIGTERM asks to stop here."""
    self.nonfinite.add(step, metrics)
    return not last and self.preemption.should_stop(step)

  def check(self, step: Optional[int] = None, params: Any = None) -> None:
    """Raises `NonFiniteError` at the first bad update (or bad `params`, if given)."""
    self.nonfinite.check(step, params)
