# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""`make bench`: cost of every task-conditioning method against vanilla T5 and against HF.

One run, one machine, all ratios against baselines measured in the same run:
  * train-step time of every method / vanilla T5 (median of >= 10 steps after compile);
  * our vanilla train step vs Hugging Face `transformers` T5 (PyTorch, CPU, same threads)
    full fine-tuning, and HF + PEFT prefix tuning vs our Prefix-Tuning;
  * achieved FLOP/s of our train step (XLA cost analysis) / measured f32 matmul peak;
  * greedy decode tokens/s: vanilla, HyperPrompt-Global (hypernetworks), exported prompts,
    HF generate;
  * peak memory of the train step (XLA memory analysis) and parameter counts per method.

Writes bench/results.md, bench/results.json and bench/results.png.

  python -m bench.run                 # T5.1.1-small shapes (d 512, 8+8 layers, 6x64 heads, ff 1024)
  python -m bench.run --quick         # tiny shapes, to check the harness
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hyperprompt_jax import models
from hyperprompt_jax import network
from hyperprompt_jax import params as params_lib

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclasses.dataclass
class Shapes:
  vocab: int = 32128
  emb: int = 512
  layers: int = 8
  heads: int = 6
  head_dim: int = 64
  mlp: int = 1024
  batch: int = 8
  input_len: int = 128
  target_len: int = 32
  num_tasks: int = 8
  steps: int = 10


QUICK = Shapes(vocab=512, emb=64, layers=2, heads=4, head_dim=16, mlp=128, batch=4,
               input_len=32, target_len=8, steps=10)

# Method name -> T5Config overrides. Baselines appear when the network supports them.
HYPERPROMPT = dict(prompt_length=16, prompt_bottleneck_dim=32, task_embed_dim=32,
                   layer_task_dim=32, task_hidden_dim=64)


def methods() -> Dict[str, Dict[str, Any]]:
  out = {"vanilla": dict(hyperprompt_variant="none"),
         # t5x's TPU choice, for reference: the embedding as a one-hot matmul.
         "vanilla_one_hot_embedding": dict(hyperprompt_variant="none", one_hot_embedding=True)}
  for v in ("share", "sep", "global"):
    out[f"hyperprompt_{v}"] = dict(hyperprompt_variant=v, **HYPERPROMPT)
  fields = {f.name for f in dataclasses.fields(network.T5Config)}
  if "conditioning" in fields:
    for name in ("prefix_tuning", "prompt_tuning", "adapters", "hyperformer"):
      out[name] = dict(conditioning=name, hyperprompt_variant="none")
  # Where HyperPrompt's cost comes from: the prompt length, and each stack's share.
  out["hyperprompt_share_prompt_length_1"] = dict(out["hyperprompt_share"], prompt_length=1)
  for stack in ("encoder", "decoder"):
    out[f"hyperprompt_share_{stack}_only"] = dict(out["hyperprompt_share"],
                                                  hyperprompt_placement=stack)
  # Backbone frozen (gradients and optimizer state of the conditioning parameters only),
  # the setting of HF PEFT's prefix tuning.
  out["hyperprompt_global_frozen_backbone"] = dict(out["hyperprompt_global"],
                                                   _trainable="hyperprompt")
  # Mixed precision (gin/precision/bf16.gin): bfloat16 activations, float32 params/state.
  out["vanilla_bf16"] = dict(out["vanilla"], dtype=jnp.bfloat16)
  out["hyperprompt_global_bf16"] = dict(out["hyperprompt_global"], dtype=jnp.bfloat16)
  if "prefix_tuning" in out:
    # PEFT's prefixes for T5 reach the decoder's self-attention only (its past_key_values).
    out["prefix_tuning_frozen_backbone"] = dict(out["prefix_tuning"], prefix_placement="decoder",
                                                _trainable="prefix_tuning")
  return out


