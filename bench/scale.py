# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Scan over layers and rematerialisation, measured: `python -m bench.scale` (issue 14).

Writes `bench/scale.{md,json}`. Three measurements, each a ratio taken in one run:

(a) compile time of the train step (forward, backward, our Adafactor), unrolled vs
    scanned, at the T5.1.1 XL depth (24+24 layers) with HyperPrompt-Global and a
    reduced width (`COMPILE_SHAPES`; compile time depends on the program's size, i.e.
    on the depth, far more than on the width);
(b) XLA's memory estimate (`compiled.memory_analysis()`, compiled for abstract
    `jax.ShapeDtypeStruct` inputs: nothing is allocated) of the scanned forward and
    backward pass at the XL depth and the width of (a) (`MEMORY_SHAPES`, lengths
    512/128), bfloat16 activations as in `gin/models/t5_1_1/`, for remat 'none',
    'minimal' and 'full', at the per-device batch at which 'none' needs about 16 GiB
    of temporaries. The program returns the gradients, so its temporary
    bytes are the activations kept for (and made in) the backward pass; arguments
    (parameters, batch) and outputs (loss, gradients) are reported apart;
(c) train-step time at T5.1.1-small shapes (bench/run.py's `Shapes()`, batch 4) of the
    scanned step with each remat policy against the unrolled step without remat,
    timed round-robin (one step of each per round, median).

Dropout is off (the train steps pass no dropout rng).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bench import run as bench_run
from hyperprompt_jax import models
from hyperprompt_jax import network
from hyperprompt_jax import optimizers
from hyperprompt_jax.formats import scan as scan_lib

HERE = os.path.dirname(os.path.abspath(__file__))
GIB = 1024 ** 3
HYPERPROMPT_GLOBAL = dict(bench_run.HYPERPROMPT, hyperprompt_variant="global")
# (a): XL depth, reduced width.
COMPILE_SHAPES = bench_run.Shapes(emb=256, layers=24, heads=4, head_dim=64, mlp=512, batch=8,
                                  input_len=128, target_len=32)
# (b): XL depth, lengths 512/128, bfloat16 activations, the width of (a). At XL's full
# width on one device the parameter-sized temporaries (f32 gradients of the stacked
# weights, their bfloat16 copies) dominate: 'none' needs 23.7 GiB at batch 1 and 'full'
# still 13.3 GiB (an earlier run of this script with d_model 2048, d_ff 5120, 32 heads),
# so no batch isolates the activations; on a pod slice those buffers are sharded.
MEMORY_SHAPES = dataclasses.replace(COMPILE_SHAPES, batch=8, input_len=512, target_len=128)
TARGET_TEMP_BYTES = 16 * GIB
# (c): T5.1.1-small.
STEP_SHAPES = bench_run.Shapes(batch=4, steps=6)
QUICK = dict(compile=bench_run.Shapes(vocab=512, emb=32, layers=4, heads=2, head_dim=8, mlp=64,
                                      batch=2, input_len=16, target_len=4),
             memory=bench_run.Shapes(vocab=512, emb=64, layers=4, heads=4, head_dim=16, mlp=128,
                                     batch=1, input_len=64, target_len=16),
             step=bench_run.Shapes(vocab=512, emb=32, layers=2, heads=2, head_dim=8, mlp=64,
                                   batch=2, input_len=16, target_len=4, steps=3),
             target_temp_bytes=64 * 1024 ** 2)


def _config(shapes: bench_run.Shapes, **overrides) -> network.T5Config:
  return bench_run.make_config(shapes, **HYPERPROMPT_GLOBAL, **overrides)


def _abstract(shapes: bench_run.Shapes, cfg: network.T5Config):
  """(model, abstract params, abstract batch) of `cfg`: shapes only, nothing computed."""
  model = models.EncoderDecoderModel(network.Transformer(config=cfg))
  batch = jax.eval_shape(lambda: bench_run.make_batch(shapes, cfg))
  params = jax.eval_shape(lambda: model.get_initial_variables(jax.random.PRNGKey(0), {
      k: batch[k].shape for k in ("encoder_input_tokens", "decoder_input_tokens")})["params"])
  return model, params, batch


def _train_step(model, tx):
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(lambda p: model.loss_fn(p, batch, None)[0])(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  return step


def _tx(cfg: network.T5Config):
  return optimizers.adafactor(1e-3, layers_axis=cfg.param_scan_axis)


def measure_compile(shapes: bench_run.Shapes) -> Dict[str, Any]:
  """(a) Seconds to trace+lower and to compile the train step, unrolled and scanned."""
  out: Dict[str, Any] = {}
  for name, scan in (("unrolled", False), ("scanned", True)):
    cfg = _config(shapes, scan_layers=scan)
    model, params, batch = _abstract(shapes, cfg)
    tx = _tx(cfg)
    opt_state = jax.eval_shape(tx.init, params)
    start = time.perf_counter()
    lowered = jax.jit(_train_step(model, tx), donate_argnums=(0, 1)).lower(params, opt_state,
                                                                           batch)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    lowered.compile()
    compile_s = time.perf_counter() - start
    out[name] = {"lower_s": lower_s, "compile_s": compile_s, "total_s": lower_s + compile_s}
    print(f"(a) {name}: lower {lower_s:.1f} s, compile {compile_s:.1f} s", flush=True)
  out["ratio_total"] = out["scanned"]["total_s"] / out["unrolled"]["total_s"]
  out["ratio_compile"] = out["scanned"]["compile_s"] / out["unrolled"]["compile_s"]
  return out


def _grad_memory(shapes: bench_run.Shapes, policy: str, batch_size: int) -> Dict[str, Any]:
  cfg = _config(shapes, scan_layers=True, remat_policy=policy, dtype=jnp.bfloat16)
  model, params, batch = _abstract(dataclasses.replace(shapes, batch=batch_size), cfg)
  grad = jax.value_and_grad(lambda p, b: model.loss_fn(p, b, None)[0])
  start = time.perf_counter()
  mem = jax.jit(grad).lower(params, batch).compile().memory_analysis()
  return {"batch": batch_size, "temp_bytes": int(mem.temp_size_in_bytes),
          "argument_bytes": int(mem.argument_size_in_bytes),
          "output_bytes": int(mem.output_size_in_bytes),
          "alias_bytes": int(mem.alias_size_in_bytes),
          "compile_s": time.perf_counter() - start}


def measure_memory(shapes: bench_run.Shapes, target_bytes: int) -> Dict[str, Any]:
  """(b) XLA's memory estimate per remat policy, at the batch where 'none' needs ~target."""
  probe = _grad_memory(shapes, "none", shapes.batch)
  per_example = probe["temp_bytes"] / shapes.batch
  batch_size = max(1, int(round(target_bytes / per_example)))
  print(f"(b) 'none' at batch {shapes.batch}: {probe['temp_bytes'] / GIB:.2f} GiB temporaries; "
        f"measuring at batch {batch_size}", flush=True)
  out: Dict[str, Any] = {"probe": probe, "batch": batch_size}
  for policy in network.REMAT_POLICIES:
    out[policy] = _grad_memory(shapes, policy, batch_size)
    print(f"(b) {policy}: temp {out[policy]['temp_bytes'] / GIB:.2f} GiB, "
          f"arguments {out[policy]['argument_bytes'] / GIB:.2f} GiB, "
          f"outputs {out[policy]['output_bytes'] / GIB:.2f} GiB", flush=True)
  for policy in ("minimal", "full"):
    out[f"ratio_{policy}"] = out[policy]["temp_bytes"] / out["none"]["temp_bytes"]
  return out


def _random_params(abstract: Any, seed: int = 0) -> Any:
  """Params of the abstract tree's shapes drawn in numpy (T5-small's init compile is slow)."""
  rng = np.random.RandomState(seed)

  def draw(leaf):
    scale = 1.0 / np.sqrt(leaf.shape[-2]) if len(leaf.shape) >= 2 else 0.1
    return jnp.asarray(scale * rng.randn(*leaf.shape), leaf.dtype)
  return jax.tree_util.tree_map(draw, abstract)


# (name, remat_policy, scan_layers): the remat policies are timed scanned (the XL/XXL
# recipe), each compile costs about a minute on the loaded 2-core machine.
STEP_VARIANTS = (("unrolled", "none", False), ("scanned", "none", True),
                 ("scanned_minimal", "minimal", True), ("scanned_full", "full", True))


def measure_steps(shapes: bench_run.Shapes) -> Dict[str, Any]:
  """(c) Median train-step seconds of every (remat, scan) variant, round-robin."""
  base = _config(shapes)
  model, abstract, _ = _abstract(shapes, base)
  unrolled = _random_params(abstract)
  batch = bench_run.make_batch(shapes, base)
  runners, compile_s = {}, {}
  for name, policy, scan in STEP_VARIANTS:
    cfg = base.replace(remat_policy=policy, scan_layers=scan)
    model = models.EncoderDecoderModel(network.Transformer(config=cfg))
    tx = _tx(cfg)
    params = scan_lib.stack_layers(unrolled, axis=cfg.param_scan_axis) if scan else unrolled
    carry = {"params": params, "state": tx.init(params)}
    start = time.perf_counter()
    compiled = jax.jit(_train_step(model, tx)).lower(carry["params"], carry["state"],
                                                     batch).compile()
    compile_s[name] = time.perf_counter() - start

    def run(compiled=compiled, carry=carry):
      carry["params"], carry["state"], loss = compiled(carry["params"], carry["state"], batch)
      return loss

    jax.block_until_ready(run())  # warm-up
    runners[name] = run
    print(f"(c) {name}: compiled in {compile_s[name]:.1f} s", flush=True)
  step_s = bench_run.time_interleaved(runners, shapes.steps)
  return {"step_s": step_s, "compile_s": compile_s,
          "ratio": {name: step_s[name] / step_s["unrolled"] for name in step_s}}


def _uptime() -> str:
  try:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def _shape_line(shapes: bench_run.Shapes) -> str:
  return (f"{shapes.layers}+{shapes.layers} layers, d_model {shapes.emb}, {shapes.heads} heads x "
          f"{shapes.head_dim}, d_ff {shapes.mlp}, vocab {shapes.vocab}, lengths "
          f"{shapes.input_len}/{shapes.target_len}")


def render_markdown(results: Dict[str, Any], command: str) -> str:
  c, m, s = results["compile"], results["memory"], results["steps"]
  lines = [
      "# Scan over layers and rematerialisation",
      "",
      f"Command: `{command}`; {results['wall_s'] / 60:.1f} min wall; jax {results['jax']}, "
      f"{results['machine']}.",
      f"Load (`uptime`) before: `{results['uptime_before']}`; after: "
      f"`{results['uptime_after']}`.",
      "HyperPrompt-Global (8 tasks) everywhere; dropout off. Ratios are taken within this run.",
      "",
      f"## (a) Train-step compile time, unrolled vs scanned ({_shape_line(results['shapes']['compile'])}, "
      f"batch {results['shapes']['compile'].batch}; f32; width reduced from XL's)",
      "",
      "| layout | trace + lower (s) | XLA compile (s) | total (s) |",
      "|---|---|---|---|",
  ]
  for name in ("unrolled", "scanned"):
    lines.append(f"| {name} | {c[name]['lower_s']:.1f} | {c[name]['compile_s']:.1f} | "
                 f"{c[name]['total_s']:.1f} |")
  lines += [
      "",
      f"Scanned / unrolled: **{c['ratio_total']:.3f}** total, {c['ratio_compile']:.3f} XLA "
      f"compile alone (target <= 0.25: {'met' if c['ratio_total'] <= 0.25 else 'not met'}).",
      "",
      f"## (b) XLA memory estimate of the scanned forward+backward ({_shape_line(results['shapes']['memory'])}, "
      f"bfloat16 activations, per-device batch {m['batch']}; width reduced from XL's)",
      "",
      f"Batch chosen from a probe at batch {m['probe']['batch']} ('none': "
      f"{m['probe']['temp_bytes'] / GIB:.2f} GiB of temporaries), scaled to "
      f"{results['target_temp_bytes'] / GIB:.0f} GiB. Arguments are the parameters (f32) and "
      "the batch, outputs the loss and the f32 gradients.",
      "",
      "| remat_policy | temporaries (GiB) | / 'none' | arguments (GiB) | outputs (GiB) |",
      "|---|---|---|---|---|",
  ]
  for policy in network.REMAT_POLICIES:
    r = m[policy]
    lines.append(f"| {policy} | {r['temp_bytes'] / GIB:.2f} | "
                 f"{r['temp_bytes'] / m['none']['temp_bytes']:.3f} | "
                 f"{r['argument_bytes'] / GIB:.2f} | {r['output_bytes'] / GIB:.2f} |")
  lines += [
      "",
      f"'full' / 'none' temporaries: **{m['ratio_full']:.3f}** (target <= 0.35: "
      f"{'met' if m['ratio_full'] <= 0.35 else 'not met'}); 'minimal': {m['ratio_minimal']:.3f}.",
      "",
      f"## (c) Train-step time ({_shape_line(results['shapes']['step'])}, batch "
      f"{results['shapes']['step'].batch}, f32, our Adafactor; median of "
      f"{results['shapes']['step'].steps} round-robin steps)",
      "",
      "| variant | step (s) | / unrolled | compile (s) |",
      "|---|---|---|---|",
  ]
  for name, _, _ in STEP_VARIANTS:
    lines.append(f"| {name} | {s['step_s'][name]:.3f} | {s['ratio'][name]:.3f} | "
                 f"{s['compile_s'][name]:.1f} |")
  lines += [
      "",
      f"Scanned / unrolled step time: **{s['ratio']['scanned']:.3f}** (target <= 1.05: "
      f"{'met' if s['ratio']['scanned'] <= 1.05 else 'not met'}).",
      "",
  ]
  return "\n".join(lines)


def main(argv: List[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="tiny shapes (a smoke run of the script; figures meaningless)")
  parser.add_argument("--output_dir", default=HERE)
  args = parser.parse_args(argv)
  if args.quick:
    shapes = {"compile": QUICK["compile"], "memory": QUICK["memory"], "step": QUICK["step"]}
    target = QUICK["target_temp_bytes"]
  else:
    shapes = {"compile": COMPILE_SHAPES, "memory": MEMORY_SHAPES, "step": STEP_SHAPES}
    target = TARGET_TEMP_BYTES
  command = "python -m bench.scale" + (" --quick" if args.quick else "")
  start = time.perf_counter()
  results: Dict[str, Any] = {"uptime_before": _uptime(), "jax": jax.__version__,
                             "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                             "target_temp_bytes": target}
  results["compile"] = measure_compile(shapes["compile"])
  results["memory"] = measure_memory(shapes["memory"], target)
  results["steps"] = measure_steps(shapes["step"])
  results["uptime_after"] = _uptime()
  results["wall_s"] = time.perf_counter() - start
  results["shapes"] = shapes
  os.makedirs(args.output_dir, exist_ok=True)
  with open(os.path.join(args.output_dir, "scale.md"), "w") as f:
    f.write(render_markdown(results, command))
  results["shapes"] = {k: dataclasses.asdict(v) for k, v in shapes.items()}
  with open(os.path.join(args.output_dir, "scale.json"), "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  print(f"wrote {args.output_dir}/scale.{{md,json}} in {results['wall_s'] / 60:.1f} min",
        flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
