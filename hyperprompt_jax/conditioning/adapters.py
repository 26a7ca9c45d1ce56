# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Adapters (Houlsby et al., 2019), one set per task: task ids -> adapter weights.

Seam: the residual adapter after a sub-layer. In every encoder and decoder
block, after the self-attention (`'attention'`) and after the feed-forward
(`'mlp'`) sub-layer (`T5Config.adapter_blocks`), the sub-layer output `y` goes
through a bottleneck with its own residual before the block's dropout and
residual, as in Houlsby et al. and in HyperFormer's T5:

    y <- y + U(act(D y + d) ) + u       D: [E, b], U: [b, E]

The decoder's cross-attention gets no adapter (as in HyperFormer). Every task
has its own adapters; `apply_adapter` is the one implementation shared with
HyperFormer++ (which generates the same weights with a hypernetwork and adds a
task-conditional layer norm on the adapter output). Initialisation is
near-identity: kernels normal with stddev `adapter_init_stddev` (1e-2, as
Houlsby et al.), biases zero.

Parameters (under `adapters/`; `T` tasks, `M` layers of a stack, `E = emb_dim`,
`b = adapter_bottleneck_dim`), for each stack and block `{stack}_{block}`:

  down/kernel [T, M, E, b]   (tasks, layers, embed, adapter_bottleneck)
  down/bias   [T, M, b]      (tasks, layers, adapter_bottleneck)
  up/kernel   [T, M, b, E]   (tasks, layers, adapter_bottleneck, embed)
  up/bias     [T, M, E]      (tasks, layers, embed)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen import partitioning as nn_partitioning

from hyperprompt_jax import errors

param_with_axes = nn_partitioning.param_with_axes

BLOCKS = ("attention", "mlp")
AdapterWeights = Dict[str, jax.Array]


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
  """The adapter non-linearity `name` ('linear' or any `flax.linen` activation)."""
  if name == "linear":
    return lambda x: x
  fn = getattr(nn, name, None) if isinstance(name, str) else None
  if fn is None or not callable(fn):
    raise errors.ConfigError(f"T5Config.adapter_activation must be 'linear' or the name of a "
                             f"flax.linen activation (e.g. 'relu', 'gelu', 'swish'), got {name!r}.")
  return fn


def stack_layers(config: Any, stack: str) -> int:
  if stack == "encoder":
    return config.num_encoder_layers
  if stack == "decoder":
    return config.num_decoder_layers
  raise ValueError(f"stack must be 'encoder' or 'decoder', got {stack!r}")


def validate_config(config: Any) -> None:
  """Raises ConfigError for an adapter field the network cannot use (also HyperFormer++'s)."""
  errors.check_positive(config, "adapter_bottleneck_dim")
  blocks = tuple(config.adapter_blocks)
  if not blocks or len(set(blocks)) != len(blocks) or not set(blocks) <= set(BLOCKS):
    raise errors.ConfigError(f"T5Config.adapter_blocks must be a non-empty tuple of distinct "
                             f"names from {BLOCKS}, got {config.adapter_blocks!r}.")
  activation_fn(config.adapter_activation)  # raises on an unknown name


def expected_num_params(config: Any) -> int:
  """Closed-form count of the per-task adapters: `T (Le + Ld) |blocks| (2Eb + b + E)`."""
  e, b = config.emb_dim, config.adapter_bottleneck_dim
  sites = (config.num_encoder_layers + config.num_decoder_layers) * len(config.adapter_blocks)
  return config.num_tasks * sites * (2 * e * b + b + e)


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
  """Centred layer norm of `x [B, L, E]` with per-example `scale, bias [B, E]` (or per-token
  `[B, L, E]`), float32 math."""
  dtype = x.dtype
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
  y = (x - mean) * jax.lax.rsqrt(var + epsilon)
  if scale.ndim == 2:
    scale, bias = scale[:, None], bias[:, None]
  y = y * scale.astype(jnp.float32) + bias.astype(jnp.float32)
  return y.astype(dtype)