def make_config(shapes: Shapes, **overrides) -> network.T5Config:
  kwargs = dict(vocab_size=shapes.vocab, dtype=jnp.float32, emb_dim=shapes.emb,
                num_heads=shapes.heads, num_encoder_layers=shapes.layers,
                num_decoder_layers=shapes.layers, head_dim=shapes.head_dim, mlp_dim=shapes.mlp,
                mlp_activations=("gelu", "linear"), dropout_rate=0.0,
                logits_via_embedding=False, num_tasks=shapes.num_tasks,
                task_sentinel_id=shapes.vocab - 29,  # <extra_id_0> of T5's 32100-id vocabulary
                # Gathered embeddings, as on CPU/GPU (and in HF); t5x's one-hot matmul is a row.
                one_hot_embedding=False)
  kwargs.update(overrides)
  return network.T5Config(**kwargs)


def make_batch(shapes: Shapes, cfg: network.T5Config, seed: int = 0) -> Dict[str, jax.Array]:
  rng = np.random.RandomState(seed)
  b, le, ld = shapes.batch, shapes.input_len, shapes.target_len
  enc = rng.randint(3, cfg.task_sentinel_id - cfg.num_tasks, size=(b, le))
  enc[:, 0] = cfg.task_sentinel_id - np.arange(b) % cfg.num_tasks  # a mixed-task batch
  dec = rng.randint(3, cfg.task_sentinel_id - cfg.num_tasks, size=(b, ld))
  return {
      "encoder_input_tokens": jnp.asarray(enc, jnp.int32),
      "decoder_target_tokens": jnp.asarray(dec, jnp.int32),
      "decoder_input_tokens": jnp.asarray(
          np.concatenate([np.zeros((b, 1), int), dec[:, :-1]], 1), jnp.int32),
      "decoder_loss_weights": jnp.ones((b, ld), jnp.float32),
  }


def timed(fn: Callable[[], Any], steps: int) -> List[float]:
  """Seconds of each of `steps` calls, waiting for JAX results (others pass through)."""
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def init_model(cfg: network.T5Config, shapes: Shapes, init: bool = True,
               batch: Optional[Dict[str, jax.Array]] = None):
  """`(model, batch, params)`: the model of `cfg`, its benchmark batch (`make_batch`
  unless given), params of seed 0 (None with `init=False`)."""
  model = models.EncoderDecoderModel(network.Transformer(config=cfg))
  batch = make_batch(shapes, cfg) if batch is None else batch
  if not init:
    return model, batch, None
  params = model.get_initial_variables(jax.random.PRNGKey(0), {
      "encoder_input_tokens": batch["encoder_input_tokens"].shape,
      "decoder_input_tokens": batch["decoder_input_tokens"].shape})["params"]
  return model, batch, params


def prepare_train_step(cfg: network.T5Config, shapes: Shapes,
                       trainable: Optional[str] = None,
                       batch: Optional[Dict[str, jax.Array]] = None) -> Dict[str, Any]:
  """Compiles forward+backward+Adafactor; returns its runner, XLA FLOPs and memory.

  `trainable`: a top-level parameter collection (e.g. 'hyperprompt') that alone is
  differentiated and updated; None trains every parameter. `batch`: the batch every
  step trains on (default `make_batch`; packed batches carry segment ids).
  """
  model, batch, params = init_model(cfg, shapes, batch=batch)
  params = dict(params)
  frozen = {} if trainable is None else {k: v for k, v in params.items() if k != trainable}
  params = params if trainable is None else {trainable: params[trainable]}
  opt = optax.adafactor(1e-3)
  state = opt.init(params)

  def loss_fn(params, frozen, batch):
    return model.loss_fn({**frozen, **params}, batch, None)

  def step(params, state, frozen, batch):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, frozen, batch)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  compile_start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, frozen, batch).compile()
  compile_s = time.perf_counter() - compile_start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  mem = compiled.memory_analysis()
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves((params, frozen)))
  carry = {"params": params, "state": state}

  def run():
    carry["params"], carry["state"], loss = compiled(carry["params"], carry["state"], frozen,
                                                     batch)
    return loss

  jax.block_until_ready(run())  # warm-up
  peak = None
  if mem is not None:
    peak = int(mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
               - mem.alias_size_in_bytes)
  return {"run": run, "compile_s": compile_s, "flops": float(cost.get("flops", float("nan"))),
          "peak_bytes": peak, "params": n_params, "hlo_text": compiled.as_text()}


