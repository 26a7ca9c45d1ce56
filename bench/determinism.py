# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""Determinism of training: the per-step losses of runs that should (or may) agree.

Same seed, same mesh -> bit-identical losses, parameters and optimizer state: the
input order is seeded (and checkpointed), dropout of step s uses
`fold_in(rng, s)`, and XLA's CPU/TPU/GPU programs are deterministic for a fixed
program and device assignment.

Across mesh shapes the program changes: a `('data', 'model')` mesh splits the
batch and the matmuls differently, so sums (the loss over the batch, gradient
all-reduces, the contractions split along 'model') are reduced in another order.
Float addition is not associative, so the results differ in the last bits and the
differences grow slowly through training (they are not bugs, and they are not
bounded by a fixed tolerance over long runs).

  python -m bench.determinism --mesh 1,1 --mesh 1,1 --mesh 4,2 --steps 20

trains the tiny offline model (gin/testing/tiny_offline.gin) once per `--mesh` on
8 simulated CPU devices and prints the largest relative difference of the
per-step losses and of the final parameters against the first run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from hyperprompt_jax import run_dir
from hyperprompt_jax import train as train_lib

GIN_FILE = "testing/tiny_offline.gin"


def run_losses(model_dir: str, *, steps: int, mesh: Tuple[int, int] = (1, 1), seed: int = 0,
               extra_bindings: Sequence[str] = ()) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
  """Trains the tiny model; returns (per-step train losses [steps], final params by path)."""
  args = [f"--gin_file={GIN_FILE}", f'--gin.MODEL_DIR="{model_dir}"',
          f"--gin.TRAIN_STEPS={steps}", "--gin.LOG_PERIOD=1", f"--gin.RANDOM_SEED={seed}",
          f"--gin.CHECKPOINT_PERIOD={steps}",
          f"--gin.partitioning.Partitioner.mesh_shape={tuple(mesh)}", *extra_bindings]
  rc = train_lib.main(args)
  if rc:
    raise RuntimeError(f"training failed (exit status {rc}): {args}")
  with open(os.path.join(model_dir, run_dir.METRICS_HISTORY)) as f:
    losses = np.array([loss for _, loss in json.load(f)["train"]], np.float64)
  return losses, read_params(model_dir, steps)


def read_params(model_dir: str, step: int) -> Dict[str, np.ndarray]:
  with ocp.StandardCheckpointer() as ckptr:
    state = ckptr.restore(os.path.join(model_dir, f"checkpoint_{step}", "state"))
  flat, _ = jax.tree_util.tree_flatten_with_path(state["target"])
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12))) if a.size else 0.0


def compare(reference, other) -> Dict[str, float]:
  """Largest relative differences of the losses and the parameters (and their norm)."""
  (loss_a, params_a), (loss_b, params_b) = reference, other
  worst = max(max_rel_diff(params_a[k], params_b[k]) for k in params_a)
  norm = max(float(np.linalg.norm(params_a[k] - params_b[k]) /
                   max(np.linalg.norm(params_a[k]), 1e-12)) for k in params_a)
  return {"loss_max_rel_diff": max_rel_diff(loss_a, loss_b),
          "final_loss_rel_diff": max_rel_diff(loss_a[-1:], loss_b[-1:]),
          "param_max_elementwise_rel_diff": worst, "param_max_tensor_rel_diff": norm,
          "bit_identical": bool(np.array_equal(loss_a, loss_b) and
                                all(np.array_equal(params_a[k], params_b[k])
                                    for k in params_a))}


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--mesh", action="append", default=[],
                      help="data,model (repeatable; the first is the reference)")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  # 8 simulated CPU devices for the meshes; read when jax starts its backend (first use).
  os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  meshes = [tuple(int(x) for x in m.split(",")) for m in (args.mesh or ["1,1", "1,1", "4,2"])]
  runs = []
  with tempfile.TemporaryDirectory() as tmp:
    for i, mesh in enumerate(meshes):
      runs.append(run_losses(os.path.join(tmp, f"run{i}"), steps=args.steps, mesh=mesh,
                             seed=args.seed))
  print(f"\n{args.steps} steps of gin/{GIN_FILE}, seed {args.seed}, against mesh {meshes[0]}:")
  print("| mesh | bit-identical | max rel. diff of the per-step losses | final loss | "
        "params (max element) | params (max tensor, L2) |")
  print("|---|---|---|---|---|---|")
  for mesh, run in zip(meshes[1:], runs[1:]):
    r = compare(runs[0], run)
    print(f"| {mesh} | {r['bit_identical']} | {r['loss_max_rel_diff']:.2e} | "
          f"{r['final_loss_rel_diff']:.2e} | {r['param_max_elementwise_rel_diff']:.2e} | "
          f"{r['param_max_tensor_rel_diff']:.2e} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
