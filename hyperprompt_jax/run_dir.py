# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""MODEL_DIR: the name of every file the launcher keeps there, and the one way to write them.

  MODEL_DIR/
    checkpoint_<step>/        Orbax checkpoints (`checkpoints.py`; t5x's layout)
    model_config.json         the T5Config of the first run (`formats.tree.config_to_dict`)
    task_table.json           task names in task-index order (this module)
    truncation.json           examples longer than TASK_FEATURE_LENGTHS, per task
    best_checkpoints.json     best step and score of every task (`evaluation.BestCheckpoints`)
    metrics_history.json      train loss and eval scores by step (`summaries.MetricsHistory`)
    metrics.png               their plot
    train/ train_eval/        TensorBoard summaries
    inference_eval/           seqio's evaluation summaries
  and the `eval` command's output folder holds `results_<step>.json` and its own
  best_checkpoints.json.

Every JSON or text file is written through `write_json` / `write_text`: into a
temporary file beside the target, then renamed over it (`etils.epath`, so
`gs://` folders work, and TensorFlow is not loaded for it), so a crash never
leaves a half-written file.
`model_dir_of(path)` finds the MODEL_DIR a checkpoint path belongs to.

The task table (`task_table.json`): a model trained with task indices only makes
sense with the same task -> index table. `check_task_table` compares a
mixture's table with the saved one before training, evaluation or inference:

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
import time
from typing import Any, Optional, Sequence, Tuple

from etils import epath

from hyperprompt_jax import errors

CHECKPOINT_PREFIX = "checkpoint"  # checkpoint_<step>/, as t5x
MODEL_CONFIG = "model_config.json"
TASK_TABLE = "task_table.json"
TRUNCATION = "truncation.json"
BEST_CHECKPOINTS = "best_checkpoints.json"
METRICS_HISTORY = "metrics_history.json"
METRICS_PLOT = "metrics.png"
TRAIN_SUMMARIES = "train"
TRAIN_EVAL_SUMMARIES = "train_eval"
INFERENCE_EVAL = "inference_eval"
_TASK_TABLE_FORMAT = "hyperprompt_task_table/1"

Table = Tuple[Optional[str], ...]


def eval_results(step: int) -> str:
  """Name of the `eval` command's results file of `step` (in its output folder)."""
  return f"results_{int(step)}.json"


# ---------------------------------------------------------------------------
# Writing.
# ---------------------------------------------------------------------------


def write_bytes(path: str, data: bytes) -> str:
  """Writes `data` to `path` atomically (temporary file, then rename); returns the path."""
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
  tmp.write_bytes(data)
  tmp.replace(target)
  return path


def write_text(path: str, text: str) -> str:
  """Writes `text` (UTF-8) to `path` atomically; returns the path."""
  return write_bytes(path, text.encode("utf-8"))


def write_json(path: str, payload: Any, *, indent: Optional[int] = 2,
               sort_keys: bool = True) -> str:
  """Writes `payload` as JSON (one trailing newline) to `path` atomically; returns the path."""
  return write_text(path, json.dumps(payload, indent=indent, sort_keys=sort_keys) + "\n")


def keep_replaced(path: str) -> str:
  """Copies `path` to `<stem>.replaced-<time><ext>` before it is replaced; returns the copy."""
  stem, ext = os.path.splitext(path)
  backup = f"{stem}.replaced-{time.strftime('%Y%m%d-%H%M%S')}{ext}"
  epath.Path(path).copy(epath.Path(backup), overwrite=True)
  return backup


# ---------------------------------------------------------------------------
# Finding MODEL_DIR.
# ---------------------------------------------------------------------------


def absolute_path(path: str) -> str:
  """`os.path.abspath` for local paths; URLs (`gs://...`) unchanged."""
  return path if "://" in path else os.path.abspath(path)


def model_dir_of(path: str) -> Optional[str]:
  """The MODEL_DIR a checkpoint path belongs to (the folder holding its task table), or None.

  `path` is the MODEL_DIR itself, `checkpoint_<step>`, its `state/` item or a legacy
  `checkpoint` file.
  """
  folder = absolute_path(os.fspath(path)).rstrip("/")
  for _ in range(4):  # MODEL_DIR/checkpoint_<step>/state/<file>
    if epath.Path(folder, TASK_TABLE).exists():
      return folder
    folder = os.path.dirname(folder)
  return None


# ---------------------------------------------------------------------------
# The task table.
# ---------------------------------------------------------------------------


def task_table_path(model_dir: str) -> str:
  return os.path.join(model_dir, TASK_TABLE)


def _validate(table: Sequence[Optional[str]]) -> Table:
  table = tuple(table)
  if not table:
    raise errors.ConfigError("a task table needs at least one task")
  names = [t for t in table if t is not None]
  if any(not isinstance(t, str) or not t for t in names):
    raise errors.ConfigError(f"task table entries must be task names or None: {table}")
  repeated = sorted({t for t in names if names.count(t) > 1})
  if repeated:
    raise errors.ConfigError(f"task table lists tasks more than once: {repeated}")
  return table


def load_task_table(model_dir: str) -> Optional[Table]:
  """The table saved in `model_dir`, or None if there is none."""
  path = task_table_path(model_dir)
  if not epath.Path(path).exists():
    return None
  try:
    data = json.loads(epath.Path(path).read_text())
  except json.JSONDecodeError as e:
    raise errors.ConfigError(f"{path} is not a valid task table ({e}); it was not changed") from e
  if not isinstance(data, dict) or data.get("format") != _TASK_TABLE_FORMAT or "tasks" not in data:
    raise errors.ConfigError(f"{path} is not a task table (expected format "
                             f"{_TASK_TABLE_FORMAT!r}); it was not changed")
  return _validate(data["tasks"])


def save_task_table(model_dir: str, table: Sequence[Optional[str]],
                    mixture_or_task_name: Optional[str] = None) -> str:
  """Writes `table` to `<model_dir>/task_table.json` atomically; returns the path."""
  table = _validate(table)
  payload = {"format": _TASK_TABLE_FORMAT, "tasks": list(table), "num_tasks": len(table)}
  if mixture_or_task_name:
    payload["mixture_or_task_name"] = mixture_or_task_name
  return write_json(task_table_path(model_dir), payload, sort_keys=False)


def check_task_table(model_dir: str, table: Sequence[Optional[str]], *,
                     allow_extension: bool = False) -> Optional[Table]:
  """Raises ConfigError if `table` would remap tasks of the table saved in `model_dir`.

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
    raise errors.ConfigError(
        f"the mixture's task table does not match the one saved in {path}; the "
        f"model's task embeddings would be used for other tasks:\n" + "\n".join(changed) +
        (f"\ntasks moved to another index: {moved}" if moved else "") +
        "\nKeep the saved task order (append new tasks at the end) or use a new model_dir.")
  filled = [i for i, t in enumerate(saved) if t is None and i < len(table) and table[i]]
  if len(table) > len(saved) or filled:
    added = [(i, t) for i, t in enumerate(table) if t and (i >= len(saved) or saved[i] is None)]
    if not allow_extension:
      raise errors.ConfigError(
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
