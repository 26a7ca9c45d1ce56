# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""`make precision`: 200 steps on the offline mixture in float32 and in mixed precision.

Trains the tiny HyperPrompt-Global model of `gin/testing/tiny_offline.gin` twice with the
launcher, from the same seed and data order: once as the file says (float32) and once
with `gin/precision/bf16.gin` (bfloat16 activations, float32 parameters and optimizer
state), and compares the train-loss curves of `MODEL_DIR/metrics_history.json` (the mean
loss of every log period). Passes when the largest relative gap between the two curves
is at most `--rtol`.

Writes bench/precision.md and bench/precision.json.

  python -m bench.precision                 # 200 steps, log every 10
  python -m bench.precision --steps 40      # a shorter check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

import numpy as np

from hyperprompt_jax import run_dir

HERE = os.path.dirname(os.path.abspath(__file__))
RTOL = 0.05  # the stated tolerance: bf16's loss within 5% of f32's at every logged step


def train(model_dir: str, steps: int, log_period: int, extra_gin: List[str]) -> List[List[float]]:
  """Runs the launcher on tiny_offline.gin (+ `extra_gin`); returns `[[step, loss], ...]`."""
  cmd = [sys.executable, "-m", "hyperprompt_jax.train", "--gin_file=testing/tiny_offline.gin"]
  cmd += [f"--gin_file={g}" for g in extra_gin]
  cmd += [f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={steps}",
          f"--gin.LOG_PERIOD={log_period}", f"--gin.CHECKPOINT_PERIOD={steps}"]
  subprocess.run(cmd, check=True)
  with open(os.path.join(model_dir, run_dir.METRICS_HISTORY)) as f:
    return json.load(f)["train"]


def compare(f32: List[List[float]], bf16: List[List[float]]) -> Dict[str, Any]:
  steps = [s for s, _ in f32]
  if steps != [s for s, _ in bf16]:
    raise ValueError(f"the runs logged different steps: {steps} vs {[s for s, _ in bf16]}")
  a, b = np.asarray([l for _, l in f32]), np.asarray([l for _, l in bf16])
  rel = np.abs(b - a) / np.abs(a)
  return {"steps": steps, "float32": a.tolist(), "bfloat16": b.tolist(),
          "max_rel_gap": float(rel.max()), "mean_rel_gap": float(rel.mean()),
          "final_rel_gap": float(rel[-1])}


def render_markdown(result: Dict[str, Any], command: str) -> str:
  ok = result["max_rel_gap"] <= result["rtol"]
  lines = [
      "# Mixed precision on the offline mixture", "",
      f"Command: `{command}` ({result['wall_s'] / 60:.1f} min wall; `uptime` load before: "
      f"{result['load']})  ",
      "Model: gin/testing/tiny_offline.gin (T5.1.1 tiny, HyperPrompt-Global, "
      "hyperprompt_offline_v1, batch 8, Adafactor); the same seed and data order in both "
      "runs; bfloat16 = + gin/precision/bf16.gin (bfloat16 activations, float32 parameters "
      "and optimizer state).", "",
      f"Largest relative gap of the train loss (mean of each log period): "
      f"**{result['max_rel_gap']:.2%}** (mean {result['mean_rel_gap']:.2%}, last logged "
      f"step {result['final_rel_gap']:.2%}); tolerance {result['rtol']:.0%}: "
      f"{'met' if ok else 'NOT met'}.", "",
      "| step | float32 loss | bfloat16 loss | relative gap |", "|---|---|---|---|"]
  for s, a, b in zip(result["steps"], result["float32"], result["bfloat16"]):
    lines.append(f"| {s} | {a:.4f} | {b:.4f} | {abs(b - a) / abs(a):.2%} |")
  return "\n".join(lines) + "\n"


def main(argv: List[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--log_period", type=int, default=10)
  parser.add_argument("--rtol", type=float, default=RTOL)
  parser.add_argument("--out_dir", default=HERE)
  args = parser.parse_args(argv)
  load = os.getloadavg()
  start = time.time()
  with tempfile.TemporaryDirectory() as tmp:
    f32 = train(os.path.join(tmp, "f32"), args.steps, args.log_period, [])
    bf16 = train(os.path.join(tmp, "bf16"), args.steps, args.log_period,
                 ["precision/bf16.gin"])
  result = compare(f32, bf16)
  result.update(rtol=args.rtol, wall_s=time.time() - start,
                load=", ".join(f"{x:.2f}" for x in load))
  command = " ".join(["python -m bench.precision"] + argv)
  md = render_markdown(result, command)
  print(md)
  os.makedirs(args.out_dir, exist_ok=True)
  with open(os.path.join(args.out_dir, "precision.json"), "w") as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(args.out_dir, "precision.md"), "w") as f:
    f.write(md)
  return 0 if result["max_rel_gap"] <= args.rtol else 1


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
