# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""`make bench`, packing: HyperPrompt-Global train steps on packed vs unpacked rows.

The examples are the real training split of this repository's WordNet mixture
`wordnet_lexical_v1` (five tasks, byte vocabulary, examples-proportional; see
tasks/wordnet.py), read through seqio exactly as the launcher reads them: the
unpacked rows with `EncDecFeatureConverter(pack=False)`, the packed rows with
`EncDecFeatureConverter(pack=True)` (every segment keeps its task sentinel and is
conditioned on its own task). For each input/target length (512/128, t5's GLUE
setting, and 128/32), in one run, side by side (steps interleaved):

  * non-padding tokens per second of a full train step (forward, backward,
    Adafactor) of HyperPrompt-Global, packed vs unpacked, with the same rows per
    batch: tokens are the mean non-padding encoder + decoder tokens per batch over
    `--sample_batches` batches of the pipeline; the step time is the median;
  * the padding fraction of both layouts;
  * the extra cost of the prompt slots: every query attends to `l` prompt keys
    unpacked and to the `T * l` slots of every task packed (masked to its own
    task's); measured as the HyperPrompt-Global step over the vanilla T5 step on
    the same batch, and counted as extra attention keys.

The model is small (width 128, 2+2 layers, 4 heads of 32, MLP 256, l = 16) so the
run takes a few minutes on a CPU; at T5 widths the MLPs dominate more and the
relative cost of the prompt slots is smaller.

  python -m bench.packing            # -> bench/packing.md, bench/packing.json
  python -m bench.packing --quick    # 128/32 only, fewer steps (harness check)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Dict, List

import jax
import jax.numpy as jnp
import numpy as np
import seqio

from bench import run as bench_run
from hyperprompt_jax import data as data_lib

HERE = os.path.dirname(os.path.abspath(__file__))
MIXTURE = "wordnet_lexical_v1"
VOCAB, SENTINEL, NUM_TASKS = 384, 358, 5  # byte vocabulary, <extra_id_0>, the five tasks
LENGTHS = ((512, 128), (128, 32))
SHAPES = bench_run.Shapes(vocab=VOCAB, emb=128, layers=2, heads=4, head_dim=32, mlp=256,
                          batch=8, num_tasks=NUM_TASKS, steps=10)


def batches(lengths, pack: bool, count: int, batch_size: int) -> List[Dict[str, np.ndarray]]:
  """`count` batches of `MIXTURE`'s training split as the launcher builds them."""
  cfg = data_lib.DatasetConfig(MIXTURE, {"inputs": lengths[0], "targets": lengths[1]}, "train",
                               batch_size, shuffle=True, seed=0, pack=pack,
                               module="hyperprompt_tasks")
  it = data_lib.DatasetIterator(data_lib.get_dataset(cfg, 0, 1, seqio.EncDecFeatureConverter))
  return [next(it) for _ in range(count)]


def token_stats(sample: List[Dict[str, np.ndarray]]) -> Dict[str, float]:
  """Mean non-padding tokens per batch, padding fraction, segments per row."""
  tokens = np.mean([data_lib.batch_token_count(b) for b in sample])
  slots = sum(b["encoder_input_tokens"].size + b["decoder_target_tokens"].size for b in sample)
  out = {"tokens_per_batch": float(tokens),
         "padding_fraction": 1.0 - float(tokens) * len(sample) / slots}
  if "encoder_segment_ids" in sample[0]:
    out["segments_per_row"] = float(np.mean([b["encoder_segment_ids"].max(axis=1).mean()
                                             for b in sample]))
  else:
    out["segments_per_row"] = 1.0
  return out


def prompt_keys(lengths, prompt_length: int) -> Dict[str, Any]:
  """Keys per self-attention query: tokens + prompt slots, unpacked (l) vs packed (T*l)."""
  out = {}
  for stack, n in zip(("encoder", "decoder"), lengths):
    out[stack] = {"tokens": n, "unpacked_slots": prompt_length,
                  "packed_slots": NUM_TASKS * prompt_length,
                  "unpacked_extra_pct": 100.0 * prompt_length / n,
                  "packed_extra_pct": 100.0 * NUM_TASKS * prompt_length / n}
  return out


def measure(lengths, shapes: bench_run.Shapes, sample_batches: int) -> Dict[str, Any]:
  shapes = dataclasses.replace(shapes, input_len=lengths[0], target_len=lengths[1])
  runners, result = {}, {"lengths": list(lengths), "layouts": {}}
  for layout, pack in (("unpacked", False), ("packed", True)):
    sample = batches(lengths, pack, sample_batches, shapes.batch)
    stats = token_stats(sample)
    batch = {k: jnp.asarray(v, jnp.float32 if "weights" in k else jnp.int32)
             for k, v in sample[0].items()}
    for method, overrides in (("hyperprompt_global", dict(bench_run.HYPERPROMPT,
                                                          hyperprompt_variant="global")),
                              ("vanilla", dict(hyperprompt_variant="none"))):
      cfg = bench_run.make_config(shapes, task_sentinel_id=SENTINEL, **overrides)
      prepared = bench_run.prepare_train_step(cfg, shapes, batch=batch)
      runners[(layout, method)] = prepared["run"]
      print(f"{lengths}: compiled {layout} {method} in {prepared['compile_s']:.1f}s", flush=True)
    result["layouts"][layout] = stats
  step_s = bench_run.time_interleaved(runners, shapes.steps)
  for (layout, method), seconds in step_s.items():
    r = result["layouts"][layout]
    r[f"{method}_step_s"] = seconds
    r[f"{method}_tokens_per_s"] = r["tokens_per_batch"] / seconds
  for r in result["layouts"].values():
    r["prompt_overhead_pct"] = 100.0 * (r["hyperprompt_global_step_s"] / r["vanilla_step_s"] - 1)
  lay = result["layouts"]
  result["packed_over_unpacked"] = (lay["packed"]["hyperprompt_global_tokens_per_s"]
                                    / lay["unpacked"]["hyperprompt_global_tokens_per_s"])
  result["prompt_keys"] = prompt_keys(lengths, bench_run.HYPERPROMPT["prompt_length"])
  print(f"{lengths}: packed / unpacked tokens/s = {result['packed_over_unpacked']:.2f}x",
        flush=True)
  return result


def render_markdown(results: Dict[str, Any], command: str) -> str:
  s = results["shapes"]
  lines = [
      "# Packed vs unpacked multi-task rows (HyperPrompt-Global train step)", "",
      f"`{command}` on {results['machine']}; load average {results['load']}. Data: the "
      f"training split of `{MIXTURE}` (this repository's five WordNet tasks, byte "
      "vocabulary), through seqio's `EncDecFeatureConverter(pack=False / pack=True)`. Model: "
      f"width {s['emb']}, {s['layers']}+{s['layers']} layers, {s['heads']} heads of "
      f"{s['head_dim']}, MLP {s['mlp']}, {NUM_TASKS} tasks, prompt length "
      f"{bench_run.HYPERPROMPT['prompt_length']}, batch {s['batch']} rows, float32; median of "
      f"{s['steps']} interleaved steps; tokens = mean non-padding input + target tokens per "
      f"batch over {results['sample_batches']} batches.", "",
      "| inputs/targets | layout | segments/row | padding | non-padding tokens/batch | "
      "step (s) | tokens/s | vanilla step (s) | prompt-slot cost |",
      "|---|---|---|---|---|---|---|---|---|"]
  for r in results["runs"]:
    for layout in ("unpacked", "packed"):
      x = r["layouts"][layout]
      lines.append(
          f"| {r['lengths'][0]}/{r['lengths'][1]} | {layout} | {x['segments_per_row']:.1f} | "
          f"{100 * x['padding_fraction']:.1f}% | {x['tokens_per_batch']:.0f} | "
          f"{x['hyperprompt_global_step_s']:.3f} | {x['hyperprompt_global_tokens_per_s']:.0f} | "
          f"{x['vanilla_step_s']:.3f} | {x['prompt_overhead_pct']:+.1f}% |")
  lines += ["", "| inputs/targets | packed / unpacked non-padding tokens/s |", "|---|---|"]
  for r in results["runs"]:
    lines.append(f"| {r['lengths'][0]}/{r['lengths'][1]} | **{r['packed_over_unpacked']:.2f}x** |")
  lines += ["", "Prompt slots per self-attention query (extra keys over the row's tokens):", "",
            "| inputs/targets | stack | tokens | unpacked: l slots | packed: T*l slots |",
            "|---|---|---|---|---|"]
  for r in results["runs"]:
    for stack, k in r["prompt_keys"].items():
      lines.append(f"| {r['lengths'][0]}/{r['lengths'][1]} | {stack} | {k['tokens']} | "
                   f"{k['unpacked_slots']} (+{k['unpacked_extra_pct']:.1f}%) | "
                   f"{k['packed_slots']} (+{k['packed_extra_pct']:.1f}%) |")
  lines += ["", "*prompt-slot cost*: the HyperPrompt-Global step over the vanilla T5 step on "
            "the same batch (hypernetworks, prompt slots and their masks together).", ""]
  return "\n".join(lines)


def main(argv: List[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="128/32 only, 3 steps")
  parser.add_argument("--out_dir", default=HERE)
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--sample_batches", type=int, default=20)
  args = parser.parse_args(argv)
  shapes = dataclasses.replace(SHAPES, steps=args.steps or (3 if args.quick else SHAPES.steps))
  lengths = LENGTHS[1:] if args.quick else LENGTHS
  results: Dict[str, Any] = {
      "shapes": dataclasses.asdict(shapes), "sample_batches": args.sample_batches,
      "machine": bench_run.machine(),
      "runs": [measure(l, shapes, args.sample_batches) for l in lengths]}
  results["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
  command = "python -m bench.packing" + (" --quick" if args.quick else "")
  os.makedirs(args.out_dir, exist_ok=True)
  with open(os.path.join(args.out_dir, "packing.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(args.out_dir, "packing.md"), "w") as f:
    f.write(render_markdown(results, command))
  print(f"wrote {args.out_dir}/packing.md, packing.json")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
