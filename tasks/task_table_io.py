# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The task table saved next to a model, and the check that refuses silent remapping.

A model trained with task indices only makes sense with the same task->index
table. `save_task_table` writes `<model_dir>/task_table.json` (atomically, via
`tf.io.gfile`, so `gs://` model directories work); `check_task_table` compares
a mixture's table with the saved one before training, evaluation or inference:

* same table, or a table that uses a subset of the saved indices with the same
  tasks there (`None` entries, or a prefix): accepted;
* the saved table followed by new tasks: refused unless `allow_extension=True`
  (e.g. to add a task to a trained model, as in the new-task experiments);
* anything else (a reordered mixture, a task replaced): refused with the list of
  indices whose task would change.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Tuple

import tensorflow as tf

TASK_TABLE_FILENAME = "task_table.json"
_FORMAT = "hyperprompt_task_table/1"

Table = Tuple[Optional[str], ...]


def task_table_path(model_dir: str) -> str:
  return os.path.join(model_dir, TASK_TABLE_FILENAME)


def _validate(table: Sequence[Optional[str]]) -> Table:
  table = tuple(table)
  if not table:
    raise ValueError("a task table needs at least one task")
  names = [t for t in table if t is not None]
  if any(not isinstance(t, str) or not t for t in names):
    raise ValueError(f"task table entries must be task names or None: {table}")
  repeated = sorted({t for t in names if names.count(t) > 1})
  if repeated:
    raise ValueError(f"task table lists tasks more than once: {repeated}")
  return table


def load_task_table(model_dir: str) -> Optional[Table]:
  """The table saved in `model_dir`, or None if there is none."""
  path = task_table_path(model_dir)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "r") as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not a valid task table ({e}); it was not changed") from e
  if not isinstance(data, dict) or data.get("format") != _FORMAT or "tasks" not in data:
    raise ValueError(f"{path} is not a task table written by hyperprompt_tasks "
                     f"(expected format {_FORMAT!r}); it was not changed")
  return _validate(data["tasks"])


def save_task_table(model_dir: str, table: Sequence[Optional[str]],
                    mixture_or_task_name: Optional[str] = None) -> str:
  """Writes `table` to `<model_dir>/task_table.json` atomically; returns the path."""
  table = _validate(table)
  tf.io.gfile.makedirs(model_dir)
  path = task_table_path(model_dir)
  tmp = f"{path}.tmp-{os.getpid()}"
  payload = {"format": _FORMAT, "tasks": list(table), "num_tasks": len(table)}
  if mixture_or_task_name:
    payload["mixture_or_task_name"] = mixture_or_task_name
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(json.dumps(payload, indent=2) + "\n")
  tf.io.gfile.rename(tmp, path, overwrite=True)
  return path


def check_task_table(model_dir: str, table: Sequence[Optional[str]], *,
                     allow_extension: bool = False) -> Optional[Table]:
  """Raises ValueError if `table` would remap tasks of the table saved in `model_dir`.

  Returns the saved table (None when `model_dir` has none yet). `None` entries in
  `table` are unused indices and match anything.
  """
  table = _validate(table)
  saved = load_task_table(model_dir)
  if saved is None:
    return None
  path = task_table_path(model_dir)
  changed = [
      f"  index {i}: saved {saved[i]!r}, now {t!r}"
      for i, t in enumerate(table[:len(saved)])
      if t is not None and saved[i] is not None and t != saved[i]
  ]
  moved = sorted(set(t for t in table if t) & set(t for t in saved if t) -
                 {t for t, s in zip(table, saved) if t == s})
  if changed:
    raise ValueError(
        f"the mixture's task table does not match the one saved in {path}; the "
        f"model's task embeddings would be used for other tasks:\n" + "\n".join(changed) +
        (f"\ntasks moved to another index: {moved}" if moved else "") +
        "\nKeep the saved task order (append new tasks at the end) or use a new model_dir.")
  filled = [i for i, t in enumerate(saved) if t is None and i < len(table) and table[i]]
  if len(table) > len(saved) or filled:
    added = [(i, t) for i, t in enumerate(table) if t and (i >= len(saved) or saved[i] is None)]
    if not allow_extension:
      raise ValueError(
          f"the mixture extends the task table saved in {path} with new tasks "
          f"{added}; pass allow_extension=True to add them (their task embeddings "
          "start untrained), or use the saved mixture.")
  return saved


def save_or_check_task_table(model_dir: str, table: Sequence[Optional[str]], *,
                             allow_extension: bool = False,
                             mixture_or_task_name: Optional[str] = None) -> Table:
  """Checks `table` against `model_dir` and saves the (possibly extended) table.

  Saved entries are never changed: an allowed extension keeps the saved prefix
  and adds the new tasks. Returns the table now saved.
  """
  table = _validate(table)
  saved = check_task_table(model_dir, table, allow_extension=allow_extension)
  if saved is None:
    merged = table
  else:
    n = max(len(saved), len(table))
    merged = tuple((saved[i] if i < len(saved) and saved[i] is not None else
                    (table[i] if i < len(table) else None)) for i in range(n))
  if merged != saved:
    save_task_table(model_dir, merged, mixture_or_task_name)
  return merged
