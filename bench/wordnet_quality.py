# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""WordNet quality comparison (issue 11): every method fine-tuned from our pretrained backbone.

  make quality                       # WordNet set-up + pretraining + this comparison
  python -m bench.wordnet_quality --checkpoint=/tmp/wordnet_backbone/checkpoint_1500

For every method (vanilla multi-task T5, HyperPrompt Share / Sep / Global,
Prefix-Tuning, Prompt-Tuning, Adapters, HyperFormer++), regime (`all`: every
parameter trained, the paper's main setting; `frozen`: only the task-conditioning
parameters, its ablation; vanilla has nothing to train there) and seed:

1. the model is configured from the same gin files as the launcher
   (`models/t5_1_1/base.gin`, `conditioning/<method>.gin`, `bench/wordnet_quality.gin`),
   and the pretrained backbone is restored with `checkpoints.restore_initial_params`
   (the launcher's INITIAL_CHECKPOINT_PATH path: the conditioning parameters the
   backbone lacks are initialised fresh from the seed, `fallback_to_scratch`);
2. the validation loss at step 0 (teacher-forced, every validation example of the
   five tasks) is measured: the initialisation check, against the backbone alone
   (vanilla);
3. it is fine-tuned on `wordnet_lexical_v1` with the trainer's jitted train step and
   evaluated with seqio every `--eval_period` steps (greedy decoding, the tasks'
   metrics); the best step per task is kept, as the paper does.

One process runs everything, so the compiled programs of a method are reused across
its seeds. The HyperPrompt models of seed 0 (all parameters trained) are saved as
t5x-layout checkpoints for `python -m hyperprompt_jax.attention_analysis`. Writes
`--output`.md / .json: per task and average, mean ± std over seeds, and each
method's paired difference to vanilla (all parameters trained) with a 95% t-interval
over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import re
import shlex
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import gin
import jax
import numpy as np
import scipy.stats
import seqio

from bench import quality
from hyperprompt_jax import checkpoints as checkpoints_lib
from hyperprompt_jax import data as data_lib
from hyperprompt_jax import evaluation
from hyperprompt_jax import gin_utils
from hyperprompt_jax import launch
from hyperprompt_jax import train as train_lib
from hyperprompt_jax import trainer as trainer_lib

REPO = quality.REPO
MODEL_GIN = quality.MODEL_GIN
QUALITY_GIN = "bench/wordnet_quality.gin"
PRETRAIN_GIN = "runs/wordnet_pretrain.gin"
DEFAULT_CHECKPOINT = os.path.join(tempfile.gettempdir(), "hyperprompt_wordnet_backbone",
                                  "checkpoint_3000")  # make quality's
METHODS = quality.METHODS
METHOD_KEYS = quality.METHOD_KEYS
LABELS = {k: label for k, label, _ in METHODS}
REGIMES = {"all": ("all parameters trained", "all"),
           "frozen": ("backbone frozen (task-conditioning parameters only)", "conditioning")}
HYPERPROMPT = ("hyperprompt_share", "hyperprompt_sep", "hyperprompt_global")
REFERENCE = ("all", "vanilla")
# The configuration of `make quality`, sized from the CPU time of this session's smaller
# runs (bench/wordnet_quality.md says which configuration produced the committed figures).
FULL = dict(steps=300, eval_period=100, batch_size=32, eval_examples=100, seeds="0,1,2")


def gin_args(method: str, regime: str, batch_size: int, extra: Sequence[str] = ()) -> List[str]:
  gin_file = dict((k, g) for k, _, g in METHODS)[method]
  return ([f"--gin_file={MODEL_GIN}", f"--gin_file={gin_file}", f"--gin_file={QUALITY_GIN}",
           f"--gin.optimizers.create_optimizer.trainable='{REGIMES[regime][1]}'",
           f"--gin.BATCH_SIZE={batch_size}"] + [f"--gin.{b}" for b in extra])


@dataclasses.dataclass
class Setup:
  """A configured method: model, trainer, datasets and seqio evaluator (reused by seeds)."""
  method: str
  regime: str
  model: Any
  trainer: Any
  partitioner: Any
  train_cfg: data_lib.DatasetConfig
  loss_cfg: data_lib.DatasetConfig
  evaluator: Optional[evaluation.InferenceEvaluator]


def _query(name: str):
  value = gin.query_parameter(name)
  return value.scoped_configurable_fn() if isinstance(value, gin.config.ConfigurableReference) else value


