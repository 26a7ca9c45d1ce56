# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Fault injection for the reliability tests and for drills: pauses and non-finite values.

Nothing happens unless the environment variable `HYPERPROMPT_FAULTS` is set; it
is read when a hook runs (non-finite injection: when the train step is traced).
Entries are separated by `;`:

  pause@train_step:<s>        after the update that makes step s (before it is saved)
  pause@checkpoint_write:<s>  inside the write of checkpoint_<s>: its temporary
                              folder exists, the parameters are being written, the
                              folder is not yet renamed to its final name
  nan@loss:<s>                the loss of the update that makes step s is multiplied
                              by NaN inside the differentiated function (so every
                              gradient is NaN too)
  inf@grad:<s>:<regex>        the gradients of the parameters whose path
                              (`encoder/layers_0/mlp/wo/kernel`) matches regex are
                              set to +Inf in the update that makes step s

A pause writes the marker file `<point>_<s>` into `HYPERPROMPT_FAULTS_DIR` (when
set), so that a test knows the process got there, then sleeps for up to
`HYPERPROMPT_FAULTS_PAUSE_S` seconds (default 120) and ends early on SIGTERM.

  HYPERPROMPT_FAULTS="pause@checkpoint_write:10" HYPERPROMPT_FAULTS_DIR=/tmp/m \
    python -m hyperprompt_jax.train ...   # then kill -9 once /tmp/m/checkpoint_write_10 exists
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp

from hyperprompt_jax import errors
from hyperprompt_jax import reliability

ENV = "HYPERPROMPT_FAULTS"
DIR_ENV = "HYPERPROMPT_FAULTS_DIR"
PAUSE_ENV = "HYPERPROMPT_FAULTS_PAUSE_S"
PAUSE_POINTS = ("train_step", "checkpoint_write")
_STEP_DIR_RE = re.compile(r"checkpoint_(\d+)")


@dataclasses.dataclass(frozen=True)
class Fault:
  """One entry of HYPERPROMPT_FAULTS."""
  action: str  # 'pause', 'nan', 'inf'
  where: str  # a pause point, 'loss' or 'grad'
  step: int
  pattern: Optional[str] = None  # 'grad': parameter path regex


def parse(spec: str) -> Tuple[Fault, ...]:
  """The faults of a HYPERPROMPT_FAULTS value; a malformed entry is a ValueError."""
  faults = []
  for entry in (e.strip() for e in spec.split(";")):
    if not entry:
      continue
    match = re.fullmatch(r"(pause|nan|inf)@(\w+):(\d+)(?::(.+))?", entry)
    if not match:
      raise errors.ConfigError(
          f"{ENV}: cannot parse {entry!r} (expected e.g. 'pause@train_step:7', "
          "'nan@loss:7', 'inf@grad:7:<regex>').")
    action, where, step, pattern = match.groups()
    valid = {"pause": PAUSE_POINTS, "nan": ("loss",), "inf": ("grad",)}[action]
    if where not in valid or (where == "grad") != (pattern is not None):
      raise errors.ConfigError(f"{ENV}: {entry!r}: {action}@ takes one of {valid}"
                               + (" and a parameter regex" if action == "inf" else "") + ".")
    faults.append(Fault(action, where, int(step), pattern))
  return tuple(faults)


def active() -> Tuple[Fault, ...]:
  return parse(os.environ.get(ENV, ""))


def _find(action: str, where: str, step: Optional[int] = None) -> Tuple[Fault, ...]:
  return tuple(f for f in active() if f.action == action and f.where == where
               and (step is None or f.step == step))


# ---------------------------------------------------------------------------
# Pauses (host side).
# ---------------------------------------------------------------------------


def pause_point(point: str, step: Optional[int] = None, path: Optional[str] = None) -> bool:
  """Pauses here if HYPERPROMPT_FAULTS asks for it; returns whether it paused.

  `step` is given, or read from a `.../checkpoint_<step>...` `path`.
  """
  if not os.environ.get(ENV):
    return False
  if step is None and path is not None:
    matches = _STEP_DIR_RE.findall(os.fspath(path))
    step = int(matches[-1]) if matches else None
  if step is None or not _find("pause", point, step):
    return False
  marker_dir = os.environ.get(DIR_ENV)
  if marker_dir:
    os.makedirs(marker_dir, exist_ok=True)
    with open(os.path.join(marker_dir, f"{point}_{step}"), "w") as f:
      f.write(f"{os.getpid()}\n")
  deadline = time.monotonic() + float(os.environ.get(PAUSE_ENV, "120"))
  while time.monotonic() < deadline and not reliability.preemption_requested():
    time.sleep(0.02)
  return True


# ---------------------------------------------------------------------------
# Non-finite values (traced into the train step).
# ---------------------------------------------------------------------------


def poison_loss_fn(loss_fn, step: jax.Array):
  """`loss_fn` whose loss is multiplied by NaN in the updates `nan@loss` names.

  `step` is the state's step before the update (the update makes step + 1).
  Without such an entry `loss_fn` itself is returned (nothing is traced).
  """
  faults = _find("nan", "loss")
  if not faults:
    return loss_fn

  def poisoned(*args, **kwargs):
    loss, aux = loss_fn(*args, **kwargs)
    hit = jnp.any(jnp.asarray([step + 1 == f.step for f in faults]))
    return loss * jnp.where(hit, jnp.nan, 1.0).astype(loss.dtype), aux

  return poisoned


def poison_grads(grads: Any, step: jax.Array) -> Any:
  """`grads` with +Inf in the parameters and updates that `inf@grad` entries name."""
  faults = _find("inf", "grad")
  if not faults:
    return grads

  def leaf(path, g):
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    for f in faults:
      if re.search(f.pattern, name):
        g = jnp.where(step + 1 == f.step, jnp.full_like(g, jnp.inf), g)
    return g

  return jax.tree_util.tree_map_with_path(leaf, grads)
