# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Non-finite losses, gradients and parameters: detected in the step, reported by name.

Inside the jitted train step `guard_update(loss, grads, old_state, new_state,
skip=...)` computes, for every update, whether the loss is finite and which
parameters have a non-finite gradient or a non-finite value after the update
(one bool per parameter, in `jax.tree_util` order, i.e. sorted paths), and, in
skip mode, keeps the old parameters and optimizer state when anything is
non-finite (the step counter still advances).

On the host `NonFiniteGuard` collects these reports without waiting for the
device and checks them at the points where the loop synchronises anyway (log
steps) and always before a checkpoint is written, so a bad state is never saved.
The first bad update stops training with `NonFiniteError`, naming the step, the
loss and the first offending parameter:

  error: non-finite training at step 7: loss nan; gradients non-finite in 52 of 52
  parameters (first: decoder/decoder_norm/scale); ... kept: checkpoint_5 ...
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from hyperprompt_jax import reliability

LOSS_KEY = "nonfinite/loss"
GRADS_KEY = "nonfinite/grads"
PARAMS_KEY = "nonfinite/params"
LOSS_VALUE_KEY = "nonfinite/loss_value"  # the differentiated loss
REPORT_KEYS = (LOSS_KEY, GRADS_KEY, PARAMS_KEY, LOSS_VALUE_KEY)


class NonFiniteError(reliability.RunStopped):
  """Training met a NaN / Inf and stopped before saving it."""
  exit_code = 1


def param_paths(tree: Any) -> List[str]:
  """`'a/b/kernel'` path of every leaf of `tree`, in `jax.tree_util` leaf order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
          for path, _ in flat]


def _nonfinite_leaves(tree: Any) -> jax.Array:
  """bool `[num_leaves]`: True where a leaf holds a NaN or Inf."""
  leaves = jax.tree_util.tree_leaves(tree)
  if not leaves:
    return jnp.zeros((0,), bool)
  return jnp.stack([jnp.logical_not(jnp.all(jnp.isfinite(x))) for x in leaves])


def guard_update(loss: jax.Array, grads: Any, old_state: Any, new_state: Any,
                 skip: bool = False) -> Tuple[Any, Dict[str, jax.Array]]:
  """`(state, report)` of one update (traced inside the train step).

  Args:
    loss: the differentiated scalar loss.
    grads: its gradients (the params tree).
    old_state / new_state: `TrainState` before / after the update.
    skip: keep `old_state` (with `new_state.step`) when anything is non-finite.

  Returns:
    the state to continue with, and `{LOSS_KEY: bool [], GRADS_KEY: bool [P],
    PARAMS_KEY: bool [P], LOSS_VALUE_KEY: float32 []}` (True = non-finite).
  """
  report = {LOSS_KEY: jnp.logical_not(jnp.isfinite(loss)),
            LOSS_VALUE_KEY: jnp.asarray(loss, jnp.float32),
            GRADS_KEY: _nonfinite_leaves(grads),
            PARAMS_KEY: _nonfinite_leaves(new_state.params)}
  if not skip:
    return new_state, report
  bad = report[LOSS_KEY] | jnp.any(report[GRADS_KEY]) | jnp.any(report[PARAMS_KEY])
  kept = jax.tree_util.tree_map(lambda old, new: jnp.where(bad, old, new),
                                (old_state.params, old_state.opt_state),
                                (new_state.params, new_state.opt_state))
  return new_state.replace(params=kept[0], opt_state=kept[1]), report


def is_bad(report: Mapping[str, Any]) -> bool:
  return bool(np.any(report[LOSS_KEY]) or np.any(report[GRADS_KEY]) or
              np.any(report[PARAMS_KEY]))


def describe(step: int, report: Mapping[str, Any], paths: Sequence[str],
             loss: Optional[float] = None) -> str:
  """One line naming what is non-finite at `step` and the first offending parameter."""
  parts = []
  if np.any(report[LOSS_KEY]):
    parts.append(f"loss {loss if loss is not None else 'nan'}")
  elif loss is not None:
    parts.append(f"loss {loss:.6g} (finite)")
  for key, what in ((GRADS_KEY, "gradients"), (PARAMS_KEY, "parameters after the update")):
    flags = np.asarray(report[key])
    if flags.any():
      bad = [paths[i] if i < len(paths) else f"#{i}" for i in np.flatnonzero(flags)]
      parts.append(f"{what} non-finite in {len(bad)} of {flags.size} parameters "
                   f"(first: {bad[0]})")
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
    self._pending: List[Tuple[int, Dict[str, Any], Any]] = []
    self.skipped_steps: List[int] = []
    self._consecutive = 0

  def add(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Records the report of the update that made `step` (no device sync)."""
    if LOSS_KEY in metrics:
      self._pending.append((int(step), {k: metrics[k] for k in REPORT_KEYS if k in metrics},
                            metrics.get(LOSS_VALUE_KEY, metrics.get("loss"))))

  def check(self) -> None:
    """Fetches the pending reports; raises NonFiniteError at the first bad step."""
    if not self._pending:
      return
    pending, self._pending = self._pending, []
    fetched = jax.device_get([(r, loss) for _, r, loss in pending])
    for (step, _, _), (report, loss) in zip(pending, fetched):
      if not is_bad(report):
        self._consecutive = 0
        continue
      loss_value = float(loss) if loss is not None else None
      line = describe(step, report, self.paths, loss_value)
      if self.skip:
        self.skipped_steps.append(step)
        self._consecutive += 1
        print(f"warning: skipped the update of step {step} ({line}); "
              f"{len(self.skipped_steps)} skipped so far.", flush=True)
        logging.warning("skipped step %d: %s", step, line)
        if self._consecutive < self.max_consecutive_skips:
          continue
        line = (f"{self._consecutive} consecutive updates were non-finite (steps "
                f"{step - self._consecutive + 1}..{step}); last: {line}")
      self._stop(line)

  def _stop(self, line: str) -> None:
    if self._before_stop is not None:
      self._before_stop()
    kept = self._kept() if self._kept is not None else ""
    hint = ("" if self.skip else " Fix the cause (learning rate, data, dtype) and rerun to "
            "resume, or set SKIP_NONFINITE_STEPS = True to drop such updates.")
    raise NonFiniteError(f"{line}. Training stopped before saving this state{kept}.{hint}")
