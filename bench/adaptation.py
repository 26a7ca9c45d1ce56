# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""New-task adaptation: add a task to a trained HyperPrompt-Global model
by learning only its task embedding (and, as a second variant, its global prompt too).

  python -m bench.adaptation        # or: make adaptation

1. Trains HyperPrompt-Global on the offline default mixture `hyperprompt_offline_v1`
   (6 tasks, NUM_TASKS = 6) with the launcher (bench/offline_quality.gin, BASE_STEPS
   steps).
2. Adds the held-out task `offline_last_first_v1` (the last then the first letter)
   at index 6: the launcher restores the 6-task checkpoint into a NUM_TASKS = 7
   model (`train(extend_tasks=True)`, gin/runs/add_tasks.gin: task-indexed
   parameters extended along their `tasks` axis, the 6 trained rows restored bit
   for bit, row 6 initialised fresh; the task table checked with
   `hyperprompt_tasks.check_task_table(allow_extension=True)`) and trains only
   `hyperprompt/task_embedding` (optimizers' `trainable='task_embeddings'`) on
   `hyperprompt_offline_v1_new_task` (the six tasks at rate 0, the new one at 1),
   evaluating all 7 tasks with seqio before and after; a second run, same budget,
   also trains `hyperprompt/global_prompts` (the new task's own prompt `P_7`).
3. Checks against the base checkpoint that every parameter is unchanged except
   the new task's rows, and that the six old tasks score exactly as before.

Writes `bench/adaptation.md` and `bench/adaptation.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax
import numpy as np

from bench import quality
from hyperprompt_jax import data as data_lib
from hyperprompt_jax import evaluation
from hyperprompt_jax import run_dir
from hyperprompt_jax.formats import restore as restore_lib
from hyperprompt_jax.formats import tree as tree_lib

REPO = quality.REPO
BASE_STEPS = 1000
ADAPT_STEPS = 500
ADAPT_LEARNING_RATE = 0.1
SEED = 0
BASE_MIXTURE = "hyperprompt_offline_v1"
NEW_TASK_MIXTURE = "hyperprompt_offline_v1_new_task"
NEW_TASK = "offline_last_first_v1"
ADD_TASKS_GIN = "runs/add_tasks.gin"
EMBEDDING, PROMPTS = "hyperprompt/task_embedding", "hyperprompt/global_prompts"
# (key, what is trained, extra launcher bindings). Both train only task-indexed parameters,
# so only the new task's rows can move (the other rows get exactly-zero gradients).
VARIANTS = (
    ("embedding", "the new task's embedding `k_7` (`trainable='task_embeddings'`, "
     "gin/runs/add_tasks.gin)", ()),
    ("embedding_and_prompt", "the new task's embedding and its global prompt `P_7` "
     f"(`trainable=['{EMBEDDING}', '{PROMPTS}']`)",
     (f'optimizers.create_optimizer.trainable=["{EMBEDDING}", "{PROMPTS}"]',)),
)


def base_args(model_dir: str, steps: int, seed: int):
  return quality.launcher_args("hyperprompt_global", seed, steps, model_dir)


def adapt_args(model_dir: str, checkpoint: str, total_steps: int, seed: int,
               learning_rate: float, bindings: Sequence[str] = ()):
  """The launcher's command line of one adaptation run."""
  args = quality.launcher_args("hyperprompt_global", seed, total_steps, model_dir)
  return args + [f"--gin_file={ADD_TASKS_GIN}",
                 f"--gin.INITIAL_CHECKPOINT_PATH=\"{checkpoint}\"",
                 f"--gin.MIXTURE_OR_TASK_NAME=\"{NEW_TASK_MIXTURE}\"",
                 "--gin.NUM_TASKS=7",
                 f"--gin.LEARNING_RATE={learning_rate}",
                 "--gin.__main__.train.run_eval_before_training=True"] + [
                     f"--gin.{b}" for b in bindings]


def _history_scores(model_dir: str, step: int) -> Dict[str, float]:
  """Per-task scores the launcher recorded at `step` (metrics_history.json)."""
  with open(os.path.join(model_dir, run_dir.METRICS_HISTORY)) as f:
    history = json.load(f)
  scores = {}
  for task, entries in history.get("eval", {}).items():  # {task: [[step, score], ...]}
    values = [score for s, score in entries if int(s) == step]
    if values and task != evaluation.AVERAGE:
      scores[evaluation.base_task_name(task)] = float(values[-1])
  if not scores:
    raise RuntimeError(f"no evaluation at step {step} in {model_dir}/"
                       f"{run_dir.METRICS_HISTORY}")
  return scores


def compare_params(base: Dict[str, np.ndarray], adapted: Dict[str, np.ndarray],
                   num_old_tasks: int) -> Dict[str, Any]:
  """Which parameters (or new-task rows) differ between the base and adapted models."""
  changed, extended = [], {}
  for key, old in base.items():
    new = np.asarray(adapted[key])
    old = np.asarray(old)
    if new.shape == old.shape:
      if not np.array_equal(new, old):
        changed.append(key)
      continue
    # Extended along the tasks axis: the old rows must be bit-identical.
    axis = next(i for i, (a, b) in enumerate(zip(old.shape, new.shape)) if a != b)
    same = np.array_equal(np.take(new, np.arange(num_old_tasks), axis=axis), old)
    extended[key] = {"old_shape": list(old.shape), "new_shape": list(new.shape),
                     "old_rows_identical": bool(same)}
    if not same:
      changed.append(key)
  return {"changed": changed, "extended": extended,
          "num_params_compared": len(base)}


def markdown(result: Dict[str, Any]) -> str:
  from hyperprompt_tasks import offline  # pylint: disable=g-import-not-at-top
  meta, base, before = result["meta"], result["base"], result["before"]
  variants = result["variants"]
  tasks = list(offline.TASKS) + [NEW_TASK]
  short = lambda t: t.replace("offline_", "").replace("_v1", "")
  lines = [
      "# New-task adaptation with HyperPrompt-Global",
      "",
      f"Command: `{meta['command']}` (`make adaptation`), {meta['date']}, {meta['machine']}; "
      f"{meta['wall_minutes']:.0f} min in all.",
      "",
      f"1. **Base model**: HyperPrompt-Global (`bench/offline_quality.gin`: d_model 128, 2+2 "
      f"layers, prompt length 4, task embedding width 16), {meta['base_steps']} steps on "
      f"`{BASE_MIXTURE}` (6 tasks, NUM_TASKS = 6), seed {meta['seed']}.",
      f"2. **Adding `{NEW_TASK}`** (target: last then first letter; held out, 16 classes) at "
      "task index 6: NUM_TASKS = 7, the 6-task checkpoint restored with "
      "`train(extend_tasks=True)` (`gin/runs/add_tasks.gin`, "
      "`hyperprompt_jax/task_extension.py`): `hyperprompt/task_embedding` [6, 16] -> [7, 16] "
      "and `hyperprompt/global_prompts` [6, 4, 128] -> [7, 4, 128], the 6 trained rows "
      "restored bit for bit, row 6 initialised fresh by the model's initialiser; the task "
      "table checked against the base model's with "
      "`hyperprompt_tasks.check_task_table(allow_extension=True)`.",
      f"3. **Adaptation**: {meta['adapt_steps']} steps on `{NEW_TASK_MIXTURE}` (old tasks at "
      f"rate 0), Adafactor, lr {meta['adapt_learning_rate']}, batch 64, everything else "
      "frozen by the optimizer; two runs from the same restored model:",
  ]
  for key, v in variants.items():
    lines.append(f"   - **{key}**: trains {v['what']}: {v['trainable_values']} trainable "
                 f"values, of which the new task's {v['new_task_values']} can move.")
  lines += [
      "",
      "Accuracy (%, seqio evaluation, 500 validation strings per task):",
      "",
      "| task | base model (6 tasks) | task added, before adaptation | "
      + " | ".join(f"after: {k}" for k in variants) + " |",
      "|---|---:|---:|" + "---:|" * len(variants),
  ]
  for task in tasks:
    b = f"{base[task]:.1f}" if task in base else "-"
    lines.append(f"| `{short(task)}`{' (new)' if task == NEW_TASK else ''} | {b} | "
                 f"{before[task]:.1f} | "
                 + " | ".join(f"{v['after'][task]:.1f}" for v in variants.values()) + " |")
  old_avg = lambda s: np.mean([s[t] for t in offline.TASKS])
  lines += [
      f"| average of the 6 old tasks | {old_avg(base):.1f} | {old_avg(before):.1f} | "
      + " | ".join(f"{old_avg(v['after']):.1f}" for v in variants.values()) + " |",
      "",
      f"- Held-out task (chance {offline.chance_accuracy(NEW_TASK):.2f}): " + "; ".join(
          f"{k}: **{before[NEW_TASK]:.1f} -> {v['after'][NEW_TASK]:.1f}**"
          for k, v in variants.items()) + ".",
      f"- Old tasks unchanged: {result['old_tasks_unchanged']} (the six tasks' scores "
      "identical in every column).",
  ]
  for key, v in variants.items():
    params = v["params"]
    lines.append(
        f"- {key}: parameters compared with the base checkpoint: "
        f"{params['num_params_compared']}; changed: {params['changed'] or 'none'}; extended "
        "along `tasks` with the 6 old rows bit-identical: " + ", ".join(
            f"`{k}` ({e['old_rows_identical']})" for k, e in params["extended"].items()) + ".")
  emb_only = variants.get("embedding")
  if emb_only and emb_only["after"][NEW_TASK] < 50.0:
    lines += [
        "",
        f"The task-embedding-only run stays low on the held-out task "
        f"({emb_only['after'][NEW_TASK]:.1f}, chance {offline.chance_accuracy(NEW_TASK):.2f}): "
        "the new task "
        "needs a decoder behaviour none of the six trained tasks has (the last letter first, "
        "then the first letter), and with `k_7` alone (16 values, through the frozen task MLP "
        "and global hypernetworks, applied to a frozen random `P_7`) this small model, "
        "trained from scratch on six tasks, cannot express it within the budget. Letting "
        "the new task's own global prompt `P_7` learn too - still only the new task's rows, "
        "every trained parameter bit-identical - does.",
    ]
  lines += [
      "",
      "Commands (what `python -m bench.adaptation` runs in-process):",
      "",
      "```",
      meta["base_command"],
  ] + [v["command"] for v in variants.values()] + [
      "```",
      "",
      "The fast test `tests/test_task_extension.py` checks on a tiny model that the "
      "task-embedding-only adaptation changes only the new task's embedding row (every "
      "other parameter and row bit-identical).",
      "",
  ]
  return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--base_steps", type=int, default=BASE_STEPS)
  parser.add_argument("--adapt_steps", type=int, default=ADAPT_STEPS)
  parser.add_argument("--learning_rate", type=float, default=ADAPT_LEARNING_RATE,
                      help="learning rate of the adaptation runs")
  parser.add_argument("--seed", type=int, default=SEED)
  parser.add_argument("--variants", default=",".join(k for k, _, _ in VARIANTS),
                      help="comma-separated subset of " + ",".join(k for k, _, _ in VARIANTS))
  parser.add_argument("--work_dir", default=None,
                      help="MODEL_DIRs of the runs (default: a new temporary folder, "
                           "deleted at the end unless --keep)")
  parser.add_argument("--keep", action="store_true")
  parser.add_argument("--base_model_dir", default=None,
                      help="reuse this finished base run (a MODEL_DIR of step 1) instead of "
                           "training one")
  parser.add_argument("--output", default=os.path.join(REPO, "bench", "adaptation"),
                      help="writes OUTPUT.md and OUTPUT.json")
  parser.add_argument("--render", action="store_true",
                      help="only rewrite OUTPUT.md from the results saved in OUTPUT.json")
  args = parser.parse_args(argv)
  for name in ("base_steps", "adapt_steps"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be >= 1")
  if args.learning_rate <= 0:
    parser.error("--learning_rate must be > 0")
  args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
  unknown = sorted(set(args.variants) - {k for k, _, _ in VARIANTS})
  if unknown or not args.variants:
    parser.error(f"--variants: unknown or empty {unknown}")
  return args


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  if args.render:
    with open(args.output + ".json") as f:
      saved = json.load(f)
    with open(args.output + ".md", "w") as f:
      f.write(markdown(saved))
    print(f"Rewrote {args.output}.md from {args.output}.json", flush=True)
    return 0
  quality.enter_repo_with_compilation_cache()
  import hyperprompt_tasks  # pylint: disable=g-import-not-at-top
  owns_work_dir = args.work_dir is None
  work_dir = args.work_dir or tempfile.mkdtemp(prefix="hyperprompt_adaptation_")
  base_dir = args.base_model_dir or os.path.join(work_dir, "base")
  variants = [v for v in VARIANTS if v[0] in args.variants]
  adapted_dirs = {k: os.path.join(work_dir, f"adapted_{k}") for k, _, _ in variants}
  for d in ([] if args.base_model_dir else [base_dir]) + list(adapted_dirs.values()):
    if os.path.exists(d):
      raise SystemExit(f"error: {d} already exists; use a new --work_dir.")
  start = time.time()
  results, before = {}, None
  try:
    if args.base_model_dir:
      base_step = max(int(n.split("_")[-1]) for n in os.listdir(base_dir)
                      if n.startswith("checkpoint_"))
      base_scores = _history_scores(base_dir, base_step)
      print(f"=== base: reusing {base_dir} (step {base_step})", flush=True)
    else:
      b_args = base_args(base_dir, args.base_steps, args.seed)
      print(f"=== base: python -m hyperprompt_jax.train {quality.command_line(b_args)}",
            flush=True)
      base_result = quality.run_launcher(b_args)
      base_scores, base_step = quality.task_scores(base_result.eval_metrics), base_result.step
    checkpoint = os.path.join(base_dir, f"checkpoint_{base_step}")
    base_params = tree_lib.flatten(restore_lib.load_params(checkpoint))

    new_table = data_lib.task_table(NEW_TASK_MIXTURE)
    saved = hyperprompt_tasks.check_task_table(base_dir, new_table, allow_extension=True)
    print(f"Task table: saved {list(saved)}; new {list(new_table)} (extension allowed).",
          flush=True)

    total = base_step + args.adapt_steps
    for key, what, bindings in variants:
      a_args = adapt_args(adapted_dirs[key], checkpoint, total, args.seed, args.learning_rate,
                          bindings)
      print(f"=== adapt ({key}): python -m hyperprompt_jax.train "
            f"{quality.command_line(a_args)}", flush=True)
      adapt_result = quality.run_launcher(a_args)
      variant_before = _history_scores(adapted_dirs[key], base_step)
      if before is None:
        before = variant_before
      elif variant_before != before:
        raise RuntimeError(f"the restored model scored differently in the {key} run: "
                           f"{variant_before} vs {before}")
      adapted = tree_lib.flatten(jax.device_get(adapt_result.state.params))
      trained = [EMBEDDING] + ([PROMPTS] if key == "embedding_and_prompt" else [])
      results[key] = {
          "what": what, "after": quality.task_scores(adapt_result.eval_metrics),
          "params": compare_params(base_params, adapted, num_old_tasks=len(saved)),
          "trainable_values": int(sum(np.prod(adapted[k].shape) for k in trained)),
          "new_task_values": int(sum(np.prod(adapted[k].shape[1:]) for k in trained)),
          "command": "python -m hyperprompt_jax.train " + quality.command_line(adapt_args(
              f"<work_dir>/adapted_{key}", f"<work_dir>/base/checkpoint_{base_step}",
              total, args.seed, args.learning_rate, bindings)),
      }
  finally:
    if owns_work_dir and not args.keep:
      shutil.rmtree(work_dir, ignore_errors=True)

  old_unchanged = all(base_scores[t] == before[t] == v["after"][t]
                      for t in base_scores for v in results.values())
  meta = {
      "command": "python -m bench.adaptation" + (
          " " + quality.command_line(argv) if argv else ""),
      "base_command": "python -m hyperprompt_jax.train " + quality.command_line(
          base_args("<work_dir>/base", base_step, args.seed)),
      "date": time.strftime("%Y-%m-%d"),
      "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, jax {jax.__version__}",
      "wall_minutes": (time.time() - start) / 60.0,
      "base_steps": base_step, "adapt_steps": args.adapt_steps,
      "adapt_learning_rate": args.learning_rate, "seed": args.seed,
  }
  result = {"meta": meta, "base": base_scores, "before": before, "variants": results,
            "old_tasks_unchanged": bool(old_unchanged),
            "task_table": {"saved": list(saved), "new": list(new_table)}}
  with open(args.output + ".json", "w") as f:
    json.dump(result, f, indent=2)
  text = markdown(result)
  with open(args.output + ".md", "w") as f:
    f.write(text)
  print(text)
  print(f"Wrote {args.output}.md and {args.output}.json", flush=True)
  if any(v["params"]["changed"] for v in results.values()) or not old_unchanged:
    print("FAILED: an adaptation changed more than the new task's rows.", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
