# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""seqio input pipelines for the launcher: dataset configs, host shards, task tables.

`DatasetConfig` has t5x's `utils.DatasetConfig` fields and is configured in gin
under the scopes `train/`, `train_eval/` and `infer_eval/`. `get_dataset(cfg,
shard_id, num_shards, feature_converter_cls)` reads this host's shard
(`seqio.ShardInfo`) with `cfg.batch_size // num_shards` examples per batch.

Task conditioning reads the task index from the leading sentinel of every
example's inputs (`task_ids.py`). Packed rows (`pack=True`: seqio's
`EncDecFeatureConverter(pack=True)` puts several examples, possibly of different
tasks, in one row) keep one sentinel per segment, and the network conditions
every segment on its own task; the methods that cannot are refused.
`check_model_and_tasks` validates, before anything is built, that the mixture's
vocabulary is the model's, that every task index of the mixture has a sentinel
inside the model's `num_tasks` (never clipped), and that the method can pack
when `pack=True`. Decoding and inference never pack.

The task -> index table is read from the registered seqio tasks themselves (the
`task_index` of their sentinel preprocessor, see `task_binding`). The library
never imports a task package: `import_modules` imports MIXTURE_OR_TASK_MODULE
(default `hyperprompt_tasks`) because the gin configuration names it.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import logging
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import jax
import numpy as np
import seqio
import tensorflow as tf

from hyperprompt_jax import conditioning
from hyperprompt_jax import errors

TaskTable = Tuple[Optional[str], ...]
# Tests and drills only: a folder where every training batch a process reads is saved
# (`process_<i>/batch_<position>.npz`, position counted from 1), to check which examples
# each host consumed. Read when a batch is produced; unset, nothing is written.
RECORD_ENV = "HYPERPROMPT_RECORD_BATCHES"
# Suffix of the task variants a mixture registers per task index (hyperprompt_tasks').
INDEX_SUFFIX = "_task_index_"


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """One input pipeline (t5x's `utils.DatasetConfig` fields).

  Attributes:
    mixture_or_task_name: registered seqio task or mixture.
    task_feature_lengths: e.g. `{'inputs': 256, 'targets': 16}`; None: the
      longest example (inference evaluation).
    split: dataset split.
    batch_size: global batch size (all hosts together).
    shuffle: shuffle the examples.
    seed: shuffle / sampling seed (None: the run's seed for training).
    use_cached: read seqio's offline cache.
    pack: pack examples into rows (refused with a method that cannot pack).
    module: module(s) to import first so that they register the tasks
      (t5x's `MIXTURE_OR_TASK_MODULE`).
    use_memory_cache: let the seqio Evaluator keep the eval set in memory.
    trim_output_features: trim examples to `task_feature_lengths`.
  """
  mixture_or_task_name: str
  task_feature_lengths: Optional[Mapping[str, int]]
  split: str
  batch_size: int
  shuffle: bool
  seed: Optional[int] = None
  use_cached: bool = False
  pack: bool = False
  module: Optional[Union[str, Sequence[str]]] = None
  use_memory_cache: bool = True
  trim_output_features: bool = True


# ---------------------------------------------------------------------------
# Task registry helpers.
# ---------------------------------------------------------------------------


def import_modules(module: Optional[Union[str, Sequence[str]]]) -> None:
  """Imports the module(s) that register tasks; a missing module is one clear error."""
  if not module:
    return
  for name in [module] if isinstance(module, str) else list(module):
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise errors.ConfigError(f"cannot import task module {name!r} (MIXTURE_OR_TASK_MODULE): "
                               f"{e}") from None


def get_mixture_or_task(name: str) -> Union[seqio.Task, seqio.Mixture]:
  """A registered task or mixture; an unknown name lists the closest registered names."""
  if name in seqio.MixtureRegistry.names() or name in seqio.TaskRegistry.names():
    return seqio.get_mixture_or_task(name)
  known = sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))
  # Mixture-made variants (`<task>_task_index_<k>`) only after the names a user types.
  plain = [n for n in known if INDEX_SUFFIX not in n]
  close = difflib.get_close_matches(name, plain, n=5, cutoff=0.6)
  close += [n for n in difflib.get_close_matches(name, known, n=5, cutoff=0.6) if n not in close]
  hint = (f"; closest registered names: {', '.join(close[:5])}" if close else
          "; no registered name is close (is MIXTURE_OR_TASK_MODULE the module that "
          "registers it?)")
  raise errors.ConfigError(f"no seqio task or mixture named {name!r}{hint}")


