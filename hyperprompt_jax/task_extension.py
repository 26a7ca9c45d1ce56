# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Adding tasks to a trained model: restore a T-task checkpoint into a T'-task model.

Every task-indexed parameter carries the logical axis name `tasks` (HyperPrompt's
`hyperprompt/task_embedding [T, t']` and `hyperprompt/global_prompts [T, l, d]`,
Sep's per-task hypernetworks `[T, M', ...]`, the baselines' per-task prompts,
prefixes and adapters). To add tasks, raise `T5Config.num_tasks` (NUM_TASKS) from
T to T' and restore with `restore_extending_tasks` (the launcher's
`train(extend_tasks=True)`, gin/runs/add_tasks.gin):

* a parameter whose checkpoint shape differs from the model's only along its
  `tasks` axis, with fewer entries in the checkpoint, gets the checkpoint's T
  entries at indices 0..T-1, bit for bit, and fresh entries T..T'-1 from the
  model's initialiser (`init_fn(rng)`: exactly what a fresh T'-task model
  would start with);
* every other parameter is restored as usual (`checkpoints.restore_initial_params`:
  same shapes required, task-conditioning parameters the checkpoint lacks
  initialised fresh); a checkpoint with MORE tasks than the model is refused
  (tasks are never dropped silently);
* when the checkpoint's MODEL_DIR holds a task table (`task_table.json`) and the
  caller passes the new mixture's table, the new table must be the saved one
  followed by the new tasks (`run_dir.check_task_table(...,
  allow_extension=True)`), so that task k keeps its embedding.

Why extend on restore rather than reserve unused task slots when training the
first model: a model trained with T tasks can be extended after the fact
without knowing in advance how many tasks will be added, the first model's
parameter count and task table describe what it was trained on, and a reserved
slot would be an untrained row that the first training never touches anyway
(a fresh row is the same thing, drawn when needed).

To then learn only the new task, train with `trainable='task_embeddings'`
(optimizers.py) on a mixture that samples only the new task (e.g.
`hyperprompt_offline_v1_new_task`): the task embedding is gathered per example,
so the rows of tasks absent from every batch get an exactly-zero gradient and,
with Adafactor (no weight decay) or any optimizer whose update of a zero
gradient with zero history is zero, stay bit-identical; every other parameter
is frozen by the optimizer. The same holds for any task-indexed parameter, e.g.
`trainable=['hyperprompt/task_embedding', 'hyperprompt/global_prompts']` (the new
task's embedding and its own global prompt); bench/adaptation.md measures both.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import flax
import jax
import numpy as np
from flax.linen import partitioning as nn_partitioning

from hyperprompt_jax import checkpoints as checkpoints_lib
from hyperprompt_jax import errors
from hyperprompt_jax import run_dir
from hyperprompt_jax.formats import restore as restore_lib
from hyperprompt_jax.formats import tree as tree_lib

TASKS_AXIS = "tasks"
Params = Mapping[str, Any]


def task_axes(params_axes: Params) -> Dict[str, int]:
  """`{'hyperprompt/task_embedding': 0, ...}`: position of the `tasks` axis of every
  task-indexed parameter, from the model's `params_axes` collection."""
  logical = nn_partitioning.get_axis_names(params_axes)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(logical), sep="/")
  return {k: tuple(spec).index(TASKS_AXIS) for k, spec in flat.items()
          if spec is not None and TASKS_AXIS in tuple(spec)}


def extension_plan(ckpt_shapes: Mapping[str, Tuple[int, ...]],
                   model_shapes: Mapping[str, Tuple[int, ...]],
                   axes: Mapping[str, int]) -> Dict[str, Tuple[int, int]]:
  """`{path: (tasks axis, checkpoint's number of tasks)}` of the parameters to extend.

  Raises ValueError if a task-indexed parameter has more tasks in the checkpoint
  than in the model. Other shape differences are left to the restore, which names them.
  """
  plan, shrinking = {}, []
  for key, axis in sorted(axes.items()):
    if key not in ckpt_shapes or key not in model_shapes:
      continue
    old, new = tuple(ckpt_shapes[key]), tuple(model_shapes[key])
    if old == new or len(old) != len(new):
      continue
    rest_equal = old[:axis] + old[axis + 1:] == new[:axis] + new[axis + 1:]
    if rest_equal and old[axis] < new[axis]:
      plan[key] = (axis, old[axis])
    elif rest_equal:
      shrinking.append(f"{key} {old} vs {new}")
  if shrinking:
    raise errors.ConfigError(
        "the checkpoint has more tasks than the model (checkpoint vs model): "
        + "; ".join(shrinking) + ". Set NUM_TASKS (T5Config.num_tasks) to at least the "
        "checkpoint's number of tasks; tasks are never dropped.")
  counts = {n for _, n in plan.values()}
  if len(counts) > 1:
    raise errors.ConfigError(f"task-indexed parameters of the checkpoint disagree on the number of "
                             f"tasks: { {k: n for k, (_, n) in plan.items()} }")
  return plan


def extend(restored: Params, fresh: Params, plan: Mapping[str, Tuple[int, int]]) -> Dict[str, Any]:
  """`restored` with each planned parameter's entries `n..T'-1` along its tasks axis
  taken from `fresh` (numpy; the restored entries are kept bit for bit)."""
  flat = tree_lib.flatten(restored)
  flat_fresh = tree_lib.flatten(fresh)
  for key, (axis, n) in plan.items():
    old = np.asarray(flat[key])
    new = np.asarray(flat_fresh[key]).astype(old.dtype)
    tail = np.take(new, np.arange(n, new.shape[axis]), axis=axis)
    flat[key] = np.concatenate([old, tail], axis=axis)
  return tree_lib.unflatten(flat)


def check_extended_task_table(path: str, table: Sequence[Optional[str]]) -> Optional[tuple]:
  """Checks `table` (the new mixture's) against the task table saved with checkpoint
  `path`: the saved tasks at their indices, new tasks only appended. Returns the
  saved table, or None (with a warning) when the checkpoint has none."""
  folder = run_dir.model_dir_of(path)
  if folder is None:
    logging.warning("no task_table.json next to %s: cannot check that the first tasks of "
                    "the new mixture are the ones the checkpoint was trained on.", path)
    return None
  return run_dir.check_task_table(folder, table, allow_extension=True)


def restore_extending_tasks(path: str, abstract_params: Params, *, params_axes: Params,
                            rng: jax.Array, init_fn: Callable[[jax.Array], Params],
                            task_table: Optional[Sequence[Optional[str]]] = None,
                            fallback_to_scratch: Optional[Sequence[str]] = None
                            ) -> Dict[str, Any]:
  """Params (numpy) of checkpoint `path` in a model with at least as many tasks.

  Args:
    path: INITIAL_CHECKPOINT_PATH (anything `formats.restore.restore_params` reads).
    abstract_params: the T'-task model's params (`jax.ShapeDtypeStruct`s or arrays).
    params_axes: the model's `params_axes` collection (logical axis names).
    rng: key of the fresh parameters (`init_fn(rng)`).
    init_fn: `rng -> params` of the T'-task model.
    task_table: the new mixture's task table, checked against the checkpoint's.
    fallback_to_scratch: as `checkpoints.restore_initial_params`.
  Returns:
    The params tree; see the module docstring.
  """
  if task_table:
    check_extended_task_table(path, task_table)
  model_shapes = {k: tuple(v.shape) for k, v in tree_lib.flatten(abstract_params).items()}
  plan = extension_plan(restore_lib.checkpoint_param_shapes(path), model_shapes,
                        task_axes(params_axes))
  fresh_cache = {}

  def fresh_params(key):
    if "params" not in fresh_cache:
      fresh_cache["params"] = jax.tree_util.tree_map(np.asarray, init_fn(key))
    return fresh_cache["params"]

  flat_target = tree_lib.flatten(abstract_params)
  for key, (axis, n) in plan.items():
    leaf = flat_target[key]
    shape = leaf.shape[:axis] + (n,) + leaf.shape[axis + 1:]
    flat_target[key] = jax.ShapeDtypeStruct(shape, leaf.dtype)
  restored = checkpoints_lib.restore_initial_params(
      path, tree_lib.unflatten(flat_target), rng=rng, init_fn=fresh_params,
      fallback_to_scratch=fallback_to_scratch)
  if not plan:
    return restored
  new = max(model_shapes[k][axis] for k, (axis, _) in plan.items())
  print(f"Extended the checkpoint's {next(iter(plan.values()))[1]} tasks to {new}: "
        f"{', '.join(sorted(plan))} (new entries initialised fresh).", flush=True)
  return extend(restored, fresh_params(rng), plan)
