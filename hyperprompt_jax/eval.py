# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""Evaluation launcher with t5x's command line: seqio metrics of one or all checkpoints.

  python -m hyperprompt_jax.eval \
    --gin_file=models/t5_1_1/base.gin --gin_file=conditioning/hyperprompt_global.gin \
    --gin_file=runs/eval.gin \
    --gin.CHECKPOINT_PATH=\"/tmp/model\" --gin.EVAL_OUTPUT_DIR=\"/tmp/model/eval\" \
    --gin.MIXTURE_OR_TASK_NAME=\"glue_v002_proportional\"

CHECKPOINT_PATH is a MODEL_DIR, a `checkpoint_<step>` folder, a t5x checkpoint
or a converted Hugging Face folder. With `CHECKPOINT_STEPS='all'` every
checkpoint of a MODEL_DIR is evaluated and the best step of each task is
recorded (the paper's per-task checkpoint selection) in
`EVAL_OUTPUT_DIR/best_checkpoints.json`. Results: a table on the terminal,
`EVAL_OUTPUT_DIR/results_<step>.json`, seqio's TensorBoard summaries and
JSONL predictions.
"""

from __future__ import annotations

from hyperprompt_jax import launch  # first: the command line quiets TensorFlow's start-up

if __name__ == "__main__":
  launch.quiet_tensorflow()

import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Union

import jax
import seqio
import tensorflow as tf

from hyperprompt_jax import checkpoints as checkpoints_lib
from hyperprompt_jax import data as data_lib
from hyperprompt_jax import errors
from hyperprompt_jax import evaluation
from hyperprompt_jax import partitioning
from hyperprompt_jax import preflight
from hyperprompt_jax import run_dir
from hyperprompt_jax import trainer as trainer_lib


def checkpoint_paths(path: str, steps: Union[None, str, Sequence[int]]) -> List[str]:
  """The checkpoint folders to evaluate: `path` itself, or `all` / some steps of a MODEL_DIR."""
  if steps is None:
    return [path]
  found = {checkpoints_lib.checkpoint_step(os.path.join(path, name)): os.path.join(path, name)
           for name in tf.io.gfile.listdir(path)
           if name.rstrip("/").startswith(f"{run_dir.CHECKPOINT_PREFIX}_")
           and name.rstrip("/").split("_")[-1].isdigit()}
  if steps == "all":
    chosen = sorted(found)
  elif isinstance(steps, str):
    raise errors.ConfigError(
        f"CHECKPOINT_STEPS must be None, 'all' or a list of steps, got {steps!r}.")
  else:
    missing = sorted(set(int(s) for s in steps) - set(found))
    if missing:
      raise errors.ConfigError(
          f"no checkpoint for step(s) {missing} in {path} (has {sorted(found)}).")
    chosen = sorted(int(s) for s in steps)
  if not chosen:
    raise errors.ConfigError(f"{path} holds no {run_dir.CHECKPOINT_PREFIX}_<step> folder.")
  return [found[s].rstrip("/") for s in chosen]


def evaluate(*,
             model: Any,
             dataset_cfg: data_lib.DatasetConfig,
             checkpoint_path: str,
             output_dir: str,
             checkpoint_steps: Union[None, str, Sequence[int]] = None,
             partitioner: Optional[partitioning.Partitioner] = None,
             inference_evaluator_cls=seqio.Evaluator,
             chance_fn=None) -> Dict[int, Dict[str, Dict[str, float]]]:
  """Evaluates checkpoint(s) on `dataset_cfg`; returns `{step: {task: {metric: value}}}`."""
  with launch.configuration_errors():
    preflight.check_checkpoint_data(dataset_cfg, model, checkpoint_path)
    paths = checkpoint_paths(checkpoint_path, checkpoint_steps)
    partitioner = partitioner or partitioning.Partitioner(num_partitions=1)
    shapes = trainer_lib.batch_shapes(dataset_cfg.batch_size, {"inputs": 8, "targets": 8})
    trainer = trainer_lib.Trainer(model, None, partitioner, shapes)
    evaluator = evaluation.InferenceEvaluator(dataset_cfg, model, trainer, output_dir,
                                              evaluator_cls=inference_evaluator_cls)
  chance = None
  if chance_fn is not None:
    chance = {t: float(chance_fn(evaluation.base_task_name(t))) for t in evaluator.task_names}
  best = evaluation.BestCheckpoints(output_dir)
  results = {}
  for path in paths:
    with launch.configuration_errors():
      params = restore_params(path, trainer)
    step = checkpoints_lib.checkpoint_step(path)
    metrics = evaluator.evaluate(params, step)
    if metrics is None:
      continue
    results[step] = metrics
    best.update(step, metrics)
    print(evaluation.format_table(metrics, chance, title=f"{path} (step {step}):"), flush=True)
    _write_results(output_dir, step, path, metrics)
  if jax.process_index() == 0 and results:
    best.save()
    if len(results) > 1:
      print("Best step per task: " + ", ".join(
          f"{evaluation.base_task_name(t)} {v['step']} ({v['score']:.1f})"
          for t, v in sorted(best.best.items())), flush=True)
  evaluator.close()
  return results


def restore_params(path: str, trainer: trainer_lib.Trainer) -> Any:
  """Parameters of a checkpoint placed on the trainer's mesh."""
  abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                    trainer.abstract_params)
  params = checkpoints_lib.restore_initial_params(path, abstract, fallback_to_scratch=())
  return jax.device_put(params, trainer.params_shardings)


def _write_results(output_dir: str, step: int, path: str, metrics) -> None:
  if jax.process_index() != 0:
    return
  payload = {"step": step, "checkpoint": path, "metrics": metrics,
             "scores": evaluation.task_scores(metrics)}
  run_dir.write_json(os.path.join(output_dir, run_dir.eval_results(step)), payload)


def main(argv: Optional[List[str]] = None) -> int:
  return launch.main(evaluate, argv, description=__doc__)


if __name__ == "__main__":
  sys.exit(main())