def task_binding(task: seqio.Task) -> Optional[Tuple[int, str]]:
  """`(task index, identity)` a seqio task carries, or None for a task without an index.

  The index is the `task_index` keyword of the preprocessor that prepends the task
  sentinel (a `functools.partial(..., task_index=k)`, as
  `hyperprompt_tasks.preprocessors.add_task_sentinel`); the identity is its
  `task_identity` keyword (the task whose embedding an eval-only twin shares) or,
  without one, the task's own name.
  """
  for prep in task.preprocessors:
    keywords = getattr(prep, "keywords", None) or {}
    if "task_index" in keywords:
      return int(keywords["task_index"]), keywords.get("task_identity") or task.name
  return None


def task_table(name: str) -> TaskTable:
  """Task identities in task-index order (None: unused index); () if no task is indexed.

  Read from what the registered seqio tasks carry (`task_binding`), so the table
  cannot disagree with the data the model sees.
  """
  by_index: Dict[int, str] = {}
  index_of: Dict[str, int] = {}
  for task in seqio.get_subtasks(get_mixture_or_task(name)):
    binding = task_binding(task)
    if binding is None:
      continue
    index, identity = binding
    if by_index.get(index, identity) != identity:
      raise errors.ConfigError(f"{name!r} puts {by_index[index]!r} and {identity!r} at the "
                               f"same task index {index}.")
    if index_of.get(identity, index) != index:
      raise errors.ConfigError(f"{name!r} gives task {identity!r} two task indices: "
                               f"{index_of[identity]} and {index}.")
    by_index[index], index_of[identity] = identity, index
  if not by_index:
    return ()
  return tuple(by_index.get(i) for i in range(max(by_index) + 1))


# ---------------------------------------------------------------------------
# Configuration-time checks.
# ---------------------------------------------------------------------------


def check_model_and_tasks(cfg: DatasetConfig, model: Any, table: TaskTable) -> None:
  """Refuses a mixture the model cannot condition on (see the module docstring)."""
  config = getattr(getattr(model, "module", None), "config", None)
  method = conditioning.active_method(config) if config is not None else "none"
  refusal = conditioning.get(method).packing_refusal if method != "none" else None
  if cfg.pack and refusal:
    raise errors.ConfigError(
        f"pack=True is not supported with conditioning={method!r}: {refusal}. Set "
        "`train/DatasetConfig.pack = False` (and train_eval/).")
  mixture = get_mixture_or_task(cfg.mixture_or_task_name)
  vocab = getattr(model, "input_vocabulary", None)
  features = mixture.output_features
  for key, model_vocab in (("inputs", vocab), ("targets", getattr(model, "output_vocabulary",
                                                                  None))):
    if model_vocab is not None and key in features and features[key].vocabulary != model_vocab:
      raise errors.ConfigError(
          f"the {key!r} vocabulary of {cfg.mixture_or_task_name!r} "
          f"({features[key].vocabulary}) is not the model's ({model_vocab}); bind VOCABULARY "
          "to the tasks' vocabulary.")
  if config is None or method == "none":
    return
  if not table:
    raise errors.ConfigError(f"{cfg.mixture_or_task_name!r} has no task-indexed task (no task "
                             f"sentinel), but the model is task-conditioned ({method}).")
  too_big = {t: i for i, t in enumerate(table) if t is not None and i >= config.num_tasks}
  if too_big:
    raise errors.ConfigError(
        f"task indices {too_big} of {cfg.mixture_or_task_name!r} are outside "
        f"T5Config.num_tasks={config.num_tasks}; set NUM_TASKS = {len(table)} "
        "(task indices are never clipped).")
  if "inputs" in features:
    vocab_size = features["inputs"].vocabulary.vocab_size
    if config.task_sentinel_id != vocab_size - 1:
      raise errors.ConfigError(
          f"T5Config.task_sentinel_id={config.task_sentinel_id} is not <extra_id_0> of the "
          f"tasks' vocabulary (vocab_size {vocab_size} -> {vocab_size - 1}); set "
          f"TASK_SENTINEL_ID = {vocab_size - 1}.")
    if vocab_size > config.vocab_size:
      raise errors.ConfigError(
          f"the tasks' vocabulary has {vocab_size} ids but T5Config.vocab_size "
          f"is {config.vocab_size}.")


# ---------------------------------------------------------------------------
# Pipelines.
# ---------------------------------------------------------------------------


def feature_converter(feature_converter_cls, pack: bool) -> seqio.FeatureConverter:
  return feature_converter_cls(pack=pack)


