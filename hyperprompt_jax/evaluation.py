# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Inference evaluation with seqio: per-task metrics, benchmark average, best step per task.

`InferenceEvaluator` wraps `seqio.Evaluator` (t5x's `infer_eval`): every task of
the mixture that has a validation split and metrics is decoded greedily
(`Trainer.predict_batch`: cached decoding, batches sharded along 'data') and
scored (`Trainer.score_batch`) when a task's metrics need log-likelihoods.
seqio's loggers write TensorBoard summaries and the predictions as JSONL under
`MODEL_DIR/inference_eval/`.

Scores as in the paper: a task's score is the mean of its metrics (e.g. F1 and
accuracy for MRPC, Pearson and Spearman for STS-B), the benchmark score is the
mean over tasks, and for each task the best step (the checkpoint selected for
that task) is recorded in `MODEL_DIR/best_checkpoints.json`.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np
import seqio
import tensorflow as tf

from hyperprompt_jax import data as data_lib
from hyperprompt_jax import errors
from hyperprompt_jax import run_dir

AVERAGE = "average"
TaskMetrics = Mapping[str, Mapping[str, float]]


def base_task_name(name: str) -> str:
  """`name` without hyperprompt_tasks' `_task_index_<k>` suffix (for tables and lookups)."""
  return re.sub(r"_task_index_\d+$", "", name)


def _value(v: Any) -> Optional[float]:
  v = getattr(v, "value", v)
  try:
    v = float(np.asarray(v))
  except (TypeError, ValueError):
    return None
  return v if math.isfinite(v) else None


def task_scores(metrics: TaskMetrics) -> Dict[str, float]:
  """`{task: mean of its numeric metrics}` plus `'average'` over the tasks."""
  scores = {}
  for task, values in metrics.items():
    numbers = [x for x in (_value(v) for v in values.values()) if x is not None]
    if numbers:
      scores[task] = float(np.mean(numbers))
  if scores:
    scores[AVERAGE] = float(np.mean(list(scores.values())))
  return scores


class BestCheckpoints:
  """Best step and score of every task (and of the average), kept in a JSON file."""

  def __init__(self, model_dir: str):
    self.path = os.path.join(model_dir, run_dir.BEST_CHECKPOINTS)
    self.best: Dict[str, Dict[str, Any]] = {}
    if tf.io.gfile.exists(self.path):
      with tf.io.gfile.GFile(self.path) as f:
        self.best = json.load(f)

  @property
  def steps(self) -> set:
    return {int(v["step"]) for v in self.best.values()}

  def update(self, step: int, metrics: TaskMetrics) -> Dict[str, float]:
    """Records `step` for each task where it beats the best so far; returns the scores."""
    scores = task_scores(metrics)
    for task, score in scores.items():
      if task not in self.best or score > self.best[task]["score"]:
        entry = {"step": int(step), "score": score}
        if task in metrics:
          entry["metrics"] = {k: _value(v) for k, v in metrics[task].items()}
        self.best[task] = entry
    return scores

  def save(self) -> None:
    run_dir.write_json(self.path, self.best)


def run_batched(ds: tf.data.Dataset, fn: Callable[[Mapping[str, Any]], Any], batch_size: int,
                partitioner: Any, features: Sequence[str]) -> List[Tuple[int, Any]]:
  """Applies `fn` to fixed-size global batches of an enumerated dataset.

  Every host iterates the whole (small) eval set and feeds its own rows of each
  global batch; the last batch is padded with all-zero rows, whose outputs
  are dropped. Returns `[(index, output row)]`.
  """
  layout = partitioner.get_data_layout(batch_size)
  per_host = layout.batch_size
  start = layout.shard_id * per_host
  out = []
  for indices, example in ds.batch(batch_size).as_numpy_iterator():
    n = len(indices)
    local = {}
    for key in features:
      value = np.asarray(example[key])
      if n < batch_size:
        pad = np.zeros((batch_size - n,) + value.shape[1:], value.dtype)
        value = np.concatenate([value, pad])
      local[key] = value[start:start + per_host]
    outputs = jax.device_get(fn(partitioner.shard_batch(local, batch_size)))
    rows = outputs if isinstance(outputs, tuple) else (outputs,)
    for i in range(n):
      row = tuple(r[i] for r in rows)
      out.append((int(indices[i]), row if len(row) > 1 else row[0]))
  return out


