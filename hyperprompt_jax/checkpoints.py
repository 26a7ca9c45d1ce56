# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Training checkpoints with Orbax: periodic, keep-N (+ best per task), atomic, resumable.

Layout, t5x's (so `formats.restore.restore_params` and t5x users read it):

  MODEL_DIR/checkpoint_<step>/
    state/      Orbax PyTree {'target': params,
                              'state': {'step', 'opt_state' (optax), 'rng'}}
    dataset/    tf.data iterator state of every host (`process_<i>/ds*`)
    metadata/   JSON: step, dataset position and seed, dataset_saved, time

Orbax writes a step into a temporary folder and renames it when every item is
complete, so a crash mid-save leaves the previous checkpoints intact and a
restart resumes from the latest complete one. Kept: the latest `keep`
checkpoints plus every step in `preserve_steps` (the best step of each task,
updated by the evaluator), like t5x's `keep` with paper-style best-per-task
selection.

`restore_initial_params(path, abstract_params)` reads INITIAL_CHECKPOINT_PATH
(a t5x checkpoint in either layout, one of ours, or a converted Hugging Face
folder) through `formats.restore.restore_params`, initialising the
task-conditioning parameters a backbone checkpoint lacks.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any, Callable, Iterable, MutableSet, Optional, Sequence, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorflow as tf
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from hyperprompt_jax import data as data_lib
from hyperprompt_jax import errors
from hyperprompt_jax import faults
from hyperprompt_jax import run_dir
from hyperprompt_jax.formats import restore as restore_lib
from hyperprompt_jax.formats import t5x as t5x_lib

STATE_ITEM = t5x_lib.STATE_ITEM  # t5x's item name: t5x (and formats/restore.py) read it
DATASET_ITEM, METADATA_ITEM = "dataset", "metadata"
_STEP_RE = re.compile(rf"{run_dir.CHECKPOINT_PREFIX}_(\d+)")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """t5x's `CheckpointConfig` essentials.

  Attributes:
    period: save every `period` steps (and at the end of training).
    keep: number of most recent checkpoints kept (None: all); the best step of
      every task is kept in addition.
    save_dataset: also save the tf.data iterator state (exact resume of the
      input order; otherwise a restart skips the consumed batches).
    async_save: write parameters in the background while training goes on.
  """
  period: int = 1000
  keep: Optional[int] = 3
  save_dataset: bool = True
  async_save: bool = True


# ---------------------------------------------------------------------------
# The dataset iterator as an Orbax item (saved synchronously on every host).
# ---------------------------------------------------------------------------


class DatasetCheckpointHandler(ocp.CheckpointHandler):
  """Saves / restores a `data.DatasetIterator` (one tf checkpoint per host)."""

  def save(self, directory: epath.Path, args: "DatasetSave"):
    faults.pause_point("checkpoint_write", path=os.fspath(directory))  # tests only
    prefix = os.path.join(os.fspath(directory), f"process_{jax.process_index()}", "ds")
    tf.io.gfile.makedirs(os.path.dirname(prefix))
    saved = args.iterator.save(prefix)
    with tf.io.gfile.GFile(prefix + ".position", "w") as f:
      f.write(f"{args.iterator.position} {int(saved)}\n")

  def restore(self, directory: epath.Path, args: "DatasetRestore"):
    prefix = os.path.join(os.fspath(directory), f"process_{jax.process_index()}", "ds")
    try:
      with tf.io.gfile.GFile(prefix + ".position") as f:
        position, saved = (int(x) for x in f.read().split())
    except (OSError, ValueError, tf.errors.OpError) as e:
      raise errors.ConfigError(f"the checkpoint at {directory} has no dataset state for process "
                               f"{jax.process_index()}: {e}") from None
    if saved:
      args.iterator.restore(prefix, position)
    else:
      args.iterator.restore_position(position)
    return args.iterator

  def metadata(self, directory: epath.Path):
    return None

  def finalize(self, directory: epath.Path):
    pass

  def close(self):
    pass


@ocp.args.register_with_handler(DatasetCheckpointHandler, for_save=True)
@dataclasses.dataclass
class DatasetSave(ocp.args.CheckpointArgs):
  iterator: data_lib.DatasetIterator


@ocp.args.register_with_handler(DatasetCheckpointHandler, for_restore=True)
@dataclasses.dataclass
class DatasetRestore(ocp.args.CheckpointArgs):
  iterator: data_lib.DatasetIterator


@dataclasses.dataclass
class _KeepLatestAndSteps(policies.PreservationPolicy):
  """Keeps the latest `n` checkpoints and any step in the (live) set `steps`."""
  n: Optional[int]
  steps: MutableSet[int]

  def should_preserve(self, checkpoints, *, context):
    count = len(checkpoints)
    return [self.n is None or i >= count - self.n or c.step in self.steps
            for i, c in enumerate(checkpoints)]


def state_tree(state: Any) -> dict:
  """The saved tree of a `trainer.TrainState` (t5x's `target` / `state` split)."""
  return {"target": state.params,
          "state": {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}}


