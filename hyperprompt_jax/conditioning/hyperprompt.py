# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""HyperPrompt (He et al., ICML 2022): task ids -> per-layer key/value prompts.

Seam: the key/value prefix of self-attention. For every prompted block `m` and
task `t` the module produces `P^K_{t,m}, P^V_{t,m}` of shape `[l, H, D]` from
one global prompt `P_t [l, d]` per task (`d = H * D`, the projected K/V width)
through a local HyperNetwork `U(ReLU(D(P_t)))`:

* ``share``:  one `(D^K, U^K, D^V, U^V)` per layer, shared by all tasks.
* ``sep``:    one per task and layer.
* ``global``: generated per task and layer from a layer-aware task embedding
  `I_{t,m} = h_t([k_t ; z_m])` by global HyperNetworks (linear maps of `I`).

All `T x M'` prompt sets are computed once per call (they depend only on task
and layer) and gathered per example, so one batch can mix tasks.

Parameters (under `hyperprompt/`; `T` tasks, `M'` prompted layers, `l` prompt
length, `d = H*D`, `b` bottleneck, `t'` task/layer embedding width, `t` width of
`I`, `h` hidden width of `h_t`):

  global_prompts          [T, l, d]              (tasks, prompt_length, prompt_embed)
  share: {key,value}_down/kernel [M', d, b]      (layers, prompt_embed, prompt_bottleneck)
         {key,value}_down/bias   [M', b]         (layers, prompt_bottleneck)
         {key,value}_up/kernel   [M', b, d]      (layers, prompt_bottleneck, prompt_embed)
         {key,value}_up/bias     [M', d]         (layers, prompt_embed)
  sep:   the same with a leading `tasks` axis.
  global: task_embedding [T, t'] (tasks, task_embed); layer_embedding [M', t']
         (layers, task_embed); task_mlp/{dense_0: [2t', h] + [h], dense_1: [h, t] + [t]}
         (task_embed, task_mlp); {key,value}_{down,up}_generator/kernel [t, d, b] / [t, b, d]
         (task_embed, prompt_embed|prompt_bottleneck, ...) and /bias [d, b] / [b, d]
         (the task-independent part of the generated weight).

Closed-form added parameters (docs/method.md, the parameter counts; biases included):
  see `expected_num_params`.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.linen import partitioning as nn_partitioning

from hyperprompt_jax import errors
from hyperprompt_jax.conditioning import seams

param_with_axes = nn_partitioning.param_with_axes

VARIANTS = ("none", "share", "sep", "global")
PLACEMENTS = ("encoder", "decoder", "both")


def _normal(stddev: float):
  return nn.initializers.normal(stddev=stddev)


def prompted_layers(config) -> Tuple[int, int]:
  """Number of prompted (encoder, decoder) blocks for `config.hyperprompt_placement`."""
  placement = config.hyperprompt_placement
  if placement not in PLACEMENTS:
    raise errors.ConfigError(
        f"hyperprompt_placement must be one of {PLACEMENTS}, got {placement!r}.")
  enc = config.num_encoder_layers if placement in ("encoder", "both") else 0
  dec = config.num_decoder_layers if placement in ("decoder", "both") else 0
  return enc, dec


def is_active(config) -> bool:
  """HyperPrompt with `hyperprompt_variant='none'` is vanilla T5."""
  return config.hyperprompt_variant != "none"


def validate_config(config) -> None:
  """Raises ConfigError for a HyperPrompt field the network cannot use."""
  if config.hyperprompt_variant not in VARIANTS:
    raise errors.ConfigError(f"T5Config.hyperprompt_variant must be one of {VARIANTS}, got "
                             f"{config.hyperprompt_variant!r}.")
  if config.hyperprompt_placement not in PLACEMENTS:
    raise errors.ConfigError(f"T5Config.hyperprompt_placement must be one of {PLACEMENTS}, "
                             f"got {config.hyperprompt_placement!r}.")
  errors.check_positive(config, "prompt_length", "prompt_bottleneck_dim", "task_embed_dim",
                 "layer_task_dim", "task_hidden_dim")


def exported_prompts(config) -> Tuple[int, str, int]:
  """(l, placement, prompted layers M'): the prompts `export` precomputes."""
  return config.prompt_length, config.hyperprompt_placement, sum(prompted_layers(config))


def expected_num_params(config) -> int:
  """Closed-form count of HyperPrompt's added parameters (docs/method.md, plus biases)."""
  variant = config.hyperprompt_variant
  if variant == "none":
    return 0
  enc, dec = prompted_layers(config)
  m = enc + dec
  t_count, l = config.num_tasks, config.prompt_length
  d, b = config.num_heads * config.head_dim, config.prompt_bottleneck_dim
  bias = bool(config.hyperprompt_use_bias)
  total = t_count * l * d  # global prompts
  local = 4 * d * b + (2 * (b + d) if bias else 0)  # D^K, U^K, D^V, U^V (+ biases)
  if variant == "share":
    total += m * local
  elif variant == "sep":
    total += t_count * m * local
  elif variant == "global":
    tp, t, h = config.task_embed_dim, config.layer_task_dim, config.task_hidden_dim
    total += (t_count + m) * tp  # task and layer embeddings
    total += 2 * tp * h + h * t + (h + t if bias else 0)  # h_t
    total += 4 * d * b * t  # global hypernetworks H_k, H_v (for U and D)
    total += 4 * d * b if bias else 0  # their biases: a task-independent base weight
  else:
    raise ValueError(f"unknown hyperprompt_variant {variant!r}")
  return total


class StackedDense(nn.Module):
  """A stack of dense layers `[*stack, in, out]` applied to stacked rows.

  Attributes:
    features: output width.
    stack_shape: leading shape of the stack (e.g. `(M',)` or `(T, M')`).
    stack_axes: logical names of the stack axes.
    in_axis, out_axis: logical names of the input and output widths.
    kernel_stddev: stddev of the normal kernel initialiser.
  """
  features: int
  stack_shape: Tuple[int, ...]
  stack_axes: Tuple[str, ...]
  in_axis: str
  out_axis: str
  kernel_stddev: float
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, equation: str,
               layers: Optional[slice] = None) -> jax.Array:
    """`einsum(equation, x, kernel) + bias`; `layers` slices the last stack axis."""
    kernel = param_with_axes(
        "kernel", _normal(self.kernel_stddev),
        self.stack_shape + (x.shape[-1], self.features), jnp.float32,
        axes=self.stack_axes + (self.in_axis, self.out_axis))
    n = len(self.stack_shape)
    if layers is not None:
      kernel = kernel[(slice(None),) * (n - 1) + (layers,)]
    y = jnp.einsum(equation, x, kernel)
    if self.use_bias:
      bias = param_with_axes("bias", nn.initializers.zeros, self.stack_shape + (self.features,),
                             jnp.float32, axes=self.stack_axes + (self.out_axis,))
      if layers is not None:
        bias = bias[(slice(None),) * (n - 1) + (layers,)]
      # Broadcast the bias over the prompt-length axis (the one before the features).
      y = y + jnp.expand_dims(bias, axis=-2)
    return y


class Generator(nn.Module):
  """A global HyperNetwork for one local weight `[rows, cols]`.

  Returns the generator kernel `[t, rows, cols]` (`W_{t,m} = sum_j I_{t,m,j} G_j`)
  and, with `use_bias`, the task-independent base weight `[rows, cols]`. The
  kernel's stddev makes the generated weight's variance about `target_var` for
  unit-variance `I`.
  """
  rows: int
  cols: int
  row_axis: str
  col_axis: str
  target_var: float
  use_bias: bool = True

  @nn.compact
  def __call__(self, width: int) -> Tuple[jax.Array, Optional[jax.Array]]:
    kernel = param_with_axes("kernel", _normal(np.sqrt(self.target_var / width)),
                             (width, self.rows, self.cols), jnp.float32,
                             axes=("task_embed", self.row_axis, self.col_axis))
    base = None
    if self.use_bias:
      base = param_with_axes("bias", nn.initializers.zeros, (self.rows, self.cols),
                             jnp.float32, axes=(self.row_axis, self.col_axis))
    return kernel, base


class HyperPrompt(nn.Module):
  """Generates hyper-prompts for every prompted layer; see the module docstring."""
  config: Any

  def _global_prompts(self) -> jax.Array:
    cfg = self.config
    d = cfg.num_heads * cfg.head_dim
    return param_with_axes(
        "global_prompts", _normal(cfg.prompt_init_stddev),
        (cfg.num_tasks, cfg.prompt_length, d), jnp.float32,
        axes=("tasks", "prompt_length", "prompt_embed"))

  @nn.compact
  def all_prompts(self, layers: slice) -> Tuple[jax.Array, jax.Array]:
    """Key and value prompts of every task for the prompted layers `layers`.

    Args:
      layers: a slice of the `M'` prompted layers (encoder first, then decoder).
    Returns:
      2 x `[T, M_slice, l, d]`.
    """
    cfg = self.config
    variant = cfg.hyperprompt_variant
    prompts = self._global_prompts()  # [T, l, d]
    t_count, d, b = cfg.num_tasks, cfg.num_heads * cfg.head_dim, cfg.prompt_bottleneck_dim
    if variant not in VARIANTS[1:]:
      raise errors.ConfigError(f"hyperprompt_variant must be one of {VARIANTS}, got {variant!r}.")
    m = sum(prompted_layers(cfg))
    bias = cfg.hyperprompt_use_bias
    # Down: fan-in init; up: He init (after ReLU) so generated prompts keep P's scale.
    down_std, up_std = 1.0 / np.sqrt(d), np.sqrt(2.0 / b)

    if variant in ("share", "sep"):
      if variant == "share":
        stack, axes, eq_down, eq_up = (m,), ("layers",), "tld,mdb->tmlb", "tmlb,mbe->tmle"
      else:
        stack, axes = (t_count, m), ("tasks", "layers")
        eq_down, eq_up = "tld,tmdb->tmlb", "tmlb,tmbe->tmle"
      outputs = []
      for kind in ("key", "value"):
        down = StackedDense(b, stack, axes, "prompt_embed", "prompt_bottleneck", down_std,
                            use_bias=bias, name=f"{kind}_down")
        up = StackedDense(d, stack, axes, "prompt_bottleneck", "prompt_embed", up_std,
                          use_bias=bias, name=f"{kind}_up")
        hidden = nn.relu(down(prompts, eq_down, layers))
        outputs.append(up(hidden, eq_up, layers))
      return outputs[0], outputs[1]

    # variant == "global": layer-aware task embeddings I [T, M', t].
    task_emb = param_with_axes("task_embedding", _normal(cfg.task_embed_init_stddev),
                               (t_count, cfg.task_embed_dim), jnp.float32,
                               axes=("tasks", "task_embed"))
    layer_emb = param_with_axes("layer_embedding", _normal(cfg.task_embed_init_stddev),
                                (m, cfg.task_embed_dim), jnp.float32,
                                axes=("layers", "task_embed"))[layers]
    m = layer_emb.shape[0]
    pairs = jnp.concatenate([
        jnp.broadcast_to(task_emb[:, None, :], (t_count, m, cfg.task_embed_dim)),
        jnp.broadcast_to(layer_emb[None, :, :], (t_count, m, cfg.task_embed_dim)),
    ], axis=-1)
    h = StackedDense(cfg.task_hidden_dim, (), (), "task_embed", "task_mlp",
                     np.sqrt(2.0 / (2 * cfg.task_embed_dim)), use_bias=bias,
                     name="task_mlp_0")(pairs, "tmi,ih->tmh")
    layer_task = StackedDense(cfg.layer_task_dim, (), (), "task_mlp", "task_embed",
                              np.sqrt(1.0 / cfg.task_hidden_dim), use_bias=bias,
                              name="task_mlp_1")(nn.relu(h), "tmh,hj->tmj")  # [T, M', t]
    outputs = []
    for kind in ("key", "value"):
      g_down, base_down = Generator(d, b, "prompt_embed", "prompt_bottleneck", 1.0 / d,
                                    use_bias=bias, name=f"{kind}_down_generator")(
                                        cfg.layer_task_dim)
      g_up, base_up = Generator(b, d, "prompt_bottleneck", "prompt_embed", 2.0 / b,
                                use_bias=bias, name=f"{kind}_up_generator")(
                                    cfg.layer_task_dim)
      # opt_einsum picks the contraction order with the fewest FLOPs: at T5.1.1-base sizes
      # it contracts P with G first and never forms the [T, M', d, b] generated weights; at
      # T5.1.1-small sizes it forms them (see the jaxpr; docs/method.md).
      hidden = jnp.einsum("tmj,tld,jdb->tmlb", layer_task, prompts, g_down,
                          optimize="optimal")
      if base_down is not None:
        hidden = hidden + jnp.einsum("tld,db->tlb", prompts, base_down)[:, None]
      hidden = nn.relu(hidden)
      out = jnp.einsum("tmj,tmlb,jbe->tmle", layer_task, hidden, g_up, optimize="optimal")
      if base_up is not None:
        out = out + jnp.einsum("tmlb,be->tmle", hidden, base_up)
      outputs.append(out)
    return outputs[0], outputs[1]

  def __call__(self, task_ids: Optional[jax.Array], stack: str
               ) -> Optional[Tuple[jax.Array, jax.Array]]:
    """Prompts of `stack` ('encoder' or 'decoder') gathered per example.

    Args:
      task_ids: `[B]` int32 task indices, or None for packed rows: every task's
        prompts as `T * l` shared slots, `[1, M_stack, T*l, H, D]`
        (`seams.gather_prefixes`).
      stack: which stack's layers to return.
    Returns:
      `(key_prompts, value_prompts)`, each `[B, M_stack, l, H, D]`, or None when
      the stack is not prompted.
    """
    cfg = self.config
    # All parameters are created whichever stack is asked (init may see only one).
    key_all, value_all = self.all_prompts(seams.stack_layers(stack, *prompted_layers(cfg)))
    return seams.gather_prefixes(key_all, value_all, task_ids, cfg.num_heads, cfg.head_dim)