def phase_times(cfg: network.T5Config, shapes: Shapes) -> Dict[str, float]:
  """Median seconds of the train step's phases (vanilla): forward (loss), forward+backward,
  and the Adafactor update alone; to locate a gap against HF's same phases."""
  model, batch, params = init_model(cfg, shapes)
  loss = lambda p, b: model.loss_fn(p, b, None)[0]
  forward = jax.jit(loss)
  forward_backward = jax.jit(jax.value_and_grad(loss))
  opt = optax.adafactor(1e-3)
  state = opt.init(params)
  grads = forward_backward(params, batch)[1]
  update = jax.jit(opt.update)
  out = {}
  for name, fn in (("forward_s", lambda: forward(params, batch)),
                   ("forward_backward_s", lambda: forward_backward(params, batch)),
                   ("optimizer_s", lambda: update(grads, state, params))):
    jax.block_until_ready(fn())
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out[name] = statistics.median(timed(fn, shapes.steps))
    # MiB of fresh pages the kernel mapped and zeroed per call (minor page faults): the
    # temporaries XLA:CPU allocates per execution and the allocator unmaps again.
    out[name.replace("_s", "_page_fault_mib")] = (
        (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
        * os.sysconf("SC_PAGE_SIZE") / 2**20 / shapes.steps)
  return out


def time_interleaved(runners: Dict[str, Callable[[], Any]], steps: int) -> Dict[str, float]:
  """Median seconds per call of each runner, measured round-robin.

  One step of every method per round, so a change in machine load during the run
  hits every method alike and the ratios against vanilla stay fair.
  """
  times: Dict[str, List[float]] = {name: [] for name in runners}
  for _ in range(steps):
    for name, run in runners.items():
      times[name] += timed(run, 1)
  return {name: statistics.median(t) for name, t in times.items()}


# Dense (no sparsity) peak TFLOP/s per chip from the vendors' data sheets, by a substring of
# `jax.Device.device_kind`: (bfloat16, float32 matmuls). On NVIDIA GPUs from Ampere on,
# XLA runs float32 matmuls on TF32 tensor cores at JAX's default precision, so their
# float32 peak is the TF32 one. First match wins (longer names first).
PEAK_TFLOPS = (
    ("H200", (989.0, 494.5)), ("H100", (989.0, 494.5)), ("GH200", (989.0, 494.5)),
    ("B200", (2250.0, 1100.0)), ("A100", (312.0, 156.0)), ("A10", (125.0, 62.5)),
    ("L40S", (362.0, 183.0)), ("L4", (121.0, 60.0)), ("V100", (125.0, 15.7)),
    ("T4", (65.0, 8.1)),
    ("TPU v6", (918.0, 918.0)), ("TPU v5p", (459.0, 459.0)), ("TPU v5", (197.0, 197.0)),
    ("TPU v4", (275.0, 275.0)), ("TPU v3", (123.0, 123.0)),
)


def device_peak_flops(dtype: Any) -> Optional[float]:
  """Data-sheet peak FLOP/s of `jax.devices()[0]` for `dtype` matmuls (None: not listed,
  e.g. a CPU, whose peak is measured instead)."""
  kind = jax.devices()[0].device_kind
  for name, (bf16, f32) in PEAK_TFLOPS:
    if name.lower() in kind.lower():
      return 1e12 * (bf16 if jnp.dtype(dtype) == jnp.bfloat16 else f32)
  return None


def matmul_peak_flops(n: int = 2048, steps: int = 10, dtype: Any = jnp.float32) -> float:
  """Measured `dtype` matmul FLOP/s on this machine (best of `steps`)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
  mm = jax.jit(jnp.matmul)
  jax.block_until_ready(mm(a, b))
  return 2 * n ** 3 / min(timed(lambda: mm(a, b), steps))


def prepare_decode(cfg: network.T5Config, shapes: Shapes, params=None
                   ) -> Tuple[Callable[[], Any], str]:
  """Compiled greedy decode of one batch (batch x target_len tokens, cached decoding):
  `(run, compiled HLO text)`."""
  model, batch, initial = init_model(cfg, shapes, init=params is None)
  params = initial if params is None else params
  # The decode loop is a fixed-length scan, so every method decodes the same number of steps.
  compiled = jax.jit(lambda p, b: model.predict_batch_with_aux(p, b)[0]).lower(
      params, batch).compile()
  jax.block_until_ready(compiled(params, batch))
  return (lambda: compiled(params, batch)), compiled.as_text()


def decode_runners(shapes: Shapes) -> Dict[str, Tuple[Callable[[], Any], str]]:
  """The decoding benchmark's models, prepared (`prepare_decode`): vanilla,
  HyperPrompt-Global with its hypernetworks, its exported prompts, and Prefix-Tuning (its
  reparametrisation MLP) at the same prefix length as the prompts."""
  van_cfg = make_config(shapes, hyperprompt_variant="none")
  glob_cfg = make_config(shapes, hyperprompt_variant="global", **HYPERPROMPT)
  from hyperprompt_jax import export  # pylint: disable=g-import-not-at-top
  _, _, glob_params = init_model(glob_cfg, shapes)  # one init for both Global models
  runners = {
      "vanilla": prepare_decode(van_cfg, shapes),
      "hyperprompt_global": prepare_decode(glob_cfg, shapes, params=glob_params),
  }
  exp_cfg, exp_params = export.export_prompts(glob_cfg, glob_params)
  runners["exported_prompts"] = prepare_decode(exp_cfg, shapes, params=exp_params)
  runners["prefix_tuning"] = prepare_decode(
      make_config(shapes, conditioning="prefix_tuning", hyperprompt_variant="none",
                  prefix_length=HYPERPROMPT["prompt_length"]), shapes)
  return runners


def bench_decode(shapes: Shapes, repeats: int) -> Dict[str, Dict[str, float]]:
  """Greedy decode tokens/s of the `decode_runners` models, timed round-robin."""
  seconds = time_interleaved({name: run for name, (run, _) in decode_runners(shapes).items()},
                             repeats)
  return {name: {"decode_s": t, "tokens_per_s": shapes.batch * shapes.target_len / t}
          for name, t in seconds.items()}


def hf_bench(shapes: Shapes, threads: int) -> Dict[str, Any]:
  """HF transformers T5 (v1.1 layout) train step, PEFT prefix tuning, and greedy generate."""
  try:
    import torch
    import transformers
  except ImportError as e:  # pragma: no cover - bench extras missing
    return {"error": f"transformers/torch not installed: {e}"}
  torch.set_num_threads(threads)
  # XLA:CPU runs with denormals flushed to zero (FTZ/DAZ); without it PyTorch's backward
  # slowed down 1.6x on this machine once training had moved the weights (2026-12-01).
  torch.set_flush_denormal(True)
  torch.manual_seed(0)
  hf_cfg = transformers.T5Config(
      vocab_size=shapes.vocab, d_model=shapes.emb, d_kv=shapes.head_dim, d_ff=shapes.mlp,
      num_layers=shapes.layers, num_decoder_layers=shapes.layers, num_heads=shapes.heads,
      feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
  rng = np.random.RandomState(0)
  inputs = torch.tensor(rng.randint(3, shapes.vocab - 100, size=(shapes.batch, shapes.input_len)))
  labels = torch.tensor(rng.randint(3, shapes.vocab - 100, size=(shapes.batch, shapes.target_len)))
  out: Dict[str, Any] = {"transformers": transformers.__version__, "torch": torch.__version__}
  # PyTorch's f32 matmul on the same threads, as `matmul_peak_flops` measures XLA's: the bound
  # that the matmul kernels put on a matmul-bound step's ours / HF.
  n = 2048
  a, b = torch.randn(n, n), torch.randn(n, n)
  a @ b
  out["matmul_peak_gflops"] = 2 * n ** 3 / min(timed(lambda: a @ b, 10)) / 1e9

  def adafactor(parameters):
    # optax.adafactor(1e-3)'s settings: a fixed rate scaled by each parameter's RMS.
    return transformers.optimization.Adafactor(
        parameters, lr=1e-3, relative_step=False, scale_parameter=True, warmup_init=False)

  def train_time(model) -> float:
    opt = adafactor([p for p in model.parameters() if p.requires_grad])
    model.train()

    def step():
      opt.zero_grad(set_to_none=True)
      loss = model(input_ids=inputs, labels=labels).loss
      loss.backward()
      opt.step()

    step()
    return statistics.median(timed(step, shapes.steps))

  model = transformers.T5ForConditionalGeneration(hf_cfg)
  # The same phases as `phase_times`, on the freshly initialised model as ours are.
  def forward():
    with torch.no_grad():
      model(input_ids=inputs, labels=labels)

  def forward_backward():
    model.zero_grad(set_to_none=True)
    model(input_ids=inputs, labels=labels).loss.backward()

  model.train()
  hf_opt = adafactor(model.parameters())
  state = {k: v.clone() for k, v in model.state_dict().items()}
  forward_backward()
  for name, fn in (("forward_s", forward), ("forward_backward_s", forward_backward),
                   ("optimizer_s", hf_opt.step)):
    fn()
    out[name] = statistics.median(timed(fn, shapes.steps))
  model.load_state_dict(state)  # the optimizer phase moved the weights
  out["train_step_s"] = train_time(model)
  model.eval()
  with torch.no_grad():
    gen = lambda: model.generate(input_ids=inputs, max_new_tokens=shapes.target_len,
                                 min_new_tokens=shapes.target_len, do_sample=False, num_beams=1)
    gen()
    generate_s = statistics.median(timed(gen, shapes.steps))
  out["generate_tokens_per_s"] = shapes.batch * shapes.target_len / generate_s
  try:
    import peft
    prefix_model = peft.get_peft_model(
        transformers.T5ForConditionalGeneration(hf_cfg),
        peft.PrefixTuningConfig(task_type=peft.TaskType.SEQ_2_SEQ_LM,
                                num_virtual_tokens=HYPERPROMPT["prompt_length"],
                                # PEFT assumes heads x d_kv == d_model unless told.
                                token_dim=shapes.heads * shapes.head_dim,
                                num_attention_heads=shapes.heads))
    out["peft_prefix_train_step_s"] = train_time(prefix_model)
  except Exception as e:  # PEFT API drift must not sink the whole benchmark.
    out["peft_error"] = f"{type(e).__name__}: {e}"
  return out


def write_chart(results: Dict[str, Any], path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = list(results["methods"])
  ratios = [results["methods"][n]["train_ratio_vs_vanilla"] for n in names]
  fig, ax = plt.subplots(figsize=(8, 4))
  ax.bar(names, ratios, color=["grey"] + ["C0"] * (len(names) - 1))
  ax.axhline(1.0, color="k", lw=0.8)
  ax.set_ylabel("train step time / vanilla T5")
  ax.set_title("Train-step cost of task conditioning (same run, same shapes)")
  plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def render_markdown(results: Dict[str, Any], command: str) -> str:
  s = results["shapes"]
  lines = [
      "# Benchmark results", "",
      f"Command: `{command}`  ",
      f"Machine: {results['machine']}  ",
      f"Shapes: d_model {s['emb']}, {s['layers']}+{s['layers']} layers, {s['heads']} heads x "
      f"{s['head_dim']}, d_ff {s['mlp']}, vocab {s['vocab']}; batch {s['batch']}, "
      f"{s['input_len']} input / {s['target_len']} target tokens; f32 (rows `*_bf16`: "
      f"bfloat16 activations, f32 parameters and optimizer state); {results['threads']} "
      f"threads; median of {s['steps']} steps after compile, methods timed round-robin "
      "(one step of each per round) so machine-load changes hit all alike.", "",
      "## Train step per method", "",
      "| method | step (s) | / vanilla | params | added % | peak memory (MiB) | GFLOP/step | "
      "MFU |", "|---|---|---|---|---|---|---|---|"]
  for name, r in results["methods"].items():
    mem = f"{r['peak_bytes'] / 2**20:.0f}" if r.get("peak_bytes") else "n/a"
    lines.append(
        f"| {name} | {r['step_s']:.3f} | {r['train_ratio_vs_vanilla']:.3f} | {r['params']:,} | "
        f"{r['added_pct']:.3f} | {mem} | {r['flops'] / 1e9:.1f} | {r['mfu']:.2f} |")
  lines += ["", f"Measured matmul peak: f32 {results['matmul_peak_gflops']:.1f}, bf16 "
            f"{results.get('bf16_matmul_peak_gflops', float('nan')):.1f} GFLOP/s; the last "
            f"column (MFU) is each row's FLOP/s over the {results.get('peak_source', 'measured')} "
            f"peak of its activation dtype ({results.get('device_kind', '')}: "
            + ", ".join(f"{k} {v:.1f}" for k, v in results.get("peak_gflops", {}).items())
            + " GFLOP/s). "
            "Every method embeds tokens by gathering rows (`one_hot_embedding=False`, as "
            "HF does); `vanilla_one_hot_embedding` is t5x's one-hot matmul (its TPU choice). "
            "`*_frozen_backbone`: only the conditioning parameters are differentiated and "
            "updated; every other row trains the whole model (multi-task fine-tuning). "
            "`prefix_tuning_frozen_backbone` puts its prefixes in the decoder only, where "
            "HF PEFT's prefix tuning puts them for T5 (so neither backpropagates through the "
            "encoder); HyperPrompt and the other rows condition encoder and decoder. "
            "`hyperprompt_share_prompt_length_1` / `_encoder_only` / `_decoder_only` split "
            "HyperPrompt-Share's cost into what does not depend on the prompt length and each "
            "stack's part.", ""]
  hf = results.get("hf", {})
  lines += ["## Against Hugging Face transformers (PyTorch, CPU, same threads)", ""]
  if "train_step_s" in hf:
    lines.append("| comparison | ours (s) | theirs (s) | ours / theirs |")
    lines.append("|---|---|---|---|")
    ours = results["methods"]["vanilla"]["step_s"]
    lines.append(f"| full fine-tuning train step | {ours:.3f} | {hf['train_step_s']:.3f} | "
                 f"{ours / hf['train_step_s']:.3f} |")
    peft_s = hf.get("peft_prefix_train_step_s")
    for label, ours_name in (("prefix tuning, frozen backbone (PEFT)",
                              "prefix_tuning_frozen_backbone"),
                             ("HyperPrompt-Global vs PEFT prefix tuning, frozen backbones",
                              "hyperprompt_global_frozen_backbone")):
      if peft_s and ours_name in results["methods"]:
        ours_p = results["methods"][ours_name]["step_s"]
        lines.append(f"| {label} | {ours_p:.3f} | {peft_s:.3f} | {ours_p / peft_s:.3f} |")
    if "forward_s" in hf and "phases" in results:
      lines += ["", "Phases of the full fine-tuning step (vanilla, medians, same run):", "",
                "| phase | ours (s) | HF (s) | ours / HF |", "|---|---|---|---|"]
      for key, label in (("forward_s", "forward (loss)"),
                         ("forward_backward_s", "forward + backward"),
                         ("optimizer_s", "Adafactor update")):
        o, t = results["phases"][key], hf[key]
        lines.append(f"| {label} | {o:.3f} | {t:.3f} | {o / t:.3f} |")
      ph = results["phases"]
      if "forward_page_fault_mib" in ph:
        lines.append("")
        lines.append(
            f"(forward + backward) / forward: ours {ph['forward_backward_s'] / ph['forward_s']:.2f}, "
            f"HF {hf['forward_backward_s'] / hf['forward_s']:.2f}. Fresh pages the kernel mapped "
            f"per call of ours (minor page faults): forward {ph['forward_page_fault_mib']:.0f} MiB, "
            f"forward + backward {ph['forward_backward_page_fault_mib']:.0f} MiB, Adafactor "
            f"{ph['optimizer_page_fault_mib']:.0f} MiB (bench/profile.md).")
    if "matmul_peak_gflops" in hf:
      ours_mm, hf_mm = results["matmul_peak_gflops"], hf["matmul_peak_gflops"]
      lines.append(f"\nf32 matmul peak (2048 x 2048, best of 10, same threads): XLA:CPU "
                   f"{ours_mm:.1f}, PyTorch {hf_mm:.1f} GFLOP/s; XLA / PyTorch time per matmul "
                   f"{hf_mm / ours_mm:.2f}.")
    if "peft_error" in hf:
      lines.append(f"\nPEFT prefix tuning could not run: {hf['peft_error']}")
    lines.append(f"\ntransformers {hf['transformers']}, torch {hf['torch']}.")
  else:
    lines.append(f"not measured: {hf.get('error')}")
  lines += ["", "## Greedy decoding", "", "| model | tokens/s | / vanilla |", "|---|---|---|"]
  van = results["decode"]["vanilla"]["tokens_per_s"]
  for name, r in results["decode"].items():
    lines.append(f"| {name} | {r['tokens_per_s']:.1f} | {r['tokens_per_s'] / van:.3f} |")
  if "generate_tokens_per_s" in hf:
    lines.append(f"| HF generate (greedy) | {hf['generate_tokens_per_s']:.1f} | "
                 f"{hf['generate_tokens_per_s'] / van:.3f} |")
  lines.append("")
  lines.append("Decode time ratios (time per token / vanilla): " + ", ".join(
      f"{n} {van / r['tokens_per_s']:.3f}" for n, r in results["decode"].items()))
  lines.append("")
  lines.append(f"Greedy decoding of the whole batch ({s['batch']} x {s['target_len']} tokens, "
               "fixed length), timed round-robin like the train steps. `exported_prompts`: the "
               "HyperPrompt-Global model after `export.export_prompts` (hypernetworks "
               "dropped, per-task per-layer prompts kept); `prefix_tuning`: Prefix-Tuning "
               "with its MLP reparametrisation at the same prefix length. The decode cache is "
               "made from the real inputs (`Transformer.init_decode_cache`): the encoded "
               "inputs' cross-attention keys/values and the decoder's prefixes are computed "
               "once per decode call, and the steps only read them. Median of "
               f"{results['decode_repeats']} calls per model.")
  return "\n".join(lines) + "\n"


def machine() -> str:
  """This machine in words: CPU threads, JAX version, backend and device kind."""
  threads = os.cpu_count() or 1
  device = jax.devices()[0]
  kind = "" if device.platform == "cpu" else f" ({device.device_kind})"
  return (f"{platform.machine()} {platform.processor() or ''} {threads} CPU threads, "
          f"jax {jax.__version__} on {jax.default_backend()}{kind}").strip()


def main(argv: List[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="tiny shapes (harness check)")
  parser.add_argument("--out_dir", default=HERE)
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--skip_hf", action="store_true")
  parser.add_argument("--methods", default=None,
                      help="comma-separated train-step rows to run (default: all; "
                           "'vanilla' is always included)")
  args = parser.parse_args(argv)
  shapes = dataclasses.replace(QUICK if args.quick else Shapes())
  if args.steps:
    shapes.steps = args.steps
  threads = os.cpu_count() or 1
  results: Dict[str, Any] = {
      "shapes": dataclasses.asdict(shapes), "threads": threads,
      "machine": machine(),
      "methods": {}, "decode": {}}
  results["matmul_peak_gflops"] = matmul_peak_flops() / 1e9
  results["bf16_matmul_peak_gflops"] = matmul_peak_flops(dtype=jnp.bfloat16) / 1e9
  results["device_kind"] = jax.devices()[0].device_kind
  # MFU is against the data-sheet peak of a known accelerator, else the measured peak.
  peaks = {}
  for dtype, measured in ((jnp.float32, results["matmul_peak_gflops"]),
                          (jnp.bfloat16, results["bf16_matmul_peak_gflops"])):
    sheet = device_peak_flops(dtype)
    peaks[jnp.dtype(dtype).name] = sheet if sheet is not None else measured * 1e9
  results["peak_gflops"] = {k: v / 1e9 for k, v in peaks.items()}
  results["peak_source"] = ("data sheet" if device_peak_flops(jnp.float32) is not None
                            else "measured matmul")
  print(f"matmul peak measured: f32 {results['matmul_peak_gflops']:.1f}, bf16 "
        f"{results['bf16_matmul_peak_gflops']:.1f} GFLOP/s; MFU against "
        f"{results['peak_source']} {results['peak_gflops']}", flush=True)
  prepared = {}
  rows = methods()
  if args.methods:
    wanted = {"vanilla", *args.methods.split(",")}
    unknown = wanted - set(rows)
    if unknown:
      parser.error(f"unknown --methods {sorted(unknown)}; known: {sorted(rows)}")
    rows = {k: v for k, v in rows.items() if k in wanted}
  for name, overrides in rows.items():
    overrides = dict(overrides)
    trainable = overrides.pop("_trainable", None)
    cfg = make_config(shapes, **overrides)
    prepared[name] = prepare_train_step(cfg, shapes, trainable=trainable)
    base, added = params_lib.count(cfg)
    prepared[name]["added_pct"] = 100.0 * added / base
    print(f"compiled {name:22s} in {prepared[name]['compile_s']:.1f}s", flush=True)
  step_s = time_interleaved({n: p["run"] for n, p in prepared.items()}, shapes.steps)
  for name, p in prepared.items():
    r = {k: v for k, v in p.items() if k not in ("run", "hlo_text")}
    r["step_s"] = step_s[name]
    r["train_ratio_vs_vanilla"] = step_s[name] / step_s["vanilla"]
    r["dtype"] = jnp.dtype(make_config(shapes, **{k: v for k, v in methods()[name].items()
                                                  if not k.startswith("_")}).dtype).name
    r["mfu"] = r["flops"] / r["step_s"] / (results["peak_gflops"][r["dtype"]] * 1e9)
    results["methods"][name] = r
    print(f"{name:22s} step {r['step_s']:.3f}s  x{r['train_ratio_vs_vanilla']:.3f}", flush=True)
  prepared.clear()  # free the train states before decoding
  results["phases"] = phase_times(make_config(shapes, hyperprompt_variant="none"), shapes)
  print(f"phases (vanilla): {results['phases']}", flush=True)
  # Decode calls are short and their ratios small: twice the train steps' repeats.
  results["decode_repeats"] = 2 * shapes.steps
  results["decode"] = bench_decode(shapes, repeats=results["decode_repeats"])
  for name, r in results["decode"].items():
    print(f"decode {name:20s} {r['tokens_per_s']:.1f} tokens/s", flush=True)
  if not args.skip_hf:
    results["hf"] = hf_bench(shapes, threads)
    print(f"HF: {results['hf']}", flush=True)
  command = "make bench" if not argv else "python -m bench.run " + " ".join(argv)
  os.makedirs(args.out_dir, exist_ok=True)
  with open(os.path.join(args.out_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(args.out_dir, "results.md"), "w") as f:
    f.write(render_markdown(results, command))
  write_chart(results, os.path.join(args.out_dir, "results.png"))
  print(f"wrote {args.out_dir}/results.md, results.json, results.png")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
