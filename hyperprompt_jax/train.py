# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""Training launcher with t5x's command line and gin macros.

  python -m hyperprompt_jax.train \
    --gin_file=models/t5_1_1/base.gin \
    --gin_file=conditioning/hyperprompt_global.gin \
    --gin_file=runs/finetune.gin \
    --gin.MODEL_DIR=\"/tmp/hyperprompt\" \
    --gin.MIXTURE_OR_TASK_NAME=\"glue_v002_proportional\" \
    --gin.INITIAL_CHECKPOINT_PATH=\"gs://t5-data/pretrained_models/t5x/t5_1_1_base/checkpoint_1000000\"

Macros: MODEL_DIR, MIXTURE_OR_TASK_NAME, MIXTURE_OR_TASK_MODULE,
TASK_FEATURE_LENGTHS, TRAIN_STEPS, BATCH_SIZE, DROPOUT_RATE,
INITIAL_CHECKPOINT_PATH, EVAL_PERIOD, RANDOM_SEED, USE_CACHED_TASKS (see
gin/runs/*.gin); flags: see `launch.py`. A run in a MODEL_DIR that already holds
checkpoints resumes from the latest one (parameters, optimizer state, step,
RNG and input position).

`train` lives in this module, which is `__main__` when run with `-m`, so gin
files bind it as `train_script.train` exactly as t5x's do.
"""

from __future__ import annotations

from hyperprompt_jax import launch  # first: the command line quiets TensorFlow's start-up

if __name__ == "__main__":
  launch.quiet_tensorflow()

import os
import dataclasses
import logging
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

import jax
import numpy as np
import seqio
import tensorflow as tf

from hyperprompt_jax import checkpoints as checkpoints_lib
from hyperprompt_jax import data as data_lib
from hyperprompt_jax import errors
from hyperprompt_jax import evaluation
from hyperprompt_jax import faults
from hyperprompt_jax import partitioning
from hyperprompt_jax import preflight
from hyperprompt_jax import reliability
from hyperprompt_jax import run_dir
from hyperprompt_jax import summaries
from hyperprompt_jax import task_extension
from hyperprompt_jax import trainer as trainer_lib


@dataclasses.dataclass
class TrainResult:
  """What `train` returns (used by tests and `make demo`)."""
  step: int
  train_loss: Optional[float]
  eval_metrics: Optional[Dict[str, Dict[str, float]]]
  scores: Optional[Dict[str, float]]
  state: Any
  seconds: float


@dataclasses.dataclass
class _Run:
  """Everything one training run has built (one object, so each concern is a function)."""
  model: Any
  model_dir: str
  partitioner: partitioning.Partitioner
  trainer: trainer_lib.Trainer
  train_cfg: data_lib.DatasetConfig
  layout: partitioning.DataLayout
  seed: int
  checkpoints: checkpoints_lib.CheckpointManager
  best: evaluation.BestCheckpoints
  history: summaries.MetricsHistory
  writer: Any
  task_table: data_lib.TaskTable = ()
  iterator: Optional[data_lib.DatasetIterator] = None
  evaluator: Optional[evaluation.InferenceEvaluator] = None
  train_eval_ds: Any = None
  guards: Optional[reliability.RunGuards] = None
  save_run_dir: Optional[Callable[[], None]] = None
  train_eval_writer: Any = None


# ---------------------------------------------------------------------------
# Set-up: one function per concern.
# ---------------------------------------------------------------------------


def _resolve_seed(random_seed: Optional[int], saved_seed: Optional[int]) -> int:
  """The run's seed: a resumed run keeps its saved seed; otherwise RANDOM_SEED or random."""
  if saved_seed is not None:
    if random_seed is not None and int(random_seed) != int(saved_seed):
      logging.warning("RANDOM_SEED=%s ignored: resuming a run that used seed %s.",
                      random_seed, saved_seed)
    return int(saved_seed)
  if random_seed is not None:
    return int(random_seed)
  seed = np.int32(np.random.SeedSequence().generate_state(1)[0] % (2**31 - 1))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    seed = multihost_utils.broadcast_one_to_all(seed)
  return int(seed)


def _kept_checkpoint(run: "_Run") -> str:
  latest = run.checkpoints.latest_step()
  if latest is None:
    return "; MODEL_DIR holds no checkpoint yet"
  return f"; MODEL_DIR keeps {run.checkpoints.step_dir(latest)} (the latest complete checkpoint)"


def _check_steps(total_steps: int, eval_period: Optional[int], log_period: int) -> None:
  if total_steps < 0:
    raise errors.ConfigError(f"TRAIN_STEPS must be >= 0, got {total_steps}.")
  if eval_period is not None and eval_period < 1:
    raise errors.ConfigError(f"EVAL_PERIOD must be >= 1 or None, got {eval_period}.")
  if log_period < 1:
    raise errors.ConfigError(f"log_period must be >= 1, got {log_period}.")


def _build_iterator(run: _Run, feature_converter_cls) -> data_lib.DatasetIterator:
  ds = data_lib.get_dataset(run.train_cfg, run.layout.shard_id, run.layout.num_shards,
                            feature_converter_cls, num_epochs=None, seed=run.seed)
  return data_lib.DatasetIterator(ds)


def _restore_or_initialize(run: _Run, initial_checkpoint_path: Optional[str],
                           extend_tasks: bool = False) -> Any:
  """Latest checkpoint in MODEL_DIR, else INITIAL_CHECKPOINT_PATH, else fresh parameters.

  With `extend_tasks`, INITIAL_CHECKPOINT_PATH may have fewer tasks than the model
  (`task_extension.py`: the trained tasks restored, the new ones initialised).
  """
  latest = run.checkpoints.latest_step()
  rng = jax.random.PRNGKey(run.seed)
  if latest is not None:
    preflight.check_checkpoint_shapes(run.checkpoints.step_dir(latest),
                                      checkpoints_lib.state_tree(run.trainer.abstract_state))
    state, _ = run.checkpoints.restore(latest, run.trainer.abstract_state, run.iterator)
    print(f"Resumed from {run.checkpoints.step_dir(latest)} (step {latest}, input batch "
          f"{run.iterator.position}).", flush=True)
    return state
  if initial_checkpoint_path:
    abstract_params = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), run.trainer.abstract_state.params)
    init_fn = jax.jit(run.trainer.init_params)
    if extend_tasks:
      params = task_extension.restore_extending_tasks(
          initial_checkpoint_path, abstract_params, params_axes=run.trainer.params_axes,
          rng=rng, init_fn=init_fn, task_table=run.task_table)
    else:
      params = checkpoints_lib.restore_initial_params(initial_checkpoint_path, abstract_params,
                                                      rng=rng, init_fn=init_fn)
    step = checkpoints_lib.checkpoint_step(initial_checkpoint_path)
    print(f"Initialised from {initial_checkpoint_path} (step {step}).", flush=True)
    return run.trainer.state_from_params(params, rng, step=step)
  if extend_tasks:
    raise errors.ConfigError("extend_tasks=True needs INITIAL_CHECKPOINT_PATH (the trained model).")
  return run.trainer.init_state(rng)


def _build_evaluators(run: _Run, model: Any, infer_eval_cfg, train_eval_cfg, eval_steps: int,
                      inference_evaluator_cls) -> None:
  if infer_eval_cfg is not None:
    run.evaluator = evaluation.InferenceEvaluator(
        infer_eval_cfg, model, run.trainer, os.path.join(run.model_dir, run_dir.INFERENCE_EVAL),
        evaluator_cls=inference_evaluator_cls)
  if train_eval_cfg is not None and eval_steps:
    layout = run.partitioner.get_data_layout(train_eval_cfg.batch_size)
    ds = data_lib.get_dataset(train_eval_cfg, layout.shard_id, layout.num_shards,
                              model.FEATURE_CONVERTER_CLS, num_epochs=None, seed=run.seed)
    run.train_eval_ds = (ds.take(eval_steps), train_eval_cfg.batch_size)


# ---------------------------------------------------------------------------
# The loop's concerns.
# ---------------------------------------------------------------------------


def _next_batch(run: _Run):
  """The next global batch (this host's rows, placed along 'data') and its token count."""
  local = next(run.iterator)
  return run.partitioner.shard_batch(local, run.train_cfg.batch_size), data_lib.batch_token_count(
      local)


def _summarize_train(metrics_list: List[Mapping[str, Any]]) -> Dict[str, float]:
  """Host-side summary of the per-step metrics since the last report."""
  fetched = jax.device_get(metrics_list)
  loss = sum(float(m["loss"]) for m in fetched)
  z_loss = sum(float(m.get("z_loss", 0.0)) for m in fetched)
  weight = sum(float(m["weight_sum"]) for m in fetched)
  out = {"loss": loss / len(fetched), "loss_per_token": (loss - z_loss) / max(weight, 1.0),
         "z_loss": z_loss / len(fetched),
         "accuracy": float(np.mean([float(m["accuracy"]) for m in fetched])),
         "grad_norm": float(fetched[-1]["grad_norm"])}
  if "learning_rate" in fetched[-1]:
    out["learning_rate"] = float(fetched[-1]["learning_rate"])
  return out


def _log_train(run: _Run, step: int, metrics_list, progress: summaries.Progress
               ) -> Dict[str, float]:
  run.guards.check()  # raises at the first non-finite update (skip mode: reports it)
  scalars = _summarize_train(metrics_list)
  scalars.update(progress.report(step, scalars))
  run.writer.write_scalars(step, scalars)
  run.history.add_train(step, scalars["loss_per_token"])
  return scalars


def _save_checkpoint(run: _Run, step: int, state: Any, force: bool = False) -> bool:
  if force or step % run.checkpoints.config.period == 0:
    run.guards.check(step, state.params)  # a non-finite state is never written
  saved = run.checkpoints.save(step, state, run.iterator, metadata={"seed": run.seed},
                               force=force)
  if saved:
    run.history.save()
  return saved


def _train_eval(run: _Run, step: int, params: Any) -> Optional[Dict[str, float]]:
  """Teacher-forced loss / token accuracy on the train_eval split (t5x's `train_eval`)."""
  if run.train_eval_ds is None:
    return None
  ds, batch_size = run.train_eval_ds
  totals: Dict[str, float] = {}
  count = 0
  for local in ds.as_numpy_iterator():
    metrics = jax.device_get(run.trainer.eval_step(
        params, run.partitioner.shard_batch(local, batch_size)))
    for k, v in metrics.items():
      totals[k] = totals.get(k, 0.0) + float(v)
    count += 1
  if not count:
    return None
  scalars = {"loss_per_token": (totals["loss"] - totals.get("z_loss", 0.0)) /
                               max(totals["weight_sum"], 1.0),
             "accuracy": totals["accuracy"] / count}
  if run.train_eval_writer is None:
    run.train_eval_writer = summaries.create_writer(run.model_dir, run_dir.TRAIN_EVAL_SUMMARIES)
  run.train_eval_writer.write_scalars(step, scalars)
  return scalars


def _check_above_chance(metrics, chance: Optional[Mapping[str, float]], margin: float) -> None:
  """Raises launch.CheckFailed unless every task's score beats its chance score by `margin`."""
  if not metrics or not chance:
    raise launch.CheckFailed("require_above_chance needs an inference evaluation and chance_fn.")
  scores = evaluation.task_scores(metrics)
  failing = {t: (round(scores[t], 1), round(chance[t], 1)) for t in metrics
             if scores.get(t, float("-inf")) < chance[t] + margin}
  if failing:
    raise launch.CheckFailed(f"not better than chance + {margin} points on {failing} "
                       "(task: (score, chance)).")
  print(f"Better than chance by more than {margin} points on all {len(metrics)} tasks.",
        flush=True)


def _infer_eval(run: _Run, step: int, params: Any, chance: Optional[Mapping[str, float]]
                ) -> Optional[Dict[str, Dict[str, float]]]:
  """seqio evaluation; updates the best step per task, the history and the plot."""
  if run.evaluator is None:
    return None
  start = time.time()
  metrics = run.evaluator.evaluate(params, step)
  if metrics is None:  # not process 0
    return None
  scores = run.best.update(step, metrics)
  run.best.save()
  run.checkpoints.preserve_steps.clear()
  run.checkpoints.preserve_steps.update(run.best.steps)
  run.history.add_eval(step, scores)
  run.history.save()
  run.history.plot(title=f"{run.train_cfg.mixture_or_task_name} - {run.model_dir}")
  if evaluation.AVERAGE in scores:
    run.writer.write_scalars(step, {"eval/average_score": scores[evaluation.AVERAGE]})
  print(evaluation.format_table(metrics, chance, title=f"Evaluation at step {step} "
                                f"({time.time() - start:.1f}s):"), flush=True)
  return metrics


def _train_loop(run: _Run, state: Any, step: int, total_steps: int,
                eval_period: Optional[int], log_period: int, eval_first: bool,
                chance: Optional[Mapping[str, float]]):
  """Steps from `step` to `total_steps`: train, log, checkpoint, evaluate.

  Returns `(state, step, last eval metrics, last train scalars)`.
  """
  eval_metrics, train_scalars = None, None
  if eval_first:
    eval_metrics = _infer_eval(run, step, state.params, chance)
  progress = summaries.Progress(total_steps, step)
  pending: List[Any] = []
  # Nothing to train (e.g. a finished run restarted): nothing to evaluate again either.
  last_eval_step = step if (eval_first or step >= total_steps) else None
  run.guards.start()
  while step < total_steps:
    batch, tokens = _next_batch(run)
    state, metrics = run.trainer.train_step(state, batch)
    step += 1
    faults.pause_point("train_step", step)  # fault-injection tests only
    preempted = run.guards.after_step(step, metrics, last=step >= total_steps)
    pending.append(metrics)
    progress.add_tokens(tokens)
    if step % log_period == 0 or step == total_steps:
      train_scalars = _log_train(run, step, pending, progress)
      pending = []
    is_eval_step = eval_period is not None and step % eval_period == 0
    _save_checkpoint(run, step, state, force=is_eval_step or step == total_steps or preempted)
    if preempted:  # SIGTERM: the state of this step is saved; stop (exit status 143)
      _finish(run)
      raise reliability.Preempted(step, run.checkpoints.step_dir(step))
    if is_eval_step:
      _train_eval(run, step, state.params)
      eval_metrics = _infer_eval(run, step, state.params, chance)
      last_eval_step = step
  _save_checkpoint(run, step, state, force=True)  # the final state, always
  if last_eval_step != step and (run.evaluator is not None or run.train_eval_ds is not None):
    _train_eval(run, step, state.params)
    eval_metrics = _infer_eval(run, step, state.params, chance)
  return state, step, eval_metrics, train_scalars


# ---------------------------------------------------------------------------
# The launcher.
# ---------------------------------------------------------------------------


def train(*,
          model: Any,
          train_dataset_cfg: data_lib.DatasetConfig,
          model_dir: str,
          total_steps: int,
          train_eval_dataset_cfg: Optional[data_lib.DatasetConfig] = None,
          infer_eval_dataset_cfg: Optional[data_lib.DatasetConfig] = None,
          checkpoint_cfg: Optional[checkpoints_lib.CheckpointConfig] = None,
          partitioner: Optional[partitioning.Partitioner] = None,
          trainer_cls=trainer_lib.Trainer,
          relative_steps: Optional[int] = None,
          eval_period: Optional[int] = None,
          eval_steps: int = 20,
          log_period: int = 100,
          random_seed: Optional[int] = None,
          initial_checkpoint_path: Optional[str] = None,
          inference_evaluator_cls=seqio.Evaluator,
          run_eval_before_training: bool = False,
          chance_fn: Optional[Callable[[str], float]] = None,
          require_above_chance: Optional[float] = None,
          extend_tasks: bool = False,
          reliability_cfg: Optional[reliability.ReliabilityConfig] = None) -> TrainResult:
  """Trains `model` on a seqio mixture; t5x's `train` arguments (see gin/runs/).

  Args:
    model: `models.EncoderDecoderModel` with `optimizer_def` (OPTIMIZER).
    train_dataset_cfg: `train/DatasetConfig` (BATCH_SIZE, TASK_FEATURE_LENGTHS).
    model_dir: MODEL_DIR (checkpoints, summaries, task table, plot).
    total_steps: TRAIN_STEPS, counted from step 0 (a restored t5x checkpoint's
      steps included, as in t5x).
    train_eval_dataset_cfg: `train_eval/DatasetConfig` for teacher-forced eval.
    infer_eval_dataset_cfg: `infer_eval/DatasetConfig` for seqio evaluation.
    checkpoint_cfg: `CheckpointConfig` (period, keep, dataset state).
    partitioner: mesh and axis rules (default: all devices on 'data').
    trainer_cls: the `Trainer` class.
    relative_steps: if set, train this many steps past the start step instead.
    eval_period: evaluate every EVAL_PERIOD steps and at the end (None: at the end).
    eval_steps: batches of the train_eval split per evaluation.
    log_period: steps between progress lines and train summaries.
    random_seed: RANDOM_SEED (None: drawn, broadcast to all hosts, saved).
    initial_checkpoint_path: INITIAL_CHECKPOINT_PATH (t5x / ours / converted HF),
      used when MODEL_DIR has no checkpoint.
    inference_evaluator_cls: `seqio.Evaluator` or a subclass.
    run_eval_before_training: evaluate the initial parameters too.
    chance_fn: `task name -> score of the best constant guess`, shown in the
      evaluation tables (task names without the `_task_index_<k>` suffix).
    require_above_chance: if set (points), fail (after saving everything) unless
      every task's final score beats chance by this margin (`make demo`'s check).
    extend_tasks: restore INITIAL_CHECKPOINT_PATH into a model with more tasks
      (gin/runs/add_tasks.gin; see task_extension.py).
    reliability_cfg: fault handling (`reliability.ReliabilityConfig`: a changed
      model config or task table in MODEL_DIR, skipping non-finite updates,
      SIGTERM, truncation counts).
  """
  start_time = time.time()
  chance = None
  checkpoint_cfg = checkpoint_cfg or checkpoints_lib.CheckpointConfig()
  reliability_cfg = reliability_cfg or reliability.ReliabilityConfig()
  with launch.configuration_errors():
    run = _setup(model, train_dataset_cfg, train_eval_dataset_cfg, infer_eval_dataset_cfg,
                 checkpoint_cfg, partitioner, trainer_cls, model_dir, total_steps, eval_period,
                 log_period, random_seed, reliability_cfg)
    state = _restore_or_initialize(run, initial_checkpoint_path, extend_tasks)
    run.save_run_dir()  # the config, task table and truncation counts, once the run starts
    first_step = int(jax.device_get(state.step))
    if relative_steps is not None:
      total_steps = first_step + int(relative_steps)
    run.history.truncate(first_step)
    _build_evaluators(run, model, infer_eval_dataset_cfg, train_eval_dataset_cfg, eval_steps,
                      inference_evaluator_cls)
  if chance_fn is not None and run.evaluator is not None:
    chance = {t: float(chance_fn(evaluation.base_task_name(t))) for t in run.evaluator.task_names}
  print(f"Training {first_step} -> {total_steps} steps; batch {train_dataset_cfg.batch_size} "
        f"on a {dict(run.partitioner.mesh.shape)} mesh; checkpoints and summaries in "
        f"{run.model_dir}", flush=True)

  state, step, eval_metrics, train_scalars = _train_loop(
      run, state, first_step, total_steps, eval_period, log_period, run_eval_before_training,
      chance)
  _finish(run)
  seconds = time.time() - start_time
  print(f"Done: step {step} in {seconds:.0f}s; {run.model_dir} holds the checkpoints, "
        f"TensorBoard summaries (train/, inference_eval/) and {run_dir.METRICS_PLOT}.",
        flush=True)
  scores = evaluation.task_scores(eval_metrics) if eval_metrics else None
  if require_above_chance is not None:
    _check_above_chance(eval_metrics, chance, require_above_chance)
  return TrainResult(step=step, train_loss=(train_scalars or {}).get("loss_per_token"),
                     eval_metrics=eval_metrics, scores=scores, state=state, seconds=seconds)


def _setup(model, train_cfg, train_eval_cfg, infer_eval_cfg, checkpoint_cfg, partitioner,
           trainer_cls, model_dir, total_steps, eval_period, log_period, random_seed,
           reliability_cfg) -> _Run:
  """Validates the configuration and builds everything the loop needs."""
  _check_steps(total_steps, eval_period, log_period)
  if not model_dir:
    raise errors.ConfigError("MODEL_DIR is empty.")
  model_dir = run_dir.absolute_path(model_dir)
  preflight.check_writable(model_dir)
  tf.io.gfile.makedirs(model_dir)
  cfgs = [c for c in (train_cfg, train_eval_cfg, infer_eval_cfg) if c is not None]
  table, save_run_dir = preflight.check_run(model, model_dir, cfgs, reliability_cfg)
  partitioner = partitioner or partitioning.Partitioner(num_partitions=1)
  layout = partitioner.get_data_layout(train_cfg.batch_size)
  if train_cfg.task_feature_lengths is None:
    raise errors.ConfigError("train/DatasetConfig.task_feature_lengths (TASK_FEATURE_LENGTHS) is "
                             "required.")
  trainer = trainer_cls(model, model.optimizer_def, partitioner,
                        trainer_lib.batch_shapes(train_cfg.batch_size,
                                                 train_cfg.task_feature_lengths),
                        skip_nonfinite_steps=reliability_cfg.skip_nonfinite_steps)
  best = evaluation.BestCheckpoints(model_dir)
  manager = checkpoints_lib.CheckpointManager(model_dir, checkpoint_cfg,
                                              preserve_steps=set(best.steps))
  latest = manager.latest_step()
  saved_seed = manager.read_metadata(latest).get("seed") if latest is not None else None
  run = _Run(model=model, model_dir=model_dir, partitioner=partitioner, trainer=trainer,
             train_cfg=train_cfg, layout=layout, seed=_resolve_seed(random_seed, saved_seed),
             checkpoints=manager, best=best, history=summaries.MetricsHistory(model_dir),
             writer=summaries.create_writer(model_dir, run_dir.TRAIN_SUMMARIES), task_table=table)
  run.iterator = _build_iterator(run, model.FEATURE_CONVERTER_CLS)
  run.save_run_dir = save_run_dir
  run.guards = reliability.RunGuards(reliability_cfg, trainer.abstract_params,
                                     before_stop=manager.wait_until_finished,
                                     kept=lambda: _kept_checkpoint(run))
  return run


def _finish(run: _Run) -> None:
  if run.guards is not None:
    run.guards.stop()
  run.checkpoints.close()
  run.history.save()
  run.history.plot(title=f"{run.train_cfg.mixture_or_task_name} - {run.model_dir}")
  run.writer.close()
  if run.train_eval_writer is not None:
    run.train_eval_writer.close()
  if run.evaluator is not None:
    run.evaluator.close()


def main(argv: Optional[List[str]] = None) -> int:
  return launch.main(train, argv, description=__doc__)


if __name__ == "__main__":
  sys.exit(main())