def configure(method: str, regime: str, checkpoint: str, batch_size: int,
              eval_examples: Optional[int], extra: Sequence[str] = (),
              with_evaluator: bool = True) -> Setup:
  """Parses the launcher's gin files for (method, regime) and builds what the runs need."""
  args = launch.parse_args(gin_args(method, regime, batch_size, extra) + [
      f'--gin.INITIAL_CHECKPOINT_PATH="{checkpoint}"', '--gin.MODEL_DIR="unused"'])
  launch.configurable_entry_point(train_lib.train)  # gin files bind train_script.train
  with gin.unlock_config():
    gin.clear_config()
    gin_utils.parse_gin(args.gin_file, args.gin_bindings, args.gin_search_paths)
  model = _query("%MODEL")
  train_cfg = _query("__main__.train.train_dataset_cfg")
  loss_cfg = _query("__main__.train.train_eval_dataset_cfg")
  eval_cfg = _query("__main__.train.infer_eval_dataset_cfg")
  partitioner = _query("__main__.train.partitioner")
  data_lib.import_modules(train_cfg.module)
  trainer = trainer_lib.Trainer(model, model.optimizer_def, partitioner,
                                trainer_lib.batch_shapes(train_cfg.batch_size,
                                                         train_cfg.task_feature_lengths))
  evaluator = None
  if with_evaluator:
    evaluator = evaluation.InferenceEvaluator(
        eval_cfg, model, trainer, log_dir=None,
        evaluator_cls=functools.partial(seqio.Evaluator, num_examples=eval_examples))
  return Setup(method, regime, model, trainer, partitioner, train_cfg, loss_cfg, evaluator)


def restore(setup: Setup, checkpoint: str, seed: int):
  """The launcher's INITIAL_CHECKPOINT_PATH restore: backbone + fresh conditioning params."""
  abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                    setup.trainer.abstract_state.params)
  rng = jax.random.PRNGKey(seed)
  params = checkpoints_lib.restore_initial_params(
      checkpoint, abstract, rng=rng, init_fn=jax.jit(setup.trainer.init_params))
  return setup.trainer.state_from_params(params, rng, step=0)


_LOSS_BATCHES: Dict[tuple, tuple] = {}


def _loss_batches(cfg: data_lib.DatasetConfig, converter_cls,
                  per_task: Optional[int] = None) -> tuple:
  """The first `per_task` (None: every) validation examples of each task, in fixed batches."""
  key = (cfg.mixture_or_task_name, cfg.split, cfg.batch_size,
         tuple(sorted(cfg.task_feature_lengths.items())), per_task)
  if key not in _LOSS_BATCHES:
    mixture = data_lib.get_mixture_or_task(cfg.mixture_or_task_name)
    batches = []
    for task in seqio.get_subtasks(mixture):
      ds = seqio.get_dataset(
          task.name, task_feature_lengths=dict(cfg.task_feature_lengths),
          feature_converter=data_lib.feature_converter(converter_cls, False),
          dataset_split=cfg.split, shuffle=False, num_epochs=1, batch_size=None)
      batches += list(ds.take(-1 if per_task is None else per_task).batch(
          cfg.batch_size).as_numpy_iterator())
    _LOSS_BATCHES[key] = tuple(batches)
  return _LOSS_BATCHES[key]


def validation_loss(setup: Setup, params, per_task: Optional[int] = None) -> float:
  """Teacher-forced loss per target token on the validation examples (step-0 check)."""
  loss = z_loss = weight = 0.0
  for local in _loss_batches(setup.loss_cfg, setup.model.FEATURE_CONVERTER_CLS, per_task):
    rows = local["encoder_input_tokens"].shape[0]
    if rows < setup.loss_cfg.batch_size:  # pad the last batch with all-zero rows
      local = {k: np.concatenate([v, np.zeros((setup.loss_cfg.batch_size - rows,) + v.shape[1:],
                                              v.dtype)]) for k, v in local.items()}
    m = jax.device_get(setup.trainer.eval_step(params, setup.partitioner.shard_batch(
        local, setup.loss_cfg.batch_size)))
    loss += float(m["loss"])
    z_loss += float(m.get("z_loss", 0.0))
    weight += float(m["weight_sum"])
  return (loss - z_loss) / max(weight, 1.0)


