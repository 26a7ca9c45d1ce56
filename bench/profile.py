# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""Op-level profile of the compiled train step: where forward and backward spend their time.

Runs the `make bench` train step (forward + backward + Adafactor, T5.1.1-small shapes, f32)
of one method under `jax.profiler.trace`, reads the per-HLO-instruction events of the
XLA runtime from the trace (`*.xplane.pb`, parsed with the XPlane protobuf that
TensorFlow ships), and joins them with the compiled HLO module: each instruction's
output shape, opcode (fusion kind) and the JAX source op it came from. An instruction is
in the **backward** pass when its JAX name holds `transpose(` (JAX's name for the
transposed, i.e. gradient, computation), in the **forward** pass when it holds `jvp(`,
and in the **optimizer** otherwise.

Writes bench/profile.md and bench/profile.json.

  python -m bench.profile                       # vanilla, T5.1.1-small shapes
  python -m bench.profile --method hyperprompt_global --top 30
  python -m bench.profile --quick               # tiny shapes, to check the tool
  python -m bench.profile --decode              # greedy decoding: vanilla vs the prefix
                                                # models (bench/profile_decode.{md,json})
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import os
import re
import statistics
import sys
import tempfile
from typing import Any, Dict, List, Tuple

import jax
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from bench import run as bench_run

HERE = os.path.dirname(os.path.abspath(__file__))
PHASES = ("forward", "backward", "optimizer")

# `%name = f32[8,128,512]{2,1,0} fusion(...), kind=kLoop, calls=..., metadata={op_name="..."}`
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+([\w\-]+)\((.*)$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_KIND = re.compile(r"kind=(k\w+)")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")


def phase_of(op_name: str) -> str:
  """'backward' (JAX's `transpose(...)`), 'forward' (`jvp(...)`) or 'optimizer'."""
  if "transpose(" in op_name:
    return "backward"
  if "jvp(" in op_name:
    return "forward"
  return "optimizer"


def short_op_name(op_name: str) -> str:
  """The JAX op path without the jit / jvp / transpose wrappers: `.../attention/dot_general`."""
  parts = [p for p in op_name.split("/") if p and not re.match(r"^(jit|jvp|transpose)\(", p)]
  return "/".join(parts[-4:])


def parse_hlo(text: str) -> Dict[str, Dict[str, str]]:
  """`{instruction: {shape, opcode, op_name}}` of every instruction of a compiled HLO module.

  A fusion's op name is its own or, when it has none, that of the first named instruction
  of the computation it calls.
  """
  instructions: Dict[str, Dict[str, str]] = {}
  computation_op: Dict[str, str] = {}
  current = None
  for line in text.splitlines():
    stripped = line.strip()
    if stripped.endswith("{") and "=" not in stripped.split("(")[0]:
      current = stripped.split()[0].lstrip("%")
      if current == "ENTRY":
        current = stripped.split()[1].lstrip("%")
      continue
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    name, shape, opcode, rest = m.groups()
    op = _OP_NAME.search(rest)
    op_name = op.group(1) if op else ""
    if current and op_name:
      computation_op.setdefault(current, op_name)
    kind = _KIND.search(rest)
    calls = _CALLS.search(rest)
    instructions[name] = {"shape": shape.split("{")[0], "opcode": opcode,
                          "kind": kind.group(1) if kind else "",
                          "calls": calls.group(1) if calls else "", "op_name": op_name}
  for info in instructions.values():
    if not info["op_name"] and info["calls"]:
      info["op_name"] = computation_op.get(info["calls"], "")
  return instructions


def xplane_op_times(trace_dir: str) -> Dict[str, float]:
  """Total seconds per HLO instruction name over the trace's XLA runtime events."""
  paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))
  if not paths:
    raise FileNotFoundError(f"no *.xplane.pb under {trace_dir}")
  space = xplane_pb2.XSpace()
  with open(paths[-1], "rb") as f:
    space.ParseFromString(f.read())
  totals: Dict[str, float] = collections.defaultdict(float)
  for plane in space.planes:
    hlo_stat = {k for k, v in plane.stat_metadata.items() if v.name == "hlo_op"}
    for line in plane.lines:
      for event in line.events:
        if any(s.metadata_id in hlo_stat for s in event.stats):
          totals[plane.event_metadata[event.metadata_id].name] += event.duration_ps * 1e-12
  return dict(totals)