TOKEN_TASK = "token_task"


def with_token_tasks(weights: Mapping[str, Mapping[str, jax.Array]], token_tasks: jax.Array
                     ) -> Dict[str, AdapterWeights]:
  """Packed rows: every task's weights `{block: {name: [T, M, ...]}}` plus each token's task.

  Adds `token_task [B, M, L]` (the `[B, L]` task of every token, repeated per
  layer so that the per-layer slicing and `nn.scan` treat it like the weights).
  """
  out = {}
  for block, w in weights.items():
    layers = next(iter(w.values())).shape[1]
    tasks = jnp.broadcast_to(token_tasks[:, None].astype(jnp.int32),
                             (token_tasks.shape[0], layers, token_tasks.shape[1]))
    out[block] = dict(w, **{TOKEN_TASK: tasks})
  return out


def _packed_adapter(x: jax.Array, weights: Mapping[str, jax.Array], *, activation: str,
                    epsilon: float) -> jax.Array:
  """`apply_adapter` for packed rows: `weights` hold every task's (`[T, ...]`) and
  `token_task [B, L]`; each token goes through its own task's adapter.

  Every token is run through all `T` down-projections and the outputs of other
  tasks are zeroed before the up-projection (a one-hot mix): `T` times an
  adapter's FLOPs, but no per-token copy of the weights (`[B, L, E, b]`).
  """
  dtype = x.dtype
  num_tasks = weights["down_kernel"].shape[0]
  one_hot = jax.nn.one_hot(weights[TOKEN_TASK], num_tasks, dtype=dtype)  # [B, L, T]
  h = jnp.einsum("ble,tef->bltf", x, weights["down_kernel"].astype(dtype))
  h = h + weights["down_bias"].astype(dtype)
  h = activation_fn(activation)(h) * one_hot[..., None]
  y = jnp.einsum("bltf,tfe->ble", h, weights["up_kernel"].astype(dtype))
  y = y + jnp.einsum("blt,te->ble", one_hot, weights["up_bias"].astype(dtype))
  if "norm_scale" in weights:
    per_token = lambda name: jnp.einsum("blt,te->ble", one_hot.astype(jnp.float32),
                                        weights[name].astype(jnp.float32))
    y = layer_norm(y, per_token("norm_scale"), per_token("norm_bias"), epsilon)
  return x + y


def apply_adapter(x: jax.Array, weights: Mapping[str, jax.Array], *, activation: str,
                  epsilon: float = 1e-6) -> jax.Array:
  """Residual bottleneck adapter with per-example weights.

  Args:
    x: `[B, L, E]` sub-layer output.
    weights: `down_kernel [B, E, b]`, `down_bias [B, b]`, `up_kernel [B, b, E]`,
      `up_bias [B, E]` and optionally `norm_scale, norm_bias [B, E]` (a layer
      norm on the adapter output, HyperFormer++).
    activation: name of the non-linearity (see `activation_fn`).
    epsilon: layer-norm epsilon.
    Packed rows (`with_token_tasks`): the same names with `[T, ...]` instead of
    `[B, ...]` plus `token_task [B, L]`.
  Returns:
    `x + adapter(x)`, `[B, L, E]` in `x.dtype`.
  """
  if TOKEN_TASK in weights:
    return _packed_adapter(x, weights, activation=activation, epsilon=epsilon)
  dtype = x.dtype
  h = jnp.einsum("ble,bef->blf", x, weights["down_kernel"].astype(dtype))
  h = h + weights["down_bias"][:, None].astype(dtype)
  h = activation_fn(activation)(h)
  y = jnp.einsum("blf,bfe->ble", h, weights["up_kernel"].astype(dtype))
  y = y + weights["up_bias"][:, None].astype(dtype)
  if "norm_scale" in weights:
    y = layer_norm(y, weights["norm_scale"], weights["norm_bias"], epsilon)
  return x + y