def run_seed(setup: Setup, checkpoint: str, seed: int, steps: int, eval_period: int,
             save_dir: Optional[str] = None, loss_examples: Optional[int] = None,
             init_check: bool = True) -> Dict[str, Any]:
  """Restores, measures the step-0 loss, fine-tunes and evaluates one seed."""
  start = time.time()
  state = restore(setup, checkpoint, seed)
  init_loss = validation_loss(setup, state.params, loss_examples) if init_check else None
  ds = data_lib.get_dataset(setup.train_cfg, 0, 1, setup.model.FEATURE_CONVERTER_CLS,
                            num_epochs=None, seed=seed)
  iterator = ds.as_numpy_iterator()
  evals, losses = {}, []
  for step in range(1, steps + 1):
    batch = setup.partitioner.shard_batch(next(iterator), setup.train_cfg.batch_size)
    state, metrics = setup.trainer.train_step(state, batch)
    if step % eval_period == 0 or step == steps:
      losses.append((step, float(jax.device_get(metrics["loss"])) /
                     max(float(jax.device_get(metrics["weight_sum"])), 1.0)))
      if setup.evaluator is not None:
        evals[step] = quality.task_scores(setup.evaluator.evaluate(state.params, step))
        print(f"    step {step}: " + ", ".join(f"{_short(t)} {s:.1f}"
                                               for t, s in sorted(evals[step].items())),
              flush=True)
  tasks = sorted(next(iter(evals.values()))) if evals else []
  best = {t: max(e[t] for e in evals.values()) for t in tasks}
  best_step = {t: max(evals, key=lambda s: (evals[s][t], -s)) for t in tasks}
  if save_dir:
    manager = checkpoints_lib.CheckpointManager(save_dir, checkpoints_lib.CheckpointConfig(
        period=steps, keep=1, save_dataset=False, async_save=False))
    manager.save(steps, state, None, metadata={"seed": seed}, force=True)
    manager.close()
  return {"method": setup.method, "regime": setup.regime, "seed": seed,
          "init_validation_loss": init_loss,
          "evals": {str(s): e for s, e in evals.items()}, "best": best,
          "best_step": best_step,
          "average": float(np.mean(list(best.values()))) if best else float("nan"),
          "train_losses": losses, "params": quality.param_counts(jax.device_get(state.params)),
          "seconds": time.time() - start}


def _short(task: str) -> str:
  return re.sub(r"_v\d+$", "", task.replace("wordnet_", ""))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Dict[str, float]:
  """Mean, std (n-1) and the t-interval of the mean (scipy.stats.t) of `values`."""
  values = np.asarray(values, np.float64)
  mean = float(values.mean())
  if len(values) < 2:
    return {"mean": mean, "std": 0.0, "low": float("nan"), "high": float("nan"), "n": len(values)}
  std = float(values.std(ddof=1))
  sem = std / np.sqrt(len(values))
  if sem == 0:
    low = high = mean
  else:
    low, high = scipy.stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
  return {"mean": mean, "std": std, "low": float(low), "high": float(high), "n": len(values)}