class InferenceEvaluator:
  """seqio evaluation of one mixture with a `Trainer`'s predict / score steps.

  Args:
    dataset_cfg: the `infer_eval/` DatasetConfig (split, batch size, lengths or None).
    model: provides `FEATURE_CONVERTER_CLS`.
    trainer: `trainer.Trainer` (predict_batch / score_batch / partitioner).
    log_dir: where seqio writes TensorBoard summaries and JSONL predictions.
    evaluator_cls: `seqio.Evaluator` or a subclass.
  """

  def __init__(self, dataset_cfg: data_lib.DatasetConfig, model: Any, trainer: Any,
               log_dir: Optional[str], evaluator_cls=seqio.Evaluator,
               loggers: Sequence[type] = (seqio.TensorBoardLogger, seqio.JSONLogger)):
    data_lib.import_modules(dataset_cfg.module)
    self.batch_size = dataset_cfg.batch_size
    self.trainer = trainer
    converter = model.FEATURE_CONVERTER_CLS(pack=False)
    loggers = tuple(loggers) if (log_dir and jax.process_index() == 0) else ()
    self.evaluator = evaluator_cls(
        mixture_or_task_name=dataset_cfg.mixture_or_task_name, feature_converter=converter,
        eval_split=dataset_cfg.split, use_cached=dataset_cfg.use_cached,
        seed=dataset_cfg.seed, sequence_length=dataset_cfg.task_feature_lengths,
        logger_cls=loggers, log_dir=log_dir, use_memory_cache=dataset_cfg.use_memory_cache)
    if not self.evaluator.eval_tasks:
      raise errors.ConfigError(f"{dataset_cfg.mixture_or_task_name!r} has no task with a "
                               f"{dataset_cfg.split!r} split and metrics to evaluate.")

  @property
  def task_names(self) -> List[str]:
    return [t.name for t in self.evaluator.eval_tasks]

  def _predict_fn(self, params):
    def predict(ds, *unused_args):
      fn = lambda batch: self.trainer.predict_batch(params, batch)[0]
      return [(i, np.asarray(t).tolist()) for i, t in run_batched(
          ds, fn, self.batch_size, self.trainer.partitioner,
          ("encoder_input_tokens", "decoder_input_tokens"))]
    return predict

  def _score_fn(self, params):
    def score(ds, *unused_args):
      fn = lambda batch: self.trainer.score_batch(params, batch)
      return [(i, float(s)) for i, s in run_batched(
          ds, fn, self.batch_size, self.trainer.partitioner,
          ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
           "decoder_loss_weights"))]
    return score

  def evaluate(self, params: Any, step: int) -> Optional[Dict[str, Dict[str, float]]]:
    """`{task: {metric: value}}` on process 0 (None elsewhere)."""
    future, _ = self.evaluator.evaluate(
        compute_metrics=jax.process_index() == 0, step=int(step),
        predict_fn=self._predict_fn(params), score_fn=self._score_fn(params))
    result = future.result()
    if result is None:
      return None
    return {task: {k: _value(v) for k, v in values.items()} for task, values in result.items()}

  def close(self) -> None:
    self.evaluator.close()


def format_table(metrics: TaskMetrics, chance: Optional[Mapping[str, float]] = None,
                 title: str = "") -> str:
  """A plain-text table: task, metrics, score (and chance when known), then the average."""
  scores = task_scores(metrics)
  rows = []
  for task in sorted(metrics):
    values = ", ".join(f"{k} {v:.1f}" for k, v in sorted(metrics[task].items())
                       if _value(v) is not None)
    chance_text = f"{chance[task]:.1f}" if chance and task in chance else "-"
    score = f"{scores.get(task, float('nan')):.1f}"
    rows.append((base_task_name(task), values, score, chance_text))
  header = ("task", "metrics", "score", "chance")
  widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
  line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
  out = [title] if title else []
  out += [line(header), line(tuple("-" * w for w in widths))] + [line(r) for r in rows]
  if AVERAGE in scores:
    out.append(line(("average", "", f"{scores[AVERAGE]:.1f}", "")))
  return "\n".join(out)
