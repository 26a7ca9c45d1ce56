# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Checks before a run starts: bad input is refused with one clear error, nothing is overwritten.

* `check_feature_lengths`: TASK_FEATURE_LENGTHS must leave room for the task-token
  scheme. With seqio's `append_eos_after_trim` an example is cut to `length - 1`
  tokens and EOS is appended; for the sentinel to survive and the example to
  carry any content, a task-indexed `inputs` feature needs
  `length >= 1 (sentinel) + 1 (a token) + 1 (EOS, if the feature adds it)` = 3,
  and every other feature `length >= 1 + 1 (EOS)` = 2.
* `scan_splits`: every task the run reads has examples in its split (an empty
  split is refused), and the first `max_examples` examples of every task are
  measured untrimmed: how many are longer than TASK_FEATURE_LENGTHS (and so
  truncated by seqio) is reported per task and written to
  `MODEL_DIR/truncation.json`.
* `check_run_dir`: MODEL_DIR's saved model config (`model_config.json`, the
  T5Config of the first run) and task table (`task_table.json`) must match this
  run's, unless `allow_change` (the replaced files are kept as
  `*.replaced-<time>.json`); they are written only once the run starts.
* `check_run`: all of these for the `train` command, in order.
* `check_checkpoint_shapes`: a checkpoint to resume from must have the model's
  parameter tree; the first mismatch is named (`encoder/.../kernel: (8, 16) in
  the checkpoint, (8, 32) in the model`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import seqio
import tensorflow as tf

from hyperprompt_jax import conditioning
from hyperprompt_jax import data as data_lib
from hyperprompt_jax import errors
from hyperprompt_jax import reliability
from hyperprompt_jax import run_dir
from hyperprompt_jax.formats import scan as scan_lib
from hyperprompt_jax.formats import tree as tree_lib

# T5Config fields that may change between runs in one MODEL_DIR without
# ALLOW_CONFIG_CHANGE: computation (not model) settings; the conditioning methods'
# registry records add their initialisers (`runtime_fields()`).
BACKBONE_RUNTIME_FIELDS = ("dtype", "dropout_rate", "float32_attention_logits",
                           "one_hot_embedding", "remat_policy")


def runtime_fields() -> Tuple[str, ...]:
  return BACKBONE_RUNTIME_FIELDS + conditioning.runtime_fields()


# ---------------------------------------------------------------------------
# Datasets.
# ---------------------------------------------------------------------------


def min_feature_lengths(output_features: Mapping[str, seqio.Feature], task_indexed: bool
                        ) -> Dict[str, int]:
  """Shortest length of each feature the task-token scheme allows (see module doc)."""
  out = {}
  for key, feature in output_features.items():
    eos = 1 if getattr(feature, "add_eos", False) else 0
    sentinel = 1 if (key == "inputs" and task_indexed) else 0
    out[key] = sentinel + 1 + eos
  return out


def check_feature_lengths(name: str, lengths: Optional[Mapping[str, int]],
                          output_features: Mapping[str, seqio.Feature], task_indexed: bool,
                          required: Sequence[str] = ("inputs", "targets")) -> None:
  """Raises ValueError if TASK_FEATURE_LENGTHS cannot hold a task-indexed example."""
  if lengths is None:
    return
  missing = [k for k in required if k in output_features and k not in lengths]
  if missing:
    raise errors.ConfigError(f"TASK_FEATURE_LENGTHS {dict(lengths)} has no length for {missing} "
                             f"(features of {name!r}).")
  minimum = min_feature_lengths(output_features, task_indexed)
  short = {k: (int(v), minimum[k]) for k, v in lengths.items()
           if k in minimum and int(v) < minimum[k]}
  if not short:
    return
  why = {k: ("the task sentinel, at least one token" if k == "inputs" and task_indexed
             else "at least one token") +
            (" and EOS" if getattr(output_features[k], "add_eos", False) else "")
         for k in short}
  details = "; ".join(f"{k!r} is {got} but needs >= {need} ({why[k]})"
                      for k, (got, need) in short.items())
  raise errors.ConfigError(f"TASK_FEATURE_LENGTHS {dict(lengths)} is too short for {name!r}: "
                           f"{details}.")


def _tasks_to_read(provider: Any, training: bool) -> List[seqio.Task]:
  tasks = seqio.get_subtasks(provider)
  if training and isinstance(provider, seqio.Mixture):
    tasks = [t for t in tasks if provider.get_rate(t) > 0]
  return tasks


def _lengths_of(task: seqio.Task, split: str, keys: Sequence[str], max_examples: int,
                use_cached: bool, sequence_length: Optional[Mapping[str, int]]
                ) -> Dict[str, Any]:
  ds = task.get_dataset(sequence_length=sequence_length, split=split, use_cached=use_cached,
                        shuffle=False, num_epochs=1, trim_output_features=False)
  ds = ds.take(max_examples).map(lambda x: {k: tf.size(x[k]) for k in keys})
  batch = next(iter(ds.batch(max_examples)), None)
  if batch is None:
    return {k: [] for k in keys}
  return {k: batch[k].numpy().tolist() for k in keys}


def _source_is_empty(task: seqio.Task, split: str) -> bool:
  """Whether the task's source has no example in `split` (metadata when known)."""
  try:
    known = task.source.num_input_examples(split)
  except Exception:  # pylint: disable=broad-except
    known = None
  if known is not None:
    return int(known) == 0
  ds = task.source.get_dataset(split=split, shuffle=False)
  return next(iter(ds.take(1)), None) is None


def scan_splits(cfg: Any, *, training: bool, max_examples: int) -> Dict[str, Any]:
  """Refuses an empty split; counts examples longer than the feature lengths per task.

  Args:
    cfg: a `data.DatasetConfig`.
    training: only the tasks a mixture samples (rate > 0) must have examples.
    max_examples: examples measured per task (0: only check the splits).

  Returns:
    `{task: {feature: {'checked', 'truncated', 'longest', 'length', 'counted'}}}`
    (empty when `max_examples` is 0 or `cfg` has no feature lengths). A task whose
    preprocessors need the sequence lengths is measured trimmed (`'counted': False`).
  """
  provider = seqio.get_mixture_or_task(cfg.mixture_or_task_name)
  lengths = dict(cfg.task_feature_lengths or {})
  report: Dict[str, Any] = {}
  for task in _tasks_to_read(provider, training):
    if cfg.split not in task.splits:
      raise errors.ConfigError(f"task {task.name!r} (in {cfg.mixture_or_task_name!r}) has no "
                               f"{cfg.split!r} split (splits: {list(task.splits)}).")
    if _source_is_empty(task, cfg.split):
      raise errors.ConfigError(f"the {cfg.split!r} split of task {task.name!r} (in "
                               f"{cfg.mixture_or_task_name!r}) has no examples.")
    keys = [k for k in lengths if k in task.output_features]
    if not max_examples or not keys:
      continue
    counted = True
    try:
      measured = _lengths_of(task, cfg.split, keys, max_examples, cfg.use_cached, None)
    except Exception as e:  # pylint: disable=broad-except
      logging.info("task %s cannot be read untrimmed (%s); measuring trimmed lengths.",
                   task.name, e)
      counted = False
      measured = _lengths_of(task, cfg.split, keys, max_examples, cfg.use_cached, lengths)
    if not measured[keys[0]]:
      raise errors.ConfigError(
          f"the {cfg.split!r} split of task {task.name!r} (in {cfg.mixture_or_task_name!r}) "
          "has no examples after preprocessing.")
    report[task.name] = {
        k: {"checked": len(v), "truncated": sum(1 for n in v if n > lengths[k]),
            "longest": max(v), "length": int(lengths[k]), "counted": counted}
        for k, v in measured.items()}
  return report


def truncation_lines(report: Mapping[str, Any], split: str) -> List[str]:
  """One warning line per task and feature with truncated examples."""
  lines = []
  for task, features in report.items():
    for key, r in features.items():
      if r["truncated"]:
        lines.append(
            f"warning: {task}: {r['truncated']} of the first {r['checked']} {split!r} examples "
            f"({100.0 * r['truncated'] / r['checked']:.1f}%) have {key} longer than "
            f"TASK_FEATURE_LENGTHS[{key!r}]={r['length']} (longest {r['longest']}) and are "
            "truncated.")
  return lines


def write_truncation_report(model_dir: str, reports: Mapping[str, Any]) -> str:
  """Writes `{split: report}` to MODEL_DIR/truncation.json (atomically); returns the path."""
  return run_dir.write_json(os.path.join(model_dir, run_dir.TRUNCATION),
                            {"time": time.time(), "splits": dict(reports)})


# ---------------------------------------------------------------------------
# MODEL_DIR: model config and task table.
# ---------------------------------------------------------------------------


def config_dict(config: Any) -> Dict[str, Any]:
  """JSON-able dict of a T5Config (the format of `formats.tree.read_config`)."""
  return tree_lib.config_to_dict(config)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> List[str]:
  """`'field: saved -> now'` for every differing field outside `runtime_fields()`."""
  out, runtime = [], runtime_fields()
  for key in sorted(set(saved) | set(current)):
    if key in runtime:
      continue
    a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
    if isinstance(a, list):
      a = tuple(a)
    if isinstance(b, list):
      b = tuple(b)
    if a != b:
      out.append(f"{key}: {a!r} -> {b!r}")
  return out


def check_writable(model_dir: str) -> None:
  """Refuses a local MODEL_DIR that cannot be created or written (remote URLs are not probed)."""
  if "://" in model_dir:
    return
  path = os.path.abspath(model_dir)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    raise errors.ConfigError(f"MODEL_DIR {model_dir} cannot be created: {path} is a file, "
                             "not a directory.")
  if not os.access(path, os.W_OK | os.X_OK):
    raise errors.ConfigError(f"MODEL_DIR {model_dir} cannot be written: {path} is not "
                             "writable by this user.")


def check_run_dir(model_dir: str, *, model_config: Optional[Any], task_table: Sequence[Any],
                  mixture_or_task_name: str, allow_change: bool = False
                  ) -> Callable[[], None]:
  """Refuses (ValueError) a MODEL_DIR that holds a different model or task table.

  Nothing is written here. Returns the function that saves this run's config and
  table (call it on one process once the run is known to start, e.g. after its
  checkpoint was restored); with `allow_change` it first keeps the files it
  replaces as `*.replaced-<time>.json`.
  """
  problems, replace = [], []
  config_path = os.path.join(model_dir, run_dir.MODEL_CONFIG)
  current = config_dict(model_config) if model_config is not None else None
  if current is not None and tf.io.gfile.exists(config_path):
    with tf.io.gfile.GFile(config_path) as f:
      try:
        saved = json.load(f)
      except json.JSONDecodeError as e:
        raise errors.ConfigError(
            f"{config_path} is not valid JSON ({e}); it was not changed.") from None
    diffs = config_differences(saved, current)
    if diffs:
      problems.append(f"model config ({config_path}): {', '.join(diffs)}")
      replace.append(config_path)
  if task_table:
    try:
      run_dir.check_task_table(model_dir, task_table)
    except errors.ConfigError as e:
      problems.append(f"task table: {' '.join(str(e).split())}")
      replace.append(run_dir.task_table_path(model_dir))
  if problems and not allow_change:
    raise errors.ConfigError(
        f"MODEL_DIR {model_dir} holds a run with a different " + "; ".join(problems) +
        ". Use a new MODEL_DIR (INITIAL_CHECKPOINT_PATH can point at this one's checkpoint), "
        "or pass --gin.ALLOW_CONFIG_CHANGE=True to continue here anyway.")

  def commit() -> None:
    tf.io.gfile.makedirs(model_dir)
    if replace:
      kept = [run_dir.keep_replaced(p) for p in replace]
      logging.warning("ALLOW_CONFIG_CHANGE: continuing in %s despite %s; old files kept as %s",
                      model_dir, "; ".join(problems), kept)
      print(f"warning: ALLOW_CONFIG_CHANGE: {'; '.join(problems)}; previous files kept as "
            f"{', '.join(kept)}.", flush=True)
    if current is not None and (config_path in replace or not tf.io.gfile.exists(config_path)):
      run_dir.write_json(config_path, current)
    if task_table:
      if run_dir.task_table_path(model_dir) in replace:
        run_dir.save_task_table(model_dir, task_table, mixture_or_task_name)
      else:
        run_dir.save_or_check_task_table(model_dir, task_table,
                                               mixture_or_task_name=mixture_or_task_name)

  return commit


# ---------------------------------------------------------------------------
# Checkpoints.
# ---------------------------------------------------------------------------


def _flat_shapes(tree: Any) -> Dict[str, Tuple[int, ...]]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  out = {}
  for path, leaf in flat:
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                    for k in path)
    out[name] = tuple(getattr(leaf, "shape", ()) or ())
  return out


