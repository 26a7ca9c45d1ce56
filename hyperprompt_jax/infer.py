# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""Inference launcher with t5x's command line: decode a split, write predictions as JSONL.

  python -m hyperprompt_jax.infer \
    --gin_file=models/t5_1_1/base.gin --gin_file=conditioning/hyperprompt_global.gin \
    --gin_file=runs/infer.gin \
    --gin.CHECKPOINT_PATH=\"/tmp/model\" --gin.INFER_OUTPUT_DIR=\"/tmp/model/infer\" \
    --gin.MIXTURE_OR_TASK_NAME=\"glue_v002_proportional\" \
    --gin.TASK_FEATURE_LENGTHS="{'inputs': 256, 'targets': 16}"

For every task of the mixture that has the split, writes
`INFER_OUTPUT_DIR/<task>-<split>-<step>.jsonl`, one line per example:
`{"index", "inputs", "prediction", "postprocessed", "targets" (when the split
has them)}`. Decoding is greedy with the autoregressive cache, batches sharded
along 'data'.
"""

from __future__ import annotations

from hyperprompt_jax import launch  # first: the command line quiets TensorFlow's start-up

if __name__ == "__main__":
  launch.quiet_tensorflow()

import os
import json
import sys
from typing import Any, Dict, List, Optional

import jax
import numpy as np
import seqio
import tensorflow as tf

from hyperprompt_jax import checkpoints as checkpoints_lib
from hyperprompt_jax import data as data_lib
from hyperprompt_jax import errors
from hyperprompt_jax import eval as eval_lib
from hyperprompt_jax import evaluation
from hyperprompt_jax import partitioning
from hyperprompt_jax import preflight
from hyperprompt_jax import run_dir
from hyperprompt_jax import trainer as trainer_lib


def _jsonable(value: Any) -> Any:
  if isinstance(value, bytes):
    return value.decode("utf-8", errors="replace")
  if isinstance(value, np.ndarray):
    return _jsonable(value.tolist())
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  if isinstance(value, np.generic):
    return value.item()
  return value


def infer(*,
          model: Any,
          dataset_cfg: data_lib.DatasetConfig,
          checkpoint_path: str,
          output_dir: str,
          partitioner: Optional[partitioning.Partitioner] = None,
          max_examples: Optional[int] = None) -> Dict[str, str]:
  """Writes the predictions of every task of `dataset_cfg`; returns `{task: jsonl path}`."""
  with launch.configuration_errors():
    if dataset_cfg.task_feature_lengths is None:
      raise errors.ConfigError("inference needs TASK_FEATURE_LENGTHS.")
    preflight.check_checkpoint_data(dataset_cfg, model, checkpoint_path)
    partitioner = partitioner or partitioning.Partitioner(num_partitions=1)
    trainer = trainer_lib.Trainer(
        model, None, partitioner,
        trainer_lib.batch_shapes(dataset_cfg.batch_size, dataset_cfg.task_feature_lengths))
    params = eval_lib.restore_params(checkpoint_path, trainer)
    tasks = [t for t in seqio.get_subtasks(
        data_lib.get_mixture_or_task(dataset_cfg.mixture_or_task_name))
             if dataset_cfg.split in t.splits]
    if not tasks:
      raise errors.ConfigError(f"no task of {dataset_cfg.mixture_or_task_name!r} has a "
                               f"{dataset_cfg.split!r} split.")
  step = checkpoints_lib.checkpoint_step(checkpoint_path)
  converter = model.FEATURE_CONVERTER_CLS(pack=False)
  written = {}
  for task in tasks:
    path = os.path.join(output_dir, f"{evaluation.base_task_name(task.name)}-"
                                    f"{dataset_cfg.split}-{step}.jsonl")
    written[task.name] = path
    _infer_task(task, dataset_cfg, converter, trainer, params, path, max_examples)
    print(f"{task.name}: predictions in {path}", flush=True)
  return written


def _infer_task(task: seqio.Task, cfg: data_lib.DatasetConfig, converter, trainer, params,
                path: str, max_examples: Optional[int]) -> None:
  lengths = dict(cfg.task_feature_lengths)
  ds = task.get_dataset(lengths, split=cfg.split, shuffle=False, num_epochs=1,
                        use_cached=cfg.use_cached, seed=cfg.seed)
  if max_examples is not None:
    ds = ds.take(max_examples)
  examples = list(ds.as_numpy_iterator())
  if not examples:
    return
  model_ds = converter(tf.data.Dataset.from_tensor_slices(
      {k: np.stack([e[k] for e in examples]) for k in ("inputs", "targets")}), lengths)
  fn = lambda batch: trainer.predict_batch(params, batch)[0]
  outputs = dict(evaluation.run_batched(
      model_ds.enumerate(), fn, cfg.batch_size, trainer.partitioner,
      ("encoder_input_tokens", "decoder_input_tokens")))
  vocab = task.output_features["targets"].vocabulary
  if jax.process_index() != 0:
    return
  rows = []
  for index, example in enumerate(examples):
    prediction = vocab.decode(np.asarray(outputs[index]).tolist())
    row = {"index": index,
           "inputs": _jsonable(example.get("inputs_pretokenized", example["inputs"])),
           "prediction": prediction,
           "postprocessed": _jsonable(task.postprocess_fn(prediction, example=example,
                                                          is_target=False))}
    if "targets_pretokenized" in example:
      row["targets"] = _jsonable(example["targets_pretokenized"])
    rows.append(json.dumps(row) + "\n")
  run_dir.write_text(path, "".join(rows))


def main(argv: Optional[List[str]] = None) -> int:
  return launch.main(infer, argv, description=__doc__)


if __name__ == "__main__":
  sys.exit(main())