def profile_step(shapes: bench_run.Shapes, method: str, steps: int) -> Dict[str, Any]:
  """Profiles `steps` train steps of `method`; per-instruction seconds per step, joined."""
  overrides = dict(bench_run.methods()[method])
  trainable = overrides.pop("_trainable", None)
  cfg = bench_run.make_config(shapes, **overrides)
  prepared = bench_run.prepare_train_step(cfg, shapes, trainable=trainable)
  hlo = parse_hlo(prepared["hlo_text"])
  wall = []
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      wall = bench_run.timed(prepared["run"], steps)
    times = xplane_op_times(trace_dir)
  ops = []
  for name, seconds in times.items():
    info = hlo.get(name, {"shape": "?", "opcode": "?", "kind": "", "op_name": ""})
    ops.append({"instruction": name, "seconds_per_step": seconds / steps,
                "phase": phase_of(info["op_name"]), "opcode": info["opcode"],
                "kind": info["kind"], "shape": info["shape"],
                "op": short_op_name(info["op_name"])})
  ops.sort(key=lambda o: -o["seconds_per_step"])
  phases = {p: sum(o["seconds_per_step"] for o in ops if o["phase"] == p) for p in PHASES}
  by_op: Dict[Tuple[str, str], float] = collections.defaultdict(float)
  for o in ops:  # the same JAX op in every layer, summed
    by_op[(o["phase"], re.sub(r"layers_\d+", "layers_*", o["op"]))] += o["seconds_per_step"]
  grouped = sorted(({"phase": k[0], "op": k[1], "seconds_per_step": v}
                    for k, v in by_op.items()), key=lambda g: -g["seconds_per_step"])
  return {"method": method, "steps": steps, "step_s": statistics.median(wall),
          "ops_total_s": sum(o["seconds_per_step"] for o in ops), "phases": phases,
          "ops": ops, "grouped": grouped, "flops": prepared["flops"]}


def group_decode_ops(times: Dict[str, float], hlo: Dict[str, Dict[str, str]],
                     calls: int) -> Dict[str, float]:
  """Seconds per call of each JAX op of a decode program, summed over layers: `{'op
  (opcode)': s}` (the op path without its layer index)."""
  grouped: Dict[str, float] = collections.defaultdict(float)
  for name, seconds in times.items():
    info = hlo.get(name, {"opcode": "?", "op_name": ""})
    op = re.sub(r"layers_\d+", "layers_*", short_op_name(info["op_name"])) or "(unnamed)"
    grouped[f"{op} ({info['opcode']})"] += seconds / calls
  return dict(grouped)


