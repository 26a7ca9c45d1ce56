# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
r"""Parameter report: base T5 parameters, added task-conditioning parameters, percentage.

Shapes come from `jax.eval_shape` of `module.init`, so T5.1.1 XXL costs no memory.

  python -m hyperprompt_jax.params \
    --gin_file=models/t5_1_1/base.gin --gin_file=conditioning/hyperprompt_global.gin \
    --gin.NUM_TASKS=16

  python -m hyperprompt_jax.params --table   # every T5.1.1 size x every variant
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict, Mapping, Sequence, Tuple

import flax
import gin
import jax
import jax.numpy as jnp
import numpy as np

from hyperprompt_jax import conditioning
from hyperprompt_jax import errors
from hyperprompt_jax import gin_utils
from hyperprompt_jax import network

SIZES = ("small", "base", "large", "xl", "xxl")
VARIANTS = ("share", "sep", "global")
# Tasks of the joint GLUE + SuperGLUE training blend used for the report's default.
DEFAULT_NUM_TASKS = 16


@gin.configurable(module="hyperprompt_jax.params")
def report_model(model=gin.REQUIRED):
  return model


def param_shapes(config: network.T5Config, input_len: int = 8, target_len: int = 8
                 ) -> Dict[str, Tuple[int, ...]]:
  """`{'a/b/kernel': shape}` of the network's parameters, without allocating them."""
  module = network.Transformer(config=config)

  def init():
    return module.init(jax.random.PRNGKey(0), jnp.ones((1, input_len), jnp.float32),
                       jnp.ones((1, target_len), jnp.float32),
                       jnp.ones((1, target_len), jnp.float32), enable_dropout=False)["params"]

  shapes = jax.eval_shape(init)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes), sep="/")
  return {k: tuple(v.shape) for k, v in flat.items()}


def count(config: network.T5Config) -> Tuple[int, int]:
  """(base parameters, added task-conditioning parameters)."""
  shapes = param_shapes(config)
  prefixes = conditioning.param_prefixes()
  added = sum(int(np.prod(s)) for k, s in shapes.items() if k.split("/", 1)[0] in prefixes)
  total = sum(int(np.prod(s)) for s in shapes.values())
  return total - added, added


def format_row(name: str, base: int, added: int) -> str:
  return f"| {name} | {base:,} | {added:,} | {100.0 * added / base:.3f}% |"


def config_from_gin(gin_files: Sequence[str], gin_bindings: Sequence[str] = (),
                    gin_search_paths: Sequence[str] = ()) -> network.T5Config:
  """The `network.T5Config` of the model the gin files bind to `MODEL`.

  Replaces gin's global config by these files' but leaves it as locked or unlocked as it
  was (not finalized), so later code of the same process can still register and bind.
  """
  with gin.unlock_config():
    gin.clear_config()
    gin_utils.parse_gin(gin_files, list(gin_bindings) + ["report_model.model = %MODEL"],
                        gin_search_paths, finalize=False,
                        defaults=["DROPOUT_RATE = 0.0", f"NUM_TASKS = {DEFAULT_NUM_TASKS}"])
    return report_model().module.config


def table(num_tasks: int = DEFAULT_NUM_TASKS) -> str:
  lines = [f"T5.1.1 with T = {num_tasks} tasks, prompts in encoder and decoder (l=16, b=32, "
           "t'=t=32, h_t hidden 64), biases included.", "",
           "| model | base params | added params | added % |", "|---|---|---|---|"]
  for size in SIZES:
    for variant in VARIANTS:
      cfg = config_from_gin([f"models/t5_1_1/{size}.gin",
                             f"conditioning/hyperprompt_{variant}.gin"],
                            [f"NUM_TASKS = {num_tasks}"])
      base, added = count(cfg)
      lines.append(format_row(f"{size} / {variant}", base, added))
  return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--gin_file", action="append", default=[])
  parser.add_argument("--gin_bindings", action="append", default=[])
  parser.add_argument("--gin_search_paths", action="append", default=[])
  parser.add_argument("--table", action="store_true",
                      help="print every T5.1.1 size x HyperPrompt variant")
  parser.add_argument("--num_tasks", type=int, default=DEFAULT_NUM_TASKS,
                      help="number of tasks for --table")
  args = parser.parse_args(gin_utils.rewrite_gin_args(argv))
  if args.table:
    print(table(args.num_tasks))
    return 0
  if not args.gin_file:
    parser.error("give --gin_file (a model size and optionally a conditioning file) or --table")
  try:
    cfg = config_from_gin(args.gin_file, args.gin_bindings, args.gin_search_paths)
  except errors.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_STATUS
  base, added = count(cfg)
  print("| model | base params | added params | added % |\n|---|---|---|---|")
  method = cfg.conditioning if cfg.conditioning != "hyperprompt" else cfg.hyperprompt_variant
  print(format_row(f"{method} (T={cfg.num_tasks})", base, added))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
