# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Prefix-Tuning (Li & Liang, 2021), multi-task: task ids -> per-layer key/value prefixes.

Seam: the key/value prefix of self-attention, exactly as HyperPrompt (the same
attention consumes both). Every task `t` and prefixed block `m` has its own
prefixes `P^K_{t,m}, P^V_{t,m}` of shape `[l, d]` (`d = H * D`, the projected
key/value width, split across heads), prepended to the keys and values of
self-attention; they are never masked and get zero relative position bias.

* ``prefix_reparam=False``: the prefixes are parameters. This is also the
  inference form of every prefix method: `export.export_prompts` turns a
  trained HyperPrompt (or a reparametrised Prefix-Tuning) model into it.
* ``prefix_reparam=True`` (Li & Liang's MLP reparametrisation): a per-task
  prefix embedding `P'_t [l, E]` is mapped by an MLP shared by all tasks,
  `tanh(P' W_0 + b_0)` then one output projection per layer and key/value,
  `P^K_{t,m} = tanh(P'_t W_0 + b_0) W^K_m + b^K_m` (likewise V). **Choice**: the
  MLP is shared across tasks (the per-task part is `P'`), as HF PEFT does for
  one task; the output projections are stored per layer, which is the same
  parameter count as Li & Liang's single `[h, 2 M' d]` matrix.

Parameters (under `prefix_tuning/`; `T` tasks, `M'` prefixed layers, encoder
first, `l = prefix_length`, `E = emb_dim`, `h = prefix_reparam_hidden_dim`):

  no reparam: key_prefix, value_prefix   [T, M', l, d]  (tasks, layers, prompt_length, prompt_embed)
  reparam:    prefix_embedding           [T, l, E]      (tasks, prompt_length, embed)
              mlp_0/kernel [E, h], mlp_0/bias [h]       (embed, prefix_mlp)
              {key,value}_up/kernel      [M', h, d]     (layers, prefix_mlp, prompt_embed)
              {key,value}_up/bias        [M', d]        (layers, prompt_embed)
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.linen import partitioning as nn_partitioning

from hyperprompt_jax import errors
from hyperprompt_jax.conditioning import hyperprompt as hyperprompt_lib
from hyperprompt_jax.conditioning import seams

param_with_axes = nn_partitioning.param_with_axes


def prefixed_layers(config: Any) -> Tuple[int, int]:
  """Number of prefixed (encoder, decoder) blocks for `config.prefix_placement`."""
  placement = config.prefix_placement
  if placement not in hyperprompt_lib.PLACEMENTS:
    raise errors.ConfigError(f"prefix_placement must be one of {hyperprompt_lib.PLACEMENTS}, "
                             f"got {placement!r}.")
  enc = config.num_encoder_layers if placement in ("encoder", "both") else 0
  dec = config.num_decoder_layers if placement in ("decoder", "both") else 0
  return enc, dec


def validate_config(config: Any) -> None:
  """Raises ConfigError for a Prefix-Tuning field the network cannot use."""
  errors.check_positive(config, "prefix_length", "prefix_reparam_hidden_dim")
  if config.prefix_placement not in hyperprompt_lib.PLACEMENTS:
    raise errors.ConfigError(f"T5Config.prefix_placement must be one of "
                             f"{hyperprompt_lib.PLACEMENTS}, got {config.prefix_placement!r}.")


def exported_prompts(config: Any) -> Optional[Tuple[int, str, int]]:
  """(l, placement, M') when the prefixes come from the reparametrisation MLP, else None."""
  if not config.prefix_reparam:
    return None  # the prefixes are parameters already
  return config.prefix_length, config.prefix_placement, sum(prefixed_layers(config))


def expected_num_params(config: Any) -> int:
  """Closed-form count of Prefix-Tuning's parameters (biases included)."""
  m = sum(prefixed_layers(config))
  t_count, l = config.num_tasks, config.prefix_length
  d = config.num_heads * config.head_dim
  if not config.prefix_reparam:
    return 2 * t_count * m * l * d
  e, h = config.emb_dim, config.prefix_reparam_hidden_dim
  return t_count * l * e + (e * h + h) + 2 * m * (h * d + d)


class PrefixTuning(nn.Module):
  """Per-task, per-layer key/value prefixes; see the module docstring."""
  config: Any

  @nn.compact
  def all_prompts(self, layers: slice) -> Tuple[jax.Array, jax.Array]:
    """Key and value prefixes of every task for the prefixed layers `layers`.

    Args:
      layers: a slice of the `M'` prefixed layers (encoder first, then decoder).
    Returns:
      2 x `[T, M_slice, l, d]` float32.
    """
    cfg = self.config
    m = sum(prefixed_layers(cfg))
    t_count, l = cfg.num_tasks, cfg.prefix_length
    d = cfg.num_heads * cfg.head_dim
    if not cfg.prefix_reparam:
      outputs = []
      for kind in ("key", "value"):
        prefix = param_with_axes(
            f"{kind}_prefix", nn.initializers.normal(stddev=cfg.prompt_init_stddev),
            (t_count, m, l, d), jnp.float32,
            axes=("tasks", "layers", "prompt_length", "prompt_embed"))
        outputs.append(prefix[:, layers])
      return outputs[0], outputs[1]

    e, h = cfg.emb_dim, cfg.prefix_reparam_hidden_dim
    embedding = param_with_axes(
        "prefix_embedding", nn.initializers.normal(stddev=cfg.prompt_init_stddev),
        (t_count, l, e), jnp.float32, axes=("tasks", "prompt_length", "embed"))
    hidden = hyperprompt_lib.StackedDense(
        h, (), (), "embed", "prefix_mlp", 1.0 / np.sqrt(e), name="mlp_0")(
            embedding, "tle,eh->tlh")
    hidden = jnp.tanh(hidden)
    outputs = []
    for kind in ("key", "value"):
      up = hyperprompt_lib.StackedDense(d, (m,), ("layers",), "prefix_mlp", "prompt_embed",
                                        1.0 / np.sqrt(h), name=f"{kind}_up")
      outputs.append(up(hidden, "tlh,mhd->tmld", layers))
    return outputs[0], outputs[1]

  def __call__(self, task_ids: Optional[jax.Array], stack: str
               ) -> Optional[Tuple[jax.Array, jax.Array]]:
    """Prefixes of `stack` ('encoder' or 'decoder') gathered per example.

    Args:
      task_ids: `[B]` int32 task indices, or None for packed rows: every task's
        prompts as `T * l` shared slots, `[1, M_stack, T*l, H, D]`
        (`seams.gather_prefixes`).
      stack: which stack's layers to return.
    Returns:
      `(key_prefixes, value_prefixes)`, each `[B, M_stack, l, H, D]`, or None
      when the stack has no prefixes.
    """
    cfg = self.config
    # All parameters are created whichever stack is asked (init may see only one).
    key_all, value_all = self.all_prompts(seams.stack_layers(stack, *prefixed_layers(cfg)))
    return seams.gather_prefixes(key_all, value_all, task_ids, cfg.num_heads, cfg.head_dim)