def get_dataset(cfg: DatasetConfig, shard_id: int, num_shards: int, feature_converter_cls,
                num_epochs: Optional[int] = None, seed: Optional[int] = None
                ) -> tf.data.Dataset:
  """This host's batches (`cfg.batch_size // num_shards` rows) of `cfg`.

  `num_epochs=None` repeats forever (training). `seed` is used when `cfg.seed`
  is None; give one for a deterministic, resumable order.
  """
  import_modules(cfg.module)
  if cfg.batch_size % num_shards:
    raise errors.ConfigError(f"batch size {cfg.batch_size} must be divisible by the number of "
                             f"input shards ({num_shards}).")
  if cfg.task_feature_lengths is None:
    raise errors.ConfigError(f"{cfg.split} dataset of {cfg.mixture_or_task_name!r} needs "
                             "task_feature_lengths (TASK_FEATURE_LENGTHS).")
  get_mixture_or_task(cfg.mixture_or_task_name)  # clear error for an unknown name
  return seqio.get_dataset(
      cfg.mixture_or_task_name, task_feature_lengths=dict(cfg.task_feature_lengths),
      feature_converter=feature_converter(feature_converter_cls, cfg.pack),
      dataset_split=cfg.split, use_cached=cfg.use_cached, shuffle=cfg.shuffle,
      num_epochs=num_epochs, shard_info=seqio.ShardInfo(index=shard_id, num_shards=num_shards),
      verbose=False, seed=cfg.seed if cfg.seed is not None else seed,
      batch_size=cfg.batch_size // num_shards,
      trim_output_features=cfg.trim_output_features)


class DatasetIterator:
  """Numpy batches of a tf.data pipeline, with a checkpointable position.

  `position` counts the batches produced (each is saved under `$HYPERPROMPT_RECORD_BATCHES`
  when that is set, see `RECORD_ENV`). `save(prefix)` / `restore(prefix)`
  write and read the tf.data iterator state (t5x's dataset checkpoint); when
  the pipeline cannot be checkpointed, `restore_position(n)` skips `n` batches
  of a freshly built (deterministic, seeded) pipeline instead.
  """

  def __init__(self, dataset: tf.data.Dataset):
    self._dataset = dataset
    # Created on first use: a second iteration of a shuffled dataset object would be
    # shuffled differently (tf.data reshuffles each iteration), so a restore must be
    # the dataset's first iteration.
    self._iterator = None
    self.position = 0

  def _get_iterator(self):
    if self._iterator is None:
      self._iterator = iter(self._dataset)
    return self._iterator

  def __iter__(self):
    return self

  def __next__(self) -> Dict[str, np.ndarray]:
    batch = next(self._get_iterator())
    self.position += 1
    out = {k: np.asarray(v) for k, v in batch.items()}
    record_dir = os.environ.get(RECORD_ENV)
    if record_dir:
      _record_batch(record_dir, self.position, out)
    return out

  @property
  def element_spec(self):
    return self._dataset.element_spec

  def save(self, prefix: str) -> bool:
    """Writes the iterator state to `prefix*`; False if the pipeline cannot be saved."""
    try:
      tf.train.Checkpoint(ds=self._get_iterator()).write(prefix)
      return True
    except (tf.errors.OpError, ValueError, TypeError) as e:
      logging.warning("dataset iterator state not saved (%s); a restart will skip %d "
                      "batches instead.", e, self.position)
      return False

  def restore(self, prefix: str, position: int) -> None:
    """Continues after the saved state (call before any `next`)."""
    self._check_unused()
    tf.train.Checkpoint(ds=self._get_iterator()).read(prefix).assert_consumed()
    self.position = position

  def restore_position(self, position: int) -> None:
    """Skips `position` batches of the (deterministic, seeded) pipeline (before any `next`)."""
    self._check_unused()
    self._iterator = iter(self._dataset.skip(position))
    self.position = position

  def _check_unused(self) -> None:
    if self._iterator is not None:
      raise errors.ConfigError("restore a DatasetIterator before reading from it.")


def _record_batch(record_dir: str, position: int, batch: Mapping[str, np.ndarray]) -> None:
  """Saves this process's batch number `position` (see `RECORD_ENV`); a rerun overwrites it."""
  folder = os.path.join(record_dir, f"process_{jax.process_index()}")
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, f".batch_{position}.{os.getpid()}.npz")
  np.savez(tmp, **batch)
  os.replace(tmp, os.path.join(folder, f"batch_{position}.npz"))


def batch_token_count(batch: Mapping[str, np.ndarray]) -> int:
  """Non-padding tokens of a batch (encoder inputs + decoder targets)."""
  count = 0
  for key in ("encoder_input_tokens", "decoder_target_tokens"):
    if key in batch:
      count += int(np.count_nonzero(batch[key]))
  return count