def check_checkpoint_shapes(step_dir: str, abstract_tree: Mapping[str, Any],
                            item: str = "state") -> None:
  """Raises ValueError naming the first parameter whose shape differs from the model's.

  Args:
    step_dir: a `checkpoint_<step>` folder.
    abstract_tree: what will be restored (`checkpoints.state_tree(abstract_state)`:
      `{'target': params, 'state': {...}}`).
    item: the Orbax item holding it.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
  try:
    metadata = ocp.PyTreeCheckpointHandler().metadata(epath.Path(step_dir) / item)
  except (OSError, ValueError, FileNotFoundError) as e:
    raise errors.ConfigError(f"cannot read the parameter shapes of {step_dir}: {e}") from None
  saved = _flat_shapes(getattr(metadata, "tree", metadata))
  wanted = _flat_shapes(abstract_tree)
  # Parameters ('target/...') first: they are what a user recognises.
  order = sorted(set(saved) | set(wanted), key=lambda k: (not k.startswith("target/"), k))
  problems = []
  for key in order:
    name = key.split("/", 1)[-1] if key.startswith("target/") else key
    kind = "parameter" if key.startswith("target/") else "optimizer / train state entry"
    if key not in saved:
      problems.append((kind, f"{kind} {name} is missing from the checkpoint"))
    elif key not in wanted:
      problems.append((kind, f"{kind} {name} is in the checkpoint but not in the model"))
    elif saved[key] != wanted[key]:
      problems.append((kind, f"{kind} {name}: {saved[key]} in the checkpoint, {wanted[key]} "
                             "in the model"))
  if not problems:
    return
  saved_params = [k.split("/", 1)[-1] for k in saved if k.startswith("target/")]
  wanted_params = [k.split("/", 1)[-1] for k in wanted if k.startswith("target/")]
  # (the checkpoint's scan_layers, the parameters that are unrolled, the ones scanned)
  for saved_scan, unrolled, scanned in ((False, saved_params, wanted_params),
                                        (True, wanted_params, saved_params)):
    if scan_lib.is_unrolled(unrolled) and scan_lib.is_scanned(scanned):
      raise errors.ConfigError(
          f"checkpoint {step_dir} was saved with T5Config.scan_layers={saved_scan} and the "
          f"model has scan_layers={not saved_scan}: resume it with scan_layers={saved_scan}, "
          "or start a new MODEL_DIR from it with INITIAL_CHECKPOINT_PATH (parameters restore "
          "across layouts).")
  kind, first = problems[0]
  more = sum(1 for k, _ in problems[1:] if k == kind)
  raise errors.ConfigError(
      f"checkpoint {step_dir} does not fit the model: {first}"
      + (f" (and {more} more {kind.split()[0]}s)" if more else "")
      + ". Resume it with the model and optimizer it was saved with, or start a new MODEL_DIR.")


# ---------------------------------------------------------------------------
# All of the above, for the `train` command.
# ---------------------------------------------------------------------------


def check_checkpoint_data(cfg: data_lib.DatasetConfig, model: Any, checkpoint_path: str
                          ) -> data_lib.TaskTable:
  """`eval` / `infer`: the mixture fits the model and the checkpoint's saved task table.

  Imports the task module, reads the mixture's task table, checks it against the
  model and, when the checkpoint's MODEL_DIR holds a task table, against that one.
  Returns the table.
  """
  data_lib.import_modules(cfg.module)
  table = data_lib.task_table(cfg.mixture_or_task_name)
  data_lib.check_model_and_tasks(cfg, model, table)
  model_dir = run_dir.model_dir_of(checkpoint_path)
  if model_dir is not None and table:
    run_dir.check_task_table(model_dir, table)
  return table


def check_run(model: Any, model_dir: str, cfgs: Sequence[data_lib.DatasetConfig],
              reliability_cfg: reliability.ReliabilityConfig
              ) -> Tuple[data_lib.TaskTable, Callable[[], None]]:
  """Imports task modules, checks each mixture against the model and MODEL_DIR.

  The training mixture's task table and the model config are saved to MODEL_DIR
  on the first run and must match on every later run (a reordered mixture would
  remap the tasks) unless `reliability_cfg.allow_config_change`. Feature lengths
  and splits are checked and truncation is counted. Nothing is written here:
  returns the table and the function that saves the table, the config and the
  truncation counts once the run starts.
  """
  for cfg in cfgs:
    data_lib.import_modules(cfg.module)
  tables = [data_lib.task_table(cfg.mixture_or_task_name) for cfg in cfgs]
  for cfg, table in zip(cfgs, tables):
    data_lib.check_model_and_tasks(cfg, model, table)
    check_feature_lengths(
        cfg.mixture_or_task_name, cfg.task_feature_lengths,
        data_lib.get_mixture_or_task(cfg.mixture_or_task_name).output_features, bool(table))
  truncation: Dict[str, Any] = {}
  for i, cfg in enumerate(cfgs):  # empty splits are refused; truncation is counted
    counts = scan_splits(cfg, training=i == 0,
                         max_examples=reliability_cfg.truncation_check_examples)
    if counts:
      truncation.setdefault(cfg.split, counts)
  save_run_dir = check_run_dir(
      model_dir, model_config=getattr(getattr(model, "module", None), "config", None),
      task_table=tables[0], mixture_or_task_name=cfgs[0].mixture_or_task_name,
      allow_change=reliability_cfg.allow_config_change)
  if tables[0] and not reliability_cfg.allow_config_change:
    for cfg, table in zip(cfgs[1:], tables[1:]):
      if table:
        run_dir.check_task_table(model_dir, table)

  def commit() -> None:
    if jax.process_index() == 0:
      save_run_dir()
      _report_truncation(model_dir, truncation)

  return tables[0], commit


def _report_truncation(model_dir: str, reports: Dict[str, Any]) -> None:
  """Prints a line per truncated task and feature; writes MODEL_DIR/truncation.json."""
  if not reports:
    return
  lines = [line for split, r in reports.items() for line in truncation_lines(r, split)]
  for line in lines:
    print(line, flush=True)
  path = write_truncation_report(model_dir, reports)
  if lines:
    print(f"Truncation counts per task: {path}", flush=True)
