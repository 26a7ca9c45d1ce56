# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Non-finite losses, gradients and parameters: detected, reported by name, never saved.

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
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hyperprompt_jax import reliability

LOSS_KEY = "nonfinite/loss"  # bool []: the loss is NaN / Inf
GRADS_KEY = "nonfinite/grads"  # bool [P]: per parameter, its gradient is NaN / Inf
LOSS_VALUE_KEY = "nonfinite/loss_value"  # float32 []: the differentiated loss
REPORT_KEYS = (LOSS_KEY, GRADS_KEY, LOSS_VALUE_KEY)


class NonFiniteError(reliability.RunStopped):
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