def gather_tasks(table: Mapping[str, jax.Array], task_ids: jax.Array) -> AdapterWeights:
  """Per-task weight tables `[T, ...]` -> per-example weights `[B, ...]`."""
  return {k: jnp.take(v, task_ids, axis=0) for k, v in table.items()}


def layer_weights(weights: Optional[Mapping[str, AdapterWeights]], layer: int
                  ) -> Optional[Dict[str, AdapterWeights]]:
  """Slices `{block: {name: [B, M, ...]}}` to layer `layer`: `{block: {name: [B, ...]}}`."""
  if weights is None:
    return None
  return {block: {k: v[:, layer] for k, v in w.items()} for block, w in weights.items()}


class TaskAdapterTable(nn.Module):
  """Per-task, per-layer adapter weights of one stack and block: `{name: [T, M, ...]}`."""
  num_tasks: int
  num_layers: int
  features: int
  bottleneck: int
  init_stddev: float

  @nn.compact
  def __call__(self) -> AdapterWeights:
    t, m, e, b = self.num_tasks, self.num_layers, self.features, self.bottleneck
    normal, zeros = nn.initializers.normal(stddev=self.init_stddev), nn.initializers.zeros
    stack = ("tasks", "layers")

    def dense(name, n_in, n_out, in_axis, out_axis) -> Tuple[jax.Array, jax.Array]:
      # Kernel and bias of one dense layer, grouped like t5x's `name/kernel`, `name/bias`.
      module = _KernelBias(shape=(t, m, n_in, n_out), axes=stack + (in_axis, out_axis),
                           kernel_init=normal, bias_init=zeros, name=name)
      return module()

    down_kernel, down_bias = dense("down", e, b, "embed", "adapter_bottleneck")
    up_kernel, up_bias = dense("up", b, e, "adapter_bottleneck", "embed")
    return {"down_kernel": down_kernel, "down_bias": down_bias, "up_kernel": up_kernel,
            "up_bias": up_bias}


class _KernelBias(nn.Module):
  """`kernel [*stack, in, out]` and `bias [*stack, out]` with logical axes."""
  shape: Tuple[int, ...]
  axes: Tuple[str, ...]
  kernel_init: Callable[..., jax.Array]
  bias_init: Callable[..., jax.Array]

  @nn.compact
  def __call__(self) -> Tuple[jax.Array, jax.Array]:
    kernel = param_with_axes("kernel", self.kernel_init, self.shape, jnp.float32, axes=self.axes)
    bias = param_with_axes("bias", self.bias_init, self.shape[:-2] + self.shape[-1:],
                           jnp.float32, axes=self.axes[:-2] + self.axes[-1:])
    return kernel, bias


class Adapters(nn.Module):
  """Houlsby adapters, one per task, layer and block; see the module docstring."""
  config: Any

  @nn.compact
  def __call__(self, task_ids: Optional[jax.Array], stack: str) -> Dict[str, AdapterWeights]:
    """Adapter weights of `stack`'s layers gathered per example.

    Args:
      task_ids: `[B]` int32 task indices, or None (packed rows): every task's.
      stack: 'encoder' or 'decoder'.
    Returns:
      `{block: {'down_kernel': [B, M, E, b], 'down_bias': [B, M, b],
      'up_kernel': [B, M, b, E], 'up_bias': [B, M, E]}}` for each configured block
      (`T` instead of `B` when `task_ids` is None).
    """
    cfg = self.config
    num_layers = stack_layers(cfg, stack)
    out = {}
    for block in cfg.adapter_blocks:
      table = TaskAdapterTable(num_tasks=cfg.num_tasks, num_layers=num_layers,
                               features=cfg.emb_dim, bottleneck=cfg.adapter_bottleneck_dim,
                               init_stddev=cfg.adapter_init_stddev,
                               name=f"{stack}_{block}")()
      out[block] = table if task_ids is None else gather_tasks(table, task_ids)
    return out