def profile_decode(shapes: bench_run.Shapes, calls: int) -> Dict[str, Any]:
  """Profiles greedy decoding of `make bench`'s decode models (`bench_run.decode_runners`).

  Round-robin as `make bench` times them: each round traces one call of every model,
  so a change in machine load hits every model alike. Per model: median wall seconds
  per call, op seconds per call, and the ops grouped over layers; per non-vanilla
  model, the difference to vanilla's op time and the groups that grew most.
  """
  runners = bench_run.decode_runners(shapes)
  hlos = {name: parse_hlo(text) for name, (_, text) in runners.items()}
  times = {name: collections.defaultdict(float) for name in runners}
  wall: Dict[str, List[float]] = {name: [] for name in runners}
  for _ in range(calls):
    for name, (run, _) in runners.items():
      with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
          wall[name] += bench_run.timed(run, 1)
        for op, seconds in xplane_op_times(trace_dir).items():
          times[name][op] += seconds
  models = {}
  for name in runners:
    grouped = group_decode_ops(times[name], hlos[name], calls)
    models[name] = {"call_s": statistics.median(wall[name]),
                    "ops_total_s": sum(grouped.values()), "instructions": len(times[name]),
                    "grouped": dict(sorted(grouped.items(), key=lambda kv: -kv[1]))}
  base = models["vanilla"]
  for name, m in models.items():
    keys = set(m["grouped"]) | set(base["grouped"])
    diff = {k: m["grouped"].get(k, 0.0) - base["grouped"].get(k, 0.0) for k in keys}
    m["vs_vanilla"] = {"call_ratio": m["call_s"] / base["call_s"],
                       "ops_ratio": m["ops_total_s"] / base["ops_total_s"],
                       "only_here_s": sum(v for k, v in m["grouped"].items()
                                          if k not in base["grouped"]),
                       "largest_increases": dict(sorted(diff.items(), key=lambda kv: -kv[1])[:12])}
  return {"calls": calls, "tokens_per_call": shapes.batch * shapes.target_len, "models": models}


def _model_shapes(shapes: bench_run.Shapes) -> str:
  return (f"d_model {shapes.emb}, {shapes.layers}+{shapes.layers} layers, {shapes.heads} heads "
          f"x {shapes.head_dim}, d_ff {shapes.mlp}, vocab {shapes.vocab}")


def _header(title: str, command: str, machine: str, load: str) -> List[str]:
  return [f"# {title}", "", f"Command: `{command}`  ",
          f"Machine: {machine}; `uptime` load average when it started: {load}  "]


def render_decode_markdown(result: Dict[str, Any], shapes: bench_run.Shapes, top: int,
                           command: str, machine: str) -> str:
  models = result["models"]
  lines = _header("Op-level profile of greedy decoding", command, machine, result["load"]) + [
      f"Shapes: {_model_shapes(shapes)}; batch {shapes.batch}, {shapes.input_len} input "
      f"tokens, {shapes.target_len} decode steps; f32. {result['calls']} profiled calls per "
      "model, round-robin; per call: the encoder, the decode cache's creation and the "
      "decode loop.", "",
      "| model | wall s / call (median) | / vanilla | XLA op s / call | / vanilla | HLO "
      "instructions | ops only this model has (s) |", "|---|---|---|---|---|---|---|"]
  for name, m in models.items():
    v = m["vs_vanilla"]
    lines.append(f"| {name} | {m['call_s']:.3f} | {v['call_ratio']:.3f} | "
                 f"{m['ops_total_s']:.3f} | {v['ops_ratio']:.3f} | {m['instructions']} | "
                 f"{v['only_here_s']:.3f} |")
  lines += ["", "Op time sums every XLA instruction's run time over both CPU threads, so it "
            "can exceed the wall time.", "", f"## vanilla: top {top} JAX ops (summed over "
            "layers)", "", "| ms / call | share | JAX op (opcode) |", "|---|---|---|"]
  base = models["vanilla"]
  for op, sec in list(base["grouped"].items())[:top]:
    lines.append(f"| {1e3 * sec:.1f} | {sec / base['ops_total_s']:.1%} | `{op}` |")
  for name, m in models.items():
    if name == "vanilla":
      continue
    lines += ["", f"## {name}: the ops that grew most against vanilla", "",
              "| ms / call more than vanilla | JAX op (opcode) |", "|---|---|"]
    for op, sec in m["vs_vanilla"]["largest_increases"].items():
      lines.append(f"| {1e3 * sec:+.1f} | `{op}` |")
  return "\n".join(lines) + "\n"


