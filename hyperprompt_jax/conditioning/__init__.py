# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Task-conditioning methods, each plugged into one seam of the same T5.

`T5Config.conditioning` selects the method (one gin switch); every method is a
module that maps per-example `task_ids [B]` to what its seam consumes, and its
parameters live under one top-level name of the parameter tree (the method's
name), so freezing regexes (`adapters/.*`) and the parameter report work:

| conditioning    | seam                                  | module                       |
|-----------------|---------------------------------------|------------------------------|
| 'none'          | (vanilla multi-task T5)               | -                            |
| 'hyperprompt'   | key/value prefix of self-attention    | hyperprompt.HyperPrompt      |
|                 | (`hyperprompt_variant='none'`: vanilla)|                              |
| 'prefix_tuning' | key/value prefix of self-attention    | prefix_tuning.PrefixTuning   |
| 'prompt_tuning' | input-embedding prompt                | prompt_tuning.PromptTuning   |
| 'adapters'      | residual adapter after a sub-layer    | adapters.Adapters            |
| 'hyperformer'   | residual adapter after a sub-layer    | hyperformer.HyperFormer      |

Seam contracts (`B` batch, `M` layers of one stack, `l` prompt/prefix length):
  * 'prefix':  `module(task_ids, stack)` -> `(keys, values)` each `[B, M, l, H, D]` or None.
  * 'input':   `module(task_ids)` -> `[B, l, E]` rows prepended to the encoder embeddings.
  * 'adapter': `module(task_ids, stack)` -> `{block: weights}` with `weights` a dict of
               `[B, M, ...]` arrays consumed by `adapters.apply_adapter`, or None.
"""

from __future__ import annotations

from typing import Any

from hyperprompt_jax import errors
from hyperprompt_jax.conditioning import adapters
from hyperprompt_jax.conditioning import hyperformer
from hyperprompt_jax.conditioning import hyperprompt
from hyperprompt_jax.conditioning import prefix_tuning
from hyperprompt_jax.conditioning import prompt_tuning

METHODS = ("none", "hyperprompt", "prefix_tuning", "prompt_tuning", "adapters", "hyperformer")
SEAMS = {
    "hyperprompt": "prefix",
    "prefix_tuning": "prefix",
    "prompt_tuning": "input",
    "adapters": "adapter",
    "hyperformer": "adapter",
}
# Top-level parameter names of the conditioning modules (one per method).
PARAM_PREFIXES = ("hyperprompt", "prefix_tuning", "prompt_tuning", "adapters", "hyperformer")


def active_method(config: Any) -> str:
  """The method that actually conditions the network ('none' for vanilla T5)."""
  if config.conditioning == "hyperprompt" and config.hyperprompt_variant == "none":
    return "none"
  return config.conditioning


def _check_positive(config: Any, *names: str) -> None:
  for name in names:
    if getattr(config, name) < 1:
      raise errors.ConfigError(f"T5Config.{name} must be >= 1, got {getattr(config, name)}.")


def validate_config(config: Any) -> None:
  """Raises ValueError naming the first inconsistent conditioning field of `config`."""
  if config.conditioning not in METHODS:
    raise errors.ConfigError(f"T5Config.conditioning must be one of {METHODS}, got "
                             f"{config.conditioning!r}.")
  if config.conditioning != "hyperprompt" and config.hyperprompt_variant != "none":
    raise errors.ConfigError(
        f"T5Config.hyperprompt_variant={config.hyperprompt_variant!r} only applies with "
        f"conditioning='hyperprompt', but conditioning={config.conditioning!r}; set "
        f"hyperprompt_variant='none' (do not combine two conditioning gin files).")
  method = config.conditioning
  if method == "prefix_tuning":
    _check_positive(config, "prefix_length", "prefix_reparam_hidden_dim")
    if config.prefix_placement not in hyperprompt.PLACEMENTS:
      raise errors.ConfigError(
          f"T5Config.prefix_placement must be one of {hyperprompt.PLACEMENTS}, "
          f"got {config.prefix_placement!r}.")
  elif method == "prompt_tuning":
    _check_positive(config, "soft_prompt_length")
  elif method in ("adapters", "hyperformer"):
    _check_positive(config, "adapter_bottleneck_dim")
    blocks = tuple(config.adapter_blocks)
    if not blocks or len(set(blocks)) != len(blocks) or not set(blocks) <= set(adapters.BLOCKS):
      raise errors.ConfigError(
          f"T5Config.adapter_blocks must be a non-empty tuple of distinct names "
          f"from {adapters.BLOCKS}, got {config.adapter_blocks!r}.")
    adapters.activation_fn(config.adapter_activation)  # raises on an unknown name


def expected_num_params(config: Any) -> int:
  """Closed-form count of the parameters the active method adds to T5 (biases included)."""
  method = active_method(config)
  if method == "none":
    return 0
  module = {"hyperprompt": hyperprompt, "prefix_tuning": prefix_tuning,
            "prompt_tuning": prompt_tuning, "adapters": adapters,
            "hyperformer": hyperformer}[method]
  return module.expected_num_params(config)