def summarize(runs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """Per regime and method: per task / average best scores over seeds, paired diffs, init."""
  out: Dict[str, Any] = {}
  ref = {r["seed"]: r for r in runs if (r["regime"], r["method"]) == REFERENCE}
  for regime in REGIMES:
    for method in METHOD_KEYS:
      mine = sorted((r for r in runs if r["regime"] == regime and r["method"] == method),
                    key=lambda r: r["seed"])
      if not mine:
        continue
      tasks = sorted(mine[0]["best"])
      scores = {t: t_interval([r["best"][t] for r in mine]) for t in tasks}
      scores["average"] = t_interval([r["average"] for r in mine])
      paired = {}
      for t in tasks + ["average"]:
        diffs = [(r["average"] if t == "average" else r["best"][t]) -
                 (ref[r["seed"]]["average"] if t == "average" else ref[r["seed"]]["best"][t])
                 for r in mine if r["seed"] in ref]
        if diffs and (regime, method) != REFERENCE:
          paired[t] = t_interval(diffs)
      out[f"{regime}/{method}"] = {
          "regime": regime, "method": method, "seeds": [r["seed"] for r in mine],
          "scores": scores, "paired_vs_vanilla": paired, "params": mine[0]["params"],
          "init_validation_loss": t_interval([r["init_validation_loss"] for r in mine])
                                  if mine[0]["init_validation_loss"] is not None else None,
          "seconds_per_run": float(np.mean([r["seconds"] for r in mine]))}
  return out


def init_table(summary: Dict[str, Any]) -> List[str]:
  base = summary.get("all/vanilla")
  if base is None:
    return []
  b = base["init_validation_loss"]["mean"]
  lines = ["| method | step-0 validation loss (mean over seeds) | vs backbone alone |",
           "|---|---:|---:|",
           f"| backbone alone (vanilla) | {b:.4f} | |"]
  for method in METHOD_KEYS[1:]:
    s = summary.get(f"all/{method}")
    if s and s["init_validation_loss"]:
      v = s["init_validation_loss"]
      lines.append(f"| {LABELS[method]} | {v['mean']:.4f} (seeds {v['mean'] - v['std']:.4f}"
                   f"..{v['mean'] + v['std']:.4f} ± 1 std) | {100 * (v['mean'] / b - 1):+.2f}% |")
  return lines


def markdown(summary: Dict[str, Any], meta: Dict[str, Any]) -> str:
  from hyperprompt_tasks import wordnet  # pylint: disable=g-import-not-at-top
  # The tasks that ran (either vocabulary's names), in the mixture's order.
  tasks = sorted({t for s in summary.values() for t in s["scores"] if t != "average"},
                 key=lambda t: (wordnet.KINDS.index(wordnet.kind_of(t)), t))
  mixture = wordnet.mixture_name(version=wordnet.version_of(tasks[0]) if tasks else 1)
  lines = [
      "# WordNet quality comparison (issue 11)", "",
      f"Command: `{meta['command']}`, {meta['date']}, {meta['machine']}; "
      f"{meta['num_runs']} fine-tuning runs, {meta['wall_minutes']:.0f} min; pretraining "
      f"{meta.get('pretrain_note', '(see docs/wordnet.md)')}.", "",
      f"Backbone: `{meta['checkpoint']}` (span corruption on WordNet glosses, "
      f"runs/wordnet_pretrain.gin). Fine-tuning on `{mixture}` "
      f"(bench/wordnet_quality.gin): {meta['steps']} steps of batch {meta['batch_size']}, "
      "Adafactor, constant learning rate (the gin file's LEARNING_RATE"
      + (f"; extra bindings {', '.join(meta['gin'])}" if meta.get("gin") else "")
      + f"), evaluated every {meta['eval_period']} steps on "
      + (f"the first {meta['eval_examples']}" if meta['eval_examples'] else "all")
      + " validation examples of each task (greedy decoding, accuracy %); **best step per "
      f"task** (the paper's protocol), mean ± std over seeds {meta['seeds']}. Paired "
      "difference = method minus vanilla (all parameters trained) on the same seed (same "
      "data order), mean and 95% t-interval over seeds (scipy.stats.t).", ""]
  if meta.get("configuration_note"):
    lines += [meta["configuration_note"], ""]
  chance = " | ".join(f"{wordnet.chance_accuracy(t):.1f}" for t in tasks)
  for regime, (label, _) in REGIMES.items():
    rows = [(k, s) for k, s in summary.items() if s["regime"] == regime]
    if not rows:
      continue
    lines += [f"## {label}", "",
              "| method | params (conditioning) | " + " | ".join(f"`{_short(t)}`" for t in tasks)
              + " | **average** | average − vanilla [95% CI] |",
              "|---|---:|" + "---:|" * len(tasks) + "---:|---:|",
              f"| chance (best constant answer) | | {chance} | "
              f"{np.mean([wordnet.chance_accuracy(t) for t in tasks]):.1f} | |"]
    for _, s in rows:
      cells = [f"{s['scores'][t]['mean']:.1f} ± {s['scores'][t]['std']:.1f}" for t in tasks]
      avg = s["scores"]["average"]
      diff = s["paired_vs_vanilla"].get("average")
      diff_text = "-" if diff is None else (
          f"{diff['mean']:+.1f} [{diff['low']:+.1f}, {diff['high']:+.1f}]")
      p = s["params"]
      lines.append(f"| {LABELS[s['method']]} | {p['total']:,} ({p['conditioning']:,}) | "
                   + " | ".join(cells) + f" | {avg['mean']:.1f} ± {avg['std']:.1f} | "
                   f"{diff_text} |")
    lines.append("")
  lines += ["## Initialisation check (step 0)", "",
            "Teacher-forced validation loss per target token of the restored backbone with "
            "each method's fresh conditioning parameters ("
            + (f"the first {meta['loss_examples']} validation examples of each task"
               if meta.get("loss_examples") else "every validation example of the five tasks")
            + "), against the backbone alone (the same examples):", ""] + init_table(summary) + [
            "", "Raw numbers (every seed, every evaluation step, best steps): "
            f"`{os.path.basename(meta['output'])}.json`.", ""]
  return "\n".join(lines)


def attention_figure(save_dir: str, output: str, num_examples: int = 100,
                     extra: Sequence[str] = ()) -> Dict[str, Any]:
  """`hyperprompt_jax.attention_analysis` on the saved seed-0 HyperPrompt models -> OUTPUT.*"""
  from hyperprompt_jax import attention_analysis  # pylint: disable=g-import-not-at-top
  results, commands = {}, []
  for method in HYPERPROMPT:
    model_dir = os.path.join(save_dir, method)
    steps = sorted(int(d.split("_")[-1]) for d in os.listdir(model_dir)
                   if d.startswith("checkpoint_")) if os.path.isdir(model_dir) else []
    if not steps:
      continue
    checkpoint = os.path.join(model_dir, f"checkpoint_{steps[-1]}")
    gin_file = dict((k, g) for k, _, g in METHODS)[method]
    files = [MODEL_GIN, gin_file, QUALITY_GIN]
    results[LABELS[method]] = attention_analysis.analyse(files, list(extra), checkpoint,
                                                         num_examples)
    commands.append("python -m hyperprompt_jax.attention_analysis " + " ".join(
        f"--gin_file={f}" for f in files) + f" --checkpoint={checkpoint} "
        f"--num_examples={num_examples} --output=<out>")
  if results:
    attention_analysis.write(results, output, (
        f"Seed-0 models of the comparison (all parameters trained), {num_examples} validation "
        "examples (taken in turn from the five tasks), mass averaged over heads and "
        "non-padding query positions. Commands:\n\n" + "\n".join(f"    {c}" for c in commands)))
  return results


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                      help="the pretrained backbone (runs/wordnet_pretrain.gin's checkpoint)")
  parser.add_argument("--steps", type=int, default=FULL["steps"])
  parser.add_argument("--eval_period", type=int, default=FULL["eval_period"])
  parser.add_argument("--batch_size", type=int, default=FULL["batch_size"])
  parser.add_argument("--eval_examples", type=int, default=FULL["eval_examples"],
                      help="validation examples per task in the evaluations (default: all)")
  parser.add_argument("--seeds", default=FULL["seeds"])
  parser.add_argument("--methods", default=",".join(METHOD_KEYS))
  parser.add_argument("--regimes", default=",".join(REGIMES))
  parser.add_argument("--loss_examples", type=int, default=None,
                      help="validation examples per task of the step-0 loss (default: all)")
  parser.add_argument("--merge", default="",
                      help="comma-separated OUTPUT.json files of earlier runs (e.g. one per "
                           "regime, run in parallel): write OUTPUT from all their runs")
  parser.add_argument("--attention_only", action="store_true",
                      help="only the attention analysis of the models in --save_dir")
  parser.add_argument("--attention_output",
                      default=os.path.join(REPO, "bench", "wordnet_attention"))
  parser.add_argument("--init_only", action="store_true",
                      help="only the step-0 initialisation check (no fine-tuning)")
  parser.add_argument("--gin", action="append", default=[],
                      help="extra gin binding for every run, e.g. "
                           "network.T5Config.prompt_init_stddev=0.1")
  parser.add_argument("--save_dir", default=os.path.join(tempfile.gettempdir(),
                                                         "wordnet_quality_models"),
                      help="where the seed-0 HyperPrompt models are saved")
  parser.add_argument("--output", default=os.path.join(REPO, "bench", "wordnet_quality"))
  parser.add_argument("--configuration_note", default="")
  parser.add_argument("--render", action="store_true",
                      help="only rewrite OUTPUT.md from OUTPUT.json")
  args = parser.parse_args(argv)
  args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  args.methods = [m for m in args.methods.split(",") if m]
  args.regimes = [r for r in args.regimes.split(",") if r]
  unknown = sorted(set(args.methods) - set(METHOD_KEYS)) + sorted(set(args.regimes) - set(REGIMES))
  if unknown:
    parser.error(f"unknown method(s) / regime(s) {unknown}")
  if not args.seeds or args.steps < 1 or args.eval_period < 1:
    parser.error("need at least one seed, --steps >= 1 and --eval_period >= 1")
  if not (args.render or args.merge) and not os.path.exists(args.checkpoint):
    parser.error(f"--checkpoint {args.checkpoint} does not exist; pretrain the backbone first: "
                 f"python -m hyperprompt_jax.train --gin_file={MODEL_GIN} "
                 f"--gin_file=conditioning/vanilla.gin --gin_file={PRETRAIN_GIN} "
                 "--gin.MODEL_DIR=\\\"...\\\" (or run make quality)")
  return args


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  if args.merge:
    parts = []
    for path in args.merge.split(","):
      with open(path) as f:
        parts.append(json.load(f))
    meta = dict(parts[0]["meta"], command=" + ".join(p["meta"]["command"] for p in parts),
                num_runs=sum(len(p["runs"]) for p in parts),
                wall_minutes=max(p["meta"]["wall_minutes"] for p in parts), output=args.output,
                parallel_processes=len(parts))
    if args.configuration_note:
      meta["configuration_note"] = args.configuration_note
    quality.render(args.output, summarize, markdown,
                   {"meta": meta, "runs": [r for p in parts for r in p["runs"]]})
    return 0
  if args.render:
    quality.render(args.output, summarize, markdown)
    return 0
  quality.enter_repo_with_compilation_cache()
  if args.attention_only:
    print(json.dumps(attention_figure(args.save_dir, args.attention_output, extra=args.gin),
                     indent=1), flush=True)
    return 0
  start = time.time()
  runs = []
  for regime in args.regimes:
    for method in args.methods:
      if regime == "frozen" and method == "vanilla":
        continue  # nothing to train: the backbone alone
      t0 = time.time()
      setup = configure(method, regime, args.checkpoint, args.batch_size, args.eval_examples,
                        args.gin, with_evaluator=not args.init_only)
      print(f"\n=== {regime} / {method} (configured in {time.time() - t0:.0f}s)", flush=True)
      for seed in args.seeds:
        if args.init_only:
          state = restore(setup, args.checkpoint, seed)
          runs.append({"method": method, "regime": regime, "seed": seed,
                       "init_validation_loss": validation_loss(setup, state.params,
                                                               args.loss_examples),
                       "best": {}, "average": float("nan"), "seconds": 0.0,
                       "params": quality.param_counts(jax.device_get(state.params))})
        else:
          save = (os.path.join(args.save_dir, method) if regime == "all" and seed == args.seeds[0]
                  and method in HYPERPROMPT else None)
          runs.append(run_seed(setup, args.checkpoint, seed, args.steps, args.eval_period, save,
                               args.loss_examples, init_check=regime == "all"))
        print(f"--- {regime} / {method} seed {seed}: step-0 loss "
              f"{runs[-1]['init_validation_loss'] or float('nan'):.4f}, best-per-task average "
              f"{runs[-1]['average']:.1f} ({runs[-1]['seconds']:.0f}s)", flush=True)
      if setup.evaluator is not None:
        setup.evaluator.close()
  summary = summarize(runs)
  meta = {"command": "python -m bench.wordnet_quality" + (
              " " + " ".join(shlex.quote(a) for a in argv) if argv else ""),
          "date": time.strftime("%Y-%m-%d"),
          "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, jax {jax.__version__}",
          "num_runs": len(runs), "wall_minutes": (time.time() - start) / 60.0,
          "checkpoint": args.checkpoint, "steps": args.steps, "eval_period": args.eval_period,
          "batch_size": args.batch_size, "eval_examples": args.eval_examples,
          "seeds": args.seeds, "gin": args.gin, "output": args.output,
          "loss_examples": args.loss_examples,
          "configuration_note": args.configuration_note}
  with open(args.output + ".json", "w") as f:
    json.dump({"meta": meta, "summary": summary, "runs": runs}, f, indent=2)
  with open(args.output + ".md", "w") as f:
    f.write(markdown(summary, meta))
  print(markdown(summary, meta), flush=True)
  if "all" in args.regimes and not args.init_only and set(HYPERPROMPT) & set(args.methods):
    attention_figure(args.save_dir, args.attention_output, extra=args.gin)
  return 0


if __name__ == "__main__":
  sys.exit(main())