class CheckpointManager:
  """Orbax `CheckpointManager` for `trainer.TrainState`s and the input iterator.

  Args:
    model_dir: MODEL_DIR.
    config: `CheckpointConfig`.
    preserve_steps: live set of steps never deleted (the best per task).
  """

  def __init__(self, model_dir: str, config: CheckpointConfig = CheckpointConfig(),
               preserve_steps: Optional[MutableSet[int]] = None):
    if config.period < 1:
      raise errors.ConfigError(f"checkpoint period must be >= 1, got {config.period}.")
    if config.keep is not None and config.keep < 1:
      raise errors.ConfigError(f"checkpoint keep must be >= 1 or None, got {config.keep}.")
    self.model_dir = run_dir.absolute_path(model_dir)
    self.config = config
    self.preserve_steps = preserve_steps if preserve_steps is not None else set()
    options = ocp.CheckpointManagerOptions(
        step_prefix=run_dir.CHECKPOINT_PREFIX,
        save_decision_policy=policies.FixedIntervalPolicy(config.period),
        preservation_policy=_KeepLatestAndSteps(config.keep, self.preserve_steps),
        enable_async_checkpointing=config.async_save,
        cleanup_tmp_directories=True,
        create=True)
    handlers = {STATE_ITEM: ocp.PyTreeCheckpointHandler(),
                DATASET_ITEM: DatasetCheckpointHandler(),
                METADATA_ITEM: ocp.JsonCheckpointHandler()}
    self._manager = ocp.CheckpointManager(self.model_dir, options=options,
                                          item_handlers=handlers)

  # -- queries ------------------------------------------------------------------
  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> Sequence[int]:
    return list(self._manager.all_steps())

  def step_dir(self, step: int) -> str:
    return os.path.join(self.model_dir, f"{run_dir.CHECKPOINT_PREFIX}_{step}")

  # -- save -------------------------------------------------------------------
  def save(self, step: int, state: Any, iterator: Optional[data_lib.DatasetIterator] = None,
           metadata: Optional[dict] = None, force: bool = False) -> bool:
    """Saves `state` (at `step`) if the period says so or `force`; returns whether it did."""
    step = int(step)
    if not force and not self._manager.should_save(step):
      return False
    if step in self._manager.all_steps():
      return False
    items = {STATE_ITEM: ocp.args.PyTreeSave(state_tree(state))}
    meta = {"step": step, "time": time.time()}
    if iterator is not None:
      meta.update(dataset_position=iterator.position)
      if self.config.save_dataset:
        items[DATASET_ITEM] = DatasetSave(iterator)
    meta.update(metadata or {})
    items[METADATA_ITEM] = ocp.args.JsonSave(meta)
    return bool(self._manager.save(step, args=ocp.args.Composite(**items), force=force))

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  # -- restore ------------------------------------------------------------------
  def read_metadata(self, step: int) -> dict:
    restored = self._manager.restore(
        step, args=ocp.args.Composite(**{METADATA_ITEM: ocp.args.JsonRestore()}))
    return dict(restored[METADATA_ITEM])

  def restore(self, step: int, abstract_state: Any,
              iterator: Optional[data_lib.DatasetIterator] = None) -> Tuple[Any, dict]:
    """`(state, metadata)` of `step`; `abstract_state` carries shapes and shardings.

    The iterator (if given) continues after the last batch the saved run used.
    """
    target = state_tree(abstract_state)
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    items = {STATE_ITEM: ocp.args.PyTreeRestore(target, restore_args=restore_args),
             METADATA_ITEM: ocp.args.JsonRestore()}
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    metadata = dict(restored[METADATA_ITEM])
    tree = restored[STATE_ITEM]
    state = abstract_state.replace(params=tree["target"], step=tree["state"]["step"],
                                   opt_state=tree["state"]["opt_state"],
                                   rng=tree["state"]["rng"])
    if iterator is not None and "dataset_position" in metadata:
      has_dataset = tf.io.gfile.isdir(os.path.join(self.step_dir(step), DATASET_ITEM))
      if has_dataset:
        self._manager.restore(step, args=ocp.args.Composite(
            **{DATASET_ITEM: DatasetRestore(iterator)}))
      else:
        iterator.restore_position(int(metadata["dataset_position"]))
    return state, metadata


# ---------------------------------------------------------------------------
# INITIAL_CHECKPOINT_PATH.
# ---------------------------------------------------------------------------


def checkpoint_step(path: str) -> int:
  """Training step of a `.../checkpoint_<step>[/state]` path (0 if it has none)."""
  matches = _STEP_RE.findall(run_dir.absolute_path(path))
  return int(matches[-1]) if matches else 0


def restore_initial_params(path: str, abstract_params: Any, *, rng: Optional[jax.Array] = None,
                           init_fn: Optional[Callable[[jax.Array], Any]] = None,
                           fallback_to_scratch: Optional[Iterable[str]] = None) -> Any:
  """Params (numpy) of INITIAL_CHECKPOINT_PATH, shaped like `abstract_params`.

  Parameters the checkpoint lacks that match `fallback_to_scratch` (default: the
  task-conditioning modules) are initialised with `init_fn(rng)`.
  """
  kwargs = dict(rng=rng, init_fn=init_fn)
  if fallback_to_scratch is not None:
    kwargs["fallback_to_scratch"] = tuple(fallback_to_scratch)
  params = restore_lib.restore_params(path, abstract_params, **kwargs)
  return jax.tree_util.tree_map(np.asarray, params)
