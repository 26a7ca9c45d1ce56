# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""The paper's attention analysis: softmax mass on the hyper-prompts, per layer.

  python -m hyperprompt_jax.attention_analysis \
    --gin_file=models/t5_1_1/base.gin --gin_file=conditioning/hyperprompt_global.gin \
    --gin_file=bench/wordnet_quality.gin \
    --checkpoint=/tmp/wordnet_quality_models/hyperprompt_global/checkpoint_400 \
    --output=/tmp/attention   # writes /tmp/attention.{md,json,png}

For every self-attention layer that has a key/value prefix (HyperPrompt's
hyper-prompts, or Prefix-Tuning's prefixes), the mass of the attention weights on
the `l` prompt columns, `sum_{j < l} softmax(q k^T)_{i j}`, is averaged over the
non-padding query positions `i` and every head of the layer for each example, then
over `--num_examples` validation examples (taken in turn from the tasks of the
mixture, teacher-forced with their targets). Encoder and decoder layers are
reported separately. The model is the one the gin files configure (the same
files as training); the parameters come from `--checkpoint` (any checkpoint
`t5x_checkpoints.restore_params` reads). The weights are recorded by running the
network un-jitted with the attention function wrapped (`record_prefix_mass`); the
network's code is unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import gin
import seqio

from hyperprompt_jax import data as data_lib
from hyperprompt_jax import gin_utils
from hyperprompt_jax import launch
from hyperprompt_jax import layers
from hyperprompt_jax import t5x_checkpoints
from hyperprompt_jax import train as train_lib

SELF_ATTENTION_NAMES = ("attention", "self_attention")


@contextlib.contextmanager
def record_prefix_mass(records: List[Dict[str, Any]]):
  """Appends `{path, mass [B, H, Lq]}` for every prefixed self-attention call inside.

  Runs eagerly only (the recorded arrays are concrete): call the model un-jitted.
  """
  stack: List[tuple] = []

  def interceptor(next_fun, args, kwargs, context):
    if isinstance(context.module, layers.MultiHeadDotProductAttention) and (
        context.method_name == "__call__"):
      stack.append(tuple(context.module.path))
      try:
        return next_fun(*args, **kwargs)
      finally:
        stack.pop()
    return next_fun(*args, **kwargs)

  original = layers.dot_product_attention

  def recording(query, key, value, bias=None, **kwargs):
    prefix = key.shape[-3] - query.shape[-3]
    if stack and stack[-1][-1] in SELF_ATTENTION_NAMES and prefix > 0:
      logits = jnp.einsum("bqhd,bkhd->bhqk", query.astype(jnp.float32), key.astype(jnp.float32))
      if bias is not None:
        logits = logits + bias.astype(jnp.float32)
      weights = jax.nn.softmax(logits)
      records.append({"path": stack[-1], "prefix_length": int(prefix),
                      "mass": np.asarray(weights[..., :prefix].sum(-1))})
    return original(query, key, value, bias=bias, **kwargs)

  layers.dot_product_attention = recording
  try:
    with nn.intercept_methods(interceptor):
      yield records
  finally:
    layers.dot_product_attention = original


def prefix_mass_per_layer(model: Any, params: Any, batch: Dict[str, np.ndarray]
                          ) -> Dict[str, List[float]]:
  """{'encoder': [mass of layer 0, ...], 'decoder': [...]} averaged over `batch`.

  Per example: mean over heads and non-padding query positions; then mean over examples.
  """
  records: List[Dict[str, Any]] = []
  with record_prefix_mass(records):
    model._compute_logits(params, batch)  # pylint: disable=protected-access
  valid = {"encoder": np.asarray(batch["encoder_input_tokens"]) > 0,
           "decoder": np.asarray(batch["decoder_target_tokens"]) > 0}
  out: Dict[str, List[float]] = {"encoder": [], "decoder": []}
  for r in records:
    stack = "encoder" if "encoder" in r["path"] else "decoder"
    mask = valid[stack][:, None, :].astype(np.float64)  # [B, 1, Lq]
    per_example = (r["mass"] * mask).sum((1, 2)) / np.maximum(
        mask.sum((1, 2)) * r["mass"].shape[1], 1.0)
    out[stack].append(float(per_example.mean()))
  return out


def validation_batch(mixture_or_task: str, feature_lengths: Dict[str, int], converter,
                     num_examples: int, split: str = "validation") -> Dict[str, np.ndarray]:
  """`num_examples` examples taken in turn from the tasks of a mixture (one numpy batch)."""
  tasks = seqio.get_subtasks(seqio.get_mixture_or_task(mixture_or_task))
  per_task = [list(seqio.get_dataset(
      t.name, task_feature_lengths=dict(feature_lengths), feature_converter=converter,
      dataset_split=split, shuffle=False, num_epochs=1, batch_size=None).take(
          -(-num_examples // len(tasks))).as_numpy_iterator()) for t in tasks]
  rows = [ex for group in zip(*per_task) for ex in group][:num_examples]
  if not rows:
    raise ValueError(f"{mixture_or_task!r} has no {split!r} examples")
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def table(results: Dict[str, Dict[str, List[float]]]) -> str:
  """Markdown: one row per (model, stack), one column per layer."""
  width = max(len(v) for r in results.values() for v in r.values())
  lines = ["| model | stack | " + " | ".join(f"layer {i}" for i in range(width)) + " |",
           "|---|---|" + "---:|" * width]
  for label, r in results.items():
    for stack in ("encoder", "decoder"):
      if r.get(stack):
        cells = [f"{v:.3f}" for v in r[stack]] + [""] * (width - len(r[stack]))
        lines.append(f"| {label} | {stack} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(results: Dict[str, Dict[str, List[float]]], path: str, title: str = "") -> str:
  """Line plot of the prompt mass per layer (encoder solid, decoder dashed); PNG at `path`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 3.6))
  for i, (label, r) in enumerate(results.items()):
    color = f"C{i}"
    for stack, style in (("encoder", "-"), ("decoder", "--")):
      if r.get(stack):
        ax.plot(range(len(r[stack])), r[stack], style, marker="o", color=color,
                label=f"{label} ({stack})")
  ax.set_xlabel("layer")
  ax.set_ylabel("attention mass on the prompts")
  ax.set_ylim(bottom=0)
  ax.set_title(title or "Softmax mass on the hyper-prompts per layer")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def analyse(gin_files: Sequence[str], gin_bindings: Sequence[str], checkpoint: str,
            num_examples: int = 100, split: str = "validation") -> Dict[str, List[float]]:
  """Configures the model from gin (as the launcher does), restores `checkpoint`, measures."""
  launch.configurable_entry_point(train_lib.train)  # gin files bind train_script.train
  args = launch.parse_args([f"--gin_file={f}" for f in gin_files] +
                           [f"--gin_bindings={b}" for b in gin_bindings])
  with gin.unlock_config():
    gin.clear_config()
    gin_utils.parse_gin(args.gin_file, args.gin_bindings + [
        'MODEL_DIR = "unused"', "INITIAL_CHECKPOINT_PATH = None"], args.gin_search_paths)

  def query(name):
    v = gin.query_parameter(name)
    return v.scoped_configurable_fn() if isinstance(v, gin.config.ConfigurableReference) else v

  model = query("%MODEL")
  cfg = query("__main__.train.train_dataset_cfg")
  data_lib.import_modules(cfg.module)
  config = model.module.config
  params = t5x_checkpoints.restore_params(checkpoint, config, fallback_to_scratch=())
  batch = validation_batch(cfg.mixture_or_task_name, cfg.task_feature_lengths,
                           model.FEATURE_CONVERTER_CLS(pack=False), num_examples, split)
  return prefix_mass_per_layer(model, jax.tree_util.tree_map(jnp.asarray, params), batch)


def write(results: Dict[str, Dict[str, List[float]]], output: str, note: str = "") -> None:
  """OUTPUT.md (table), OUTPUT.json and OUTPUT.png."""
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output + ".json", "w") as f:
    json.dump(results, f, indent=2)
  with open(output + ".md", "w") as f:
    f.write("# Attention mass on the hyper-prompts per layer\n\n" + (note + "\n\n" if note else "")
            + table(results))
  plot(results, output + ".png")


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--gin_file", action="append", required=True)
  parser.add_argument("--gin_bindings", action="append", default=[])
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--output", required=True, help="writes OUTPUT.md, .json, .png")
  parser.add_argument("--num_examples", type=int, default=100)
  parser.add_argument("--split", default="validation")
  parser.add_argument("--label", default=None, help="name of the model in the table")
  args = parser.parse_args(argv)
  if not os.path.exists(args.checkpoint):
    parser.error(f"--checkpoint {args.checkpoint} does not exist")
  result = analyse(args.gin_file, args.gin_bindings, args.checkpoint, args.num_examples,
                   args.split)
  if not (result["encoder"] or result["decoder"]):
    parser.error("the model has no prefixed self-attention layer (no hyper-prompts or prefixes)")
  results = {args.label or os.path.basename(args.checkpoint.rstrip("/")): result}
  write(results, args.output, f"`{args.checkpoint}`, {args.num_examples} {args.split} examples.")
  print(table(results), flush=True)
  return 0


if __name__ == "__main__":
  launch.quiet_tensorflow()
  sys.exit(main())