def render_markdown(result: Dict[str, Any], shapes: bench_run.Shapes, top: int,
                    command: str, machine: str) -> str:
  total = result["ops_total_s"]
  lines = _header("Op-level profile of the train step", command, machine, result["load"]) + [
      f"Method `{result['method']}`; shapes: {_model_shapes(shapes)}; batch {shapes.batch}, "
      f"{shapes.input_len} input / {shapes.target_len} target tokens; f32. "
      f"{result['steps']} profiled steps, median step {result['step_s']:.3f} s under the "
      f"profiler; the XLA ops sum to {total:.3f} s per step.", "",
      "Phase of an op: backward when its JAX name holds `transpose(` (the gradient), forward "
      "when it holds `jvp(`, optimizer otherwise (Adafactor, the update).", "",
      "| phase | s / step | share of op time |", "|---|---|---|"]
  for p in PHASES:
    lines.append(f"| {p} | {result['phases'][p]:.3f} | {result['phases'][p] / total:.1%} |")
  forward, backward = result["phases"]["forward"], result["phases"]["backward"]
  if forward:
    lines.append(f"\nbackward / forward = {backward / forward:.2f}; "
                 f"(forward + backward) / forward = {(backward + forward) / forward:.2f}.")
  lines += ["", f"## Top {top} HLO instructions by time", "",
            "| # | phase | ms / step | share | instruction | opcode | output shape | JAX op |",
            "|---|---|---|---|---|---|---|---|"]
  for i, o in enumerate(result["ops"][:top], 1):
    opcode = o["opcode"] + (f" ({o['kind']})" if o["kind"] else "")
    lines.append(f"| {i} | {o['phase']} | {1e3 * o['seconds_per_step']:.1f} | "
                 f"{o['seconds_per_step'] / total:.1%} | `{o['instruction']}` | {opcode} | "
                 f"`{o['shape']}` | `{o['op']}` |")
  lines += ["", f"## Top {top} JAX ops, summed over layers", "",
            "| # | phase | ms / step | share | JAX op |", "|---|---|---|---|---|"]
  for i, g in enumerate(result["grouped"][:top], 1):
    lines.append(f"| {i} | {g['phase']} | {1e3 * g['seconds_per_step']:.1f} | "
                 f"{g['seconds_per_step'] / total:.1%} | `{g['op']}` |")
  return "\n".join(lines) + "\n"


def main(argv: List[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="tiny shapes (tool check)")
  parser.add_argument("--method", default="vanilla", choices=list(bench_run.methods()))
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--top", type=int, default=25)
  parser.add_argument("--decode", action="store_true",
                      help="profile greedy decoding of make bench's decode models instead "
                      "(writes profile_decode.{md,json}; --steps: calls per model)")
  parser.add_argument("--out_dir", default=HERE)
  args = parser.parse_args(argv)
  shapes = dataclasses.replace(bench_run.QUICK if args.quick else bench_run.Shapes())
  load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
  command = "python -m bench.profile " + " ".join(argv)
  os.makedirs(args.out_dir, exist_ok=True)
  if args.decode:
    result = dict(profile_decode(shapes, args.steps), load=load)
    md = render_decode_markdown(result, shapes, args.top, command.strip(), bench_run.machine())
    print(md)
    with open(os.path.join(args.out_dir, "profile_decode.json"), "w") as f:
      json.dump(result, f, indent=1)
    with open(os.path.join(args.out_dir, "profile_decode.md"), "w") as f:
      f.write(md)
    return 0
  result = profile_step(shapes, args.method, args.steps)
  result["load"] = load
  md = render_markdown(result, shapes, args.top, command.strip(), bench_run.machine())
  print(md)
  # The 200 slowest instructions (of thousands) and every grouped JAX op.
  result = dict(result, ops_total=len(result["ops"]), ops=result["ops"][:200])
  with open(os.path.join(args.out_dir, "profile.json"), "w") as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(args.out_dir, "profile.md"), "w") as f:
    f.write(md)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
