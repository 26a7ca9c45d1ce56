# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""T5 encoder-decoder with HyperPrompt, on the t5x network contract.

`Transformer(config=T5Config(...))` keeps the call signatures of t5x's
`examples/t5/network.py` (`__call__`, `encode`, `decode`, the `cache`
collection) and its T5.1.1 parameter tree, so `t5x.models.EncoderDecoderModel`
drives it unchanged and a t5x checkpoint's `target` tree restores into it. With
`hyperprompt_variant='none'` it is exactly vanilla T5. `T5Config.conditioning`
selects the task-conditioning method (HyperPrompt or a baseline); every method
plugs into one of three seams of this one network (conditioning/__init__.py):
the key/value prefix of self-attention, a residual adapter after a sub-layer,
or soft-prompt rows in front of the encoder input.

The task of each example is read from the leading sentinel of
`encoder_input_tokens` (see `task_ids.py`). With packed inputs
(`encoder_segment_ids` given) every segment is conditioned on its own task: the
task of each token is the sentinel at its segment's first position, a decoder
segment takes the task of the encoder segment with the same id, key/value
prefix methods see the `T * l` prefixes of every task with a mask that keeps
each query to its own task's slots, and adapter methods pick each token's
task's adapter (docs/method.md, "Packed rows"). Prompt-Tuning refuses packing.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import struct
from flax.linen import partitioning as nn_partitioning

from hyperprompt_jax import conditioning as conditioning_lib
from hyperprompt_jax import errors
from hyperprompt_jax import layers
from hyperprompt_jax import task_ids as task_ids_lib
from hyperprompt_jax.conditioning import adapters as adapters_lib
from hyperprompt_jax.conditioning import seams

Array = jax.Array
Prefixes = Optional[Tuple[Array, Array]]  # 2 x [B, M_stack, l, H, D]
# {block: {weight name: [B, M_stack, ...]}} for the residual-adapter seam.
AdapterWeights = Optional[Mapping[str, Mapping[str, Array]]]


@struct.dataclass
class T5Config:
  """Global hyperparameters; t5x's field names plus the HyperPrompt fields.

  HyperPrompt fields (docs/method.md; defaults are our documented choices):
    num_tasks: number of tasks T (task indices 0..T-1).
    task_sentinel_id: token id of `<extra_id_0>`; task k is marked by id - k.
    hyperprompt_variant: 'none' (vanilla T5), 'share', 'sep' or 'global'.
    hyperprompt_placement: 'encoder', 'decoder' or 'both' (self-attention only).
    prompt_length: l, hyper-prompt length per layer.
    prompt_bottleneck_dim: b, bottleneck of the local HyperNetworks.
    task_embed_dim: t', width of the task and layer embeddings (Global).
    layer_task_dim: t, width of the layer-aware task embedding I (Global).
    task_hidden_dim: hidden width of h_t (Global).
    hyperprompt_use_bias: biases in D/U, h_t and the global HyperNetworks.
    prompt_init_stddev: stddev of the global prompts P (1.0: the generated
      prompts start on the scale of the projected keys and values).
    task_embed_init_stddev: stddev of the task and layer embeddings.

  Task conditioning, one gin switch (conditioning/__init__.py):
    conditioning: 'hyperprompt' (uses hyperprompt_variant; 'none' = vanilla T5),
      'none' (vanilla), 'prefix_tuning', 'prompt_tuning', 'adapters', 'hyperformer'.
    prefix_length, prefix_placement: Prefix-Tuning's l and prefixed stacks
      ('encoder', 'decoder', 'both'; self-attention only).
    prefix_reparam: Prefix-Tuning's MLP reparametrisation (False: the prefixes
      are parameters, the form `export.export_prompts` produces).
    prefix_reparam_hidden_dim: hidden width of that MLP.
    soft_prompt_length: Prompt-Tuning's l (rows in front of the encoder input).
    adapter_bottleneck_dim: b of Adapters and HyperFormer++.
    adapter_activation: adapter non-linearity (a flax.linen name; 'gelu' is
      the tanh approximation, HyperFormer's 'gelu_new').
    adapter_blocks: sub-layers followed by an adapter: 'attention'
      (self-attention) and/or 'mlp'.
    adapter_init_stddev: stddev of adapter kernels and of HyperFormer++'s
      dense layers and generators.
    HyperFormer++ reuses task_embed_dim (t'), task_hidden_dim and
    layer_task_dim (t); prompt_init_stddev also initialises Prefix-Tuning's
    prefixes and Prompt-Tuning's prompts.

  Computation (no effect on the parameter tree or, beyond float rounding, on results):
    one_hot_embedding: embed tokens as a one-hot `[B, L, V] x [V, E]` matmul
      (t5x's choice: fast on TPU, and its gradient is a matmul, not a
      scatter-add); False gathers rows instead, which saves
      4 * B * L * V * E FLOPs per train step (~84 GFLOP at T5-small shapes,
      batch 8 x 160 tokens) and is faster on CPU and GPU.
    remat_policy: rematerialisation of each encoder and decoder layer (t5x
      scalable_t5's meaning): 'none' keeps every activation for the backward
      pass; 'minimal' keeps only matmul outputs without batch dimensions
      (`jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims`) and
      recomputes the rest; 'full' keeps nothing but the layer inputs.

  Layout (changes the parameter tree's layout, not its values; see formats/scan.py):
    scan_layers: run each stack's layers under `nn.scan` (one compiled layer
      per stack, t5x's scalable_t5): the layer parameters become one tree
      `encoder/layers/...` / `decoder/layers/...` whose leaves are stacked on a
      `layers` logical axis, and the decoder's cache gains a leading layer axis.
      False keeps t5x's unrolled `layers_0 .. layers_{n-1}` tree.
    param_scan_axis: where the `layers` axis sits in each stacked leaf (0 or 1;
      t5x's default 1: `attention/query/kernel [E, layers, H*D]`).
  """
  vocab_size: int
  # Activation dtype (parameters are always float32).
  dtype: Any = jnp.float32
  emb_dim: int = 512
  num_heads: int = 8
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  head_dim: int = 64
  mlp_dim: int = 2048
  mlp_activations: Sequence[str] = ("relu",)
  dropout_rate: float = 0.1
  logits_via_embedding: bool = False
  float32_attention_logits: bool = False
  one_hot_embedding: bool = True
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  # HyperPrompt.
  num_tasks: int = 1
  task_sentinel_id: int = 32099
  hyperprompt_variant: str = "none"
  hyperprompt_placement: str = "both"
  prompt_length: int = 16
  prompt_bottleneck_dim: int = 32
  task_embed_dim: int = 32
  layer_task_dim: int = 32
  task_hidden_dim: int = 64
  hyperprompt_use_bias: bool = True
  prompt_init_stddev: float = 1.0
  task_embed_init_stddev: float = 1.0
  # Task-conditioning method and the baselines' fields.
  conditioning: str = "hyperprompt"
  prefix_length: int = 16
  prefix_placement: str = "both"
  prefix_reparam: bool = True
  prefix_reparam_hidden_dim: int = 512
  soft_prompt_length: int = 16
  adapter_bottleneck_dim: int = 32
  adapter_activation: str = "gelu"
  adapter_blocks: Sequence[str] = ("attention", "mlp")
  adapter_init_stddev: float = 1e-2
  # Memory and compile time (scalable_t5's fields).
  remat_policy: str = "none"
  scan_layers: bool = False
  param_scan_axis: int = 1

REMAT_POLICIES = ("none", "minimal", "full")
# Name, in the `cache` collection, of the decoder's per-example conditioning in cached
# decoding (`Transformer._decoder_conditioning`).
DECODE_CACHE = "decoder_conditioning"


def validate_config(config: T5Config) -> None:
  """Raises ConfigError naming the first inconsistent field of `config`.

  The conditioning fields are checked by the method's registry record.
  """
  errors.check_positive(config, "num_tasks")
  if config.remat_policy not in REMAT_POLICIES:
    raise errors.ConfigError(f"T5Config.remat_policy must be one of {REMAT_POLICIES}, got "
                             f"{config.remat_policy!r}.")
  if config.param_scan_axis not in (0, 1):
    raise errors.ConfigError(f"T5Config.param_scan_axis must be 0 or 1 (every stacked leaf has "
                             f"at least one axis), got {config.param_scan_axis!r}.")
  conditioning_lib.validate_config(config)
  lowest = config.task_sentinel_id - (config.num_tasks - 1)
  if conditioning_lib.active_method(config) != "none" and not (
      0 < lowest and config.task_sentinel_id < config.vocab_size):
    raise errors.ConfigError(
        f"task sentinels {lowest}..{config.task_sentinel_id} (task_sentinel_id="
        f"{config.task_sentinel_id}, num_tasks={config.num_tasks}) must lie inside the "
        f"vocabulary of size {config.vocab_size}.")


def _adapt(cfg: T5Config, x: Array, adapter: AdapterWeights, block: str) -> Array:
  """Residual-adapter seam: `x + adapter(x)` when the method gives weights for `block`."""
  if adapter is None or block not in adapter:
    return x
  return adapters_lib.apply_adapter(x, adapter[block], activation=cfg.adapter_activation,
                                    epsilon=cfg.layer_norm_epsilon)


class EncoderLayer(nn.Module):
  """Pre-norm self-attention + MLP block. Input/output `[B, L, E]`."""
  config: T5Config

  @nn.compact
  def __call__(self, inputs, encoder_mask=None, encoder_bias=None, deterministic=False,
               prefix: Prefixes = None, adapter: AdapterWeights = None):
    cfg = self.config
    x = layers.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                         name="pre_attention_layer_norm")(inputs)
    key_prefix, value_prefix = prefix if prefix is not None else (None, None)
    x = layers.MultiHeadDotProductAttention(
        num_heads=cfg.num_heads, dtype=cfg.dtype, head_dim=cfg.head_dim,
        dropout_rate=cfg.dropout_rate, float32_logits=cfg.float32_attention_logits,
        name="attention")(x, x, encoder_mask, encoder_bias, key_prefix=key_prefix,
                          value_prefix=value_prefix, deterministic=deterministic)
    x = _adapt(cfg, x, adapter, "attention")
    x = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    x = x + inputs
    y = layers.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                         name="pre_mlp_layer_norm")(x)
    y = layers.MlpBlock(intermediate_dim=cfg.mlp_dim, activations=cfg.mlp_activations,
                        intermediate_dropout_rate=cfg.dropout_rate, dtype=cfg.dtype,
                        name="mlp")(y, deterministic=deterministic)
    y = _adapt(cfg, y, adapter, "mlp")
    y = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    out = y + x
    return (out, None) if cfg.scan_layers else out  # `nn.scan` wants (carry, output)


class DecoderLayer(nn.Module):
  """Self-attention (prompted, cached), cross-attention, MLP. Input/output `[B, L, E]`.

  `static_cache`: with `decode`, the decode cache is made from the real inputs
  (`Transformer.init_decode_cache`): the call that creates it stores what is fixed
  for the decode call (the cross-attention keys/values of the encoded inputs, the
  self-attention's prefix columns) and the steps only read it.
  """
  config: T5Config
  static_cache: bool = False

  @nn.compact
  def __call__(self, inputs, encoded, decoder_mask=None, encoder_decoder_mask=None,
               decoder_bias=None, deterministic=False, decode=False,
               prefix: Prefixes = None, adapter: AdapterWeights = None):
    cfg = self.config
    x = layers.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                         name="pre_self_attention_layer_norm")(inputs)
    key_prefix, value_prefix = prefix if prefix is not None else (None, None)
    x = layers.MultiHeadDotProductAttention(
        num_heads=cfg.num_heads, dtype=cfg.dtype, head_dim=cfg.head_dim,
        dropout_rate=cfg.dropout_rate, float32_logits=cfg.float32_attention_logits,
        name="self_attention")(x, x, decoder_mask, decoder_bias, key_prefix=key_prefix,
                               value_prefix=value_prefix, deterministic=deterministic,
                               decode=decode, static_prefix=self.static_cache)
    x = _adapt(cfg, x, adapter, "attention")
    x = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    x = x + inputs
    y = layers.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                         name="pre_cross_attention_layer_norm")(x)
    y = layers.MultiHeadDotProductAttention(
        num_heads=cfg.num_heads, dtype=cfg.dtype, head_dim=cfg.head_dim,
        dropout_rate=cfg.dropout_rate, float32_logits=cfg.float32_attention_logits,
        name="encoder_decoder_attention")(y, encoded, encoder_decoder_mask,
                                          static_kv_cache=decode,
                                          fill_static_kv_cache=self.static_cache,
                                          deterministic=deterministic)
    y = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    y = y + x
    z = layers.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                         name="pre_mlp_layer_norm")(y)
    z = layers.MlpBlock(intermediate_dim=cfg.mlp_dim, activations=cfg.mlp_activations,
                        intermediate_dropout_rate=cfg.dropout_rate, dtype=cfg.dtype,
                        name="mlp")(z, deterministic=deterministic)
    z = _adapt(cfg, z, adapter, "mlp")
    z = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(z, deterministic=deterministic)
    out = z + y
    return (out, None) if cfg.scan_layers else out  # `nn.scan` wants (carry, output)


# Positional indices (self = 0) of the Python-bool arguments of the layers' `__call__`.
_ENCODER_STATIC_ARGNUMS = (4,)  # deterministic
_DECODER_STATIC_ARGNUMS = (6, 7)  # deterministic, decode


def remat_policy(name: str) -> Optional[Any]:
  """The `jax.checkpoint` policy of `T5Config.remat_policy` 'minimal' or 'full' (None)."""
  if name == "minimal":
    return jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims
  return None  # 'full': save nothing, recompute the whole layer.


def _layer_class(cfg: T5Config, layer_cls, static_argnums: Tuple[int, ...]):
  """`layer_cls`, rematerialised per `cfg.remat_policy` (unchanged for 'none')."""
  if cfg.remat_policy == "none":
    return layer_cls
  return nn.remat(layer_cls, policy=remat_policy(cfg.remat_policy),
                  prevent_cse=not cfg.scan_layers, static_argnums=static_argnums)


def _layers_first(per_layer: Any) -> Any:
  """Per-layer inputs `[B, M, ...]` (prefixes, adapter weights) -> `[M, B, ...]` for `nn.scan`."""
  return jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 1, 0), per_layer)


def _scanned_layers(stack: nn.Module, layer_cls, num_layers: int, num_broadcast: int,
                    **attributes):
  """`layer_cls` under `nn.scan` over `num_layers` layers, named `layers` (t5x scalable_t5).

  The carry is the activations `[B, L, E]`; the next `num_broadcast` arguments
  are the same for every layer (masks, the shared relative-position bias, flags);
  the last two (prefix, adapter weights) are scanned on their leading layer axis.
  Parameters are stacked at `param_scan_axis` with the logical axis `layers`, the
  cache at axis 0. When applying, the parameters are only read (`ScanIn`).
  """
  cfg = stack.config
  params_axis = (cfg.param_scan_axis if stack.is_mutable_collection("params")
                 else nn_partitioning.ScanIn(cfg.param_scan_axis))
  return nn_partitioning.scan_with_axes(
      layer_cls, variable_axes={"params": params_axis, "cache": 0},
      split_rngs={"params": True, "dropout": True},
      in_axes=(nn.broadcast,) * num_broadcast + (0, 0), length=num_layers,
      axis_name="layers")(config=cfg, name="layers", **attributes)


def _layer_prefix(prefixes: Prefixes, lyr: int) -> Prefixes:
  if prefixes is None:
    return None
  return prefixes[0][:, lyr], prefixes[1][:, lyr]


class Encoder(nn.Module):
  """T5 encoder stack: tokens `[B, L]` -> encoded `[B, L, E]`."""
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoder_input_tokens, encoder_mask=None, deterministic=False,
               prefixes: Prefixes = None, adapters: AdapterWeights = None,
               input_prompt: Optional[Array] = None):
    """`input_prompt [B, l, E]` (or None) is prepended to the token embeddings."""
    cfg = self.config
    assert encoder_input_tokens.ndim == 2  # [batch, length]
    length = encoder_input_tokens.shape[-1]
    if input_prompt is not None:
      length += input_prompt.shape[1]
    rel_emb = layers.RelativePositionBiases(
        num_buckets=cfg.relative_attention_num_buckets,
        max_distance=cfg.relative_attention_max_distance, num_heads=cfg.num_heads,
        dtype=cfg.dtype, name="relpos_bias")
    encoder_bias = rel_emb(length, length, True)
    x = self.shared_embedding(encoder_input_tokens.astype("int32"))
    if input_prompt is not None:
      # Input-embedding seam: soft prompt rows in front of the token embeddings.
      x = jnp.concatenate([input_prompt.astype(x.dtype), x], axis=1)
    x = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    x = x.astype(cfg.dtype)
    layer_cls = _layer_class(cfg, EncoderLayer, _ENCODER_STATIC_ARGNUMS)
    if cfg.scan_layers:
      x, _ = _scanned_layers(self, layer_cls, cfg.num_encoder_layers, 3)(
          x, encoder_mask, encoder_bias, deterministic, _layers_first(prefixes),
          _layers_first(adapters))
    for lyr in range(0 if cfg.scan_layers else cfg.num_encoder_layers):
      x = layer_cls(config=cfg, name=f"layers_{lyr}")(
          x, encoder_mask, encoder_bias, deterministic, _layer_prefix(prefixes, lyr),
          adapters_lib.layer_weights(adapters, lyr))
    x = layers.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                         name="encoder_norm")(x)
    return nn.Dropout(rate=cfg.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
  """T5 decoder stack: `[B, Ld]` tokens and `[B, Le, E]` encoded -> logits `[B, Ld, V]`."""
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoded, decoder_input_tokens, decoder_positions=None,
               decoder_mask=None, encoder_decoder_mask=None, deterministic=False,
               decode=False, max_decode_length=None, prefixes: Prefixes = None,
               adapters: AdapterWeights = None, static_cache: bool = False):
    cfg = self.config
    del decoder_positions  # Relative attention needs no absolute positions.
    assert decoder_input_tokens.ndim == 2  # [batch, len]
    # In step-by-step decoding the bias covers the whole decode length; the
    # attention picks the row of the current position.
    length = (max_decode_length if decode and max_decode_length
              else decoder_input_tokens.shape[-1])
    rel_emb = layers.RelativePositionBiases(
        num_buckets=cfg.relative_attention_num_buckets,
        max_distance=cfg.relative_attention_max_distance, num_heads=cfg.num_heads,
        dtype=cfg.dtype, name="relpos_bias")
    decoder_bias = rel_emb(length, length, False)
    y = self.shared_embedding(decoder_input_tokens.astype("int32"))
    y = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    y = y.astype(cfg.dtype)
    layer_cls = _layer_class(cfg, DecoderLayer, _DECODER_STATIC_ARGNUMS)
    static_cache = decode and static_cache
    if cfg.scan_layers:
      y, _ = _scanned_layers(self, layer_cls, cfg.num_decoder_layers, 6,
                             static_cache=static_cache)(
          y, encoded, decoder_mask, encoder_decoder_mask, decoder_bias, deterministic, decode,
          _layers_first(prefixes), _layers_first(adapters))
    for lyr in range(0 if cfg.scan_layers else cfg.num_decoder_layers):
      # Positional: `nn.remat` takes no keyword arguments.
      y = layer_cls(config=cfg, static_cache=static_cache, name=f"layers_{lyr}")(
          y, encoded, decoder_mask, encoder_decoder_mask, decoder_bias, deterministic, decode,
          _layer_prefix(prefixes, lyr), adapters_lib.layer_weights(adapters, lyr))
    y = layers.LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype,
                         name="decoder_norm")(y)
    y = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    if cfg.logits_via_embedding:
      # T5.1.0: logits from the tied embedding, rescaled by 1/sqrt(E).
      logits = self.shared_embedding.attend(y)
      logits = logits / jnp.sqrt(y.shape[-1])
    else:
      logits = layers.DenseGeneral(cfg.vocab_size, dtype=jnp.float32,
                                   kernel_axes=("embed", "vocab"), name="logits_dense")(y)
    return layers.with_sharding_constraint(logits, ("batch", "length", "vocab"))


class Transformer(nn.Module):
  """T5 encoder-decoder with optional task conditioning (t5x contract).

  The conditioning module of `config.conditioning` is a submodule named after
  the method (its parameters live under that top-level name).
  """
  config: T5Config

  @property
  def scan_layers(self) -> bool:
    """`config.scan_layers`, where t5x's models look for it (`module.scan_layers`) to
    decode with `cache_offset=1`: the scanned cache has the layer axis first."""
    return self.config.scan_layers

  def setup(self):
    cfg = self.config
    validate_config(cfg)
    self.shared_embedding = layers.Embed(
        num_embeddings=cfg.vocab_size, features=cfg.emb_dim, dtype=cfg.dtype,
        attend_dtype=jnp.float32, embedding_init=nn.initializers.normal(stddev=1.0),
        one_hot=cfg.one_hot_embedding, name="token_embedder")
    self.encoder = Encoder(config=cfg, shared_embedding=self.shared_embedding)
    self.decoder = Decoder(config=cfg, shared_embedding=self.shared_embedding)
    method = conditioning_lib.active(cfg)
    if method is not None:  # the registry's module, under the method's name
      setattr(self, method.name, method.module(config=cfg))

  def task_ids(self, encoder_input_tokens: Array) -> Array:
    """Per-example task indices `[B]` read from `encoder_input_tokens [B, L]`."""
    cfg = self.config
    return task_ids_lib.tokens_to_task_ids(
        encoder_input_tokens, task_sentinel_id=cfg.task_sentinel_id, num_tasks=cfg.num_tasks)

  def _conditioner(self, seam: str) -> Optional[nn.Module]:
    """The active method's module if it uses `seam` ('prefix', 'adapter', 'input')."""
    method = conditioning_lib.active(self.config)
    if method is None or method.seam != seam:
      return None
    return getattr(self, method.name)

  def packed_task_ids(self, encoder_input_tokens: Array, encoder_segment_ids: Array,
                      decoder_segment_ids: Optional[Array] = None) -> Array:
    """Per-token task indices of packed rows: `[B, Le]`, or `[B, Ld]` given decoder segments."""
    cfg = self.config
    tasks = task_ids_lib.packed_task_ids(encoder_input_tokens, encoder_segment_ids,
                                         task_sentinel_id=cfg.task_sentinel_id,
                                         num_tasks=cfg.num_tasks)
    if decoder_segment_ids is None:
      return tasks
    return task_ids_lib.decoder_task_ids(tasks, encoder_segment_ids, decoder_segment_ids)

  def _prefixes(self, encoder_input_tokens: Array, stack: str,
                token_tasks: Optional[Array] = None) -> Prefixes:
    """Per-example prefixes, or (packed: `token_tasks [B, L]` given) every task's."""
    module = self._conditioner("prefix")
    if module is None:
      return None
    if token_tasks is not None:
      return module(None, stack)
    return module(self.task_ids(encoder_input_tokens), stack)

  def _mask_prefix_slots(self, mask: Array, prefixes: Prefixes,
                         token_tasks: Optional[Array]) -> Array:
    """Packed rows: `mask [B, 1, Lq, Lk]` -> `[B, 1, Lq, T*l + Lk]`, each query seeing the
    prefix slots of its own segment's task (unchanged when unpacked or unprefixed)."""
    if token_tasks is None or prefixes is None:
      return mask
    cfg = self.config
    slots = prefixes[0].shape[2]
    slot_mask = seams.task_slot_mask(token_tasks, cfg.num_tasks, slots // cfg.num_tasks,
                                     dtype=mask.dtype)
    return jnp.concatenate([slot_mask, mask], axis=-1)

  def _adapters(self, encoder_input_tokens: Array, stack: str,
                token_tasks: Optional[Array] = None) -> AdapterWeights:
    """Per-example adapter weights, or (packed) every task's with each token's task."""
    module = self._conditioner("adapter")
    if module is None:
      return None
    if token_tasks is None:
      return module(self.task_ids(encoder_input_tokens), stack)
    return adapters_lib.with_token_tasks(module(None, stack), token_tasks)

  def _input_prompt(self, encoder_input_tokens: Array) -> Optional[Array]:
    module = self._conditioner("input")
    if module is None:
      return None
    return module(self.task_ids(encoder_input_tokens))

  def _fresh_decoder_conditioning(self, encoder_input_tokens: Array,
                                  token_tasks: Optional[Array] = None
                                  ) -> Tuple[Prefixes, AdapterWeights]:
    """The decoder's prefixes and adapter weights, computed from the parameters."""
    return (self._prefixes(encoder_input_tokens, "decoder", token_tasks),
            self._adapters(encoder_input_tokens, "decoder", token_tasks))

  def _decoder_conditioning(self, encoder_input_tokens: Array, decode: bool,
                            token_tasks: Optional[Array] = None,
                            fill_static_cache: bool = False
                            ) -> Tuple[Prefixes, AdapterWeights, bool]:
    """The decoder's per-example conditioning; in cached decoding, computed once per call.

    With `decode=True` the prefixes / adapter weights (`[B, M, ...]`) live in the
    `cache` collection under `DECODE_CACHE`, computed by the call that creates the
    cache. A cache made by `init_decode_cache` (from the real inputs) holds only them,
    and the steps read them. A cache made t5x's way (`__call__` with `decode=True` on
    all-ones inputs) also holds the task ids `[B]` they were computed for, and a step
    recomputes them (inside a `lax.cond`, so in the first step only) when its
    examples' task ids differ. Every leaf has the batch axis where t5x's beam search
    expects it (`cache_offset`: axis 0, or axis 1 after a leading layer axis with
    `scan_layers`), so beam expansion and beam reordering keep each row with its task.

    Returns:
      (prefixes, adapter weights, static): `static` says the cache is (being) made from
      the real inputs (`fill_static_cache`, or a step reading such a cache).
    """
    cfg = self.config
    method = conditioning_lib.active(cfg)
    if not decode or method is None or method.seam == "input" or not method.decode_cache:
      return self._fresh_decoder_conditioning(encoder_input_tokens, token_tasks) + (
          fill_static_cache,)
    task_ids = self.task_ids(encoder_input_tokens)
    num_layers = cfg.num_decoder_layers
    to_cache, from_cache = ((_layers_first, _layers_first) if cfg.scan_layers
                            else (lambda tree: tree, lambda tree: tree))
    stored_ids = lambda ids: jnp.broadcast_to(ids, (num_layers,) + ids.shape) if (
        cfg.scan_layers) else ids

    def pack(conditioning, with_ids=True):
      prefixes, adapters = conditioning
      tree = {"task_ids": stored_ids(task_ids)} if with_ids else {}
      if prefixes is not None:  # in the activation dtype, as the attention uses them
        tree["prefix_key"], tree["prefix_value"] = to_cache(
            tuple(p.astype(cfg.dtype) for p in prefixes))
      if adapters is not None:
        tree["adapters"] = to_cache(dict(adapters))
      return tree

    def unpack(tree) -> Tuple[Prefixes, AdapterWeights]:
      prefixes = None
      if "prefix_key" in tree:
        prefixes = from_cache((tree["prefix_key"], tree["prefix_value"]))
      adapters = from_cache(tree["adapters"]) if "adapters" in tree else None
      return prefixes, adapters

    if not self.has_variable("cache", DECODE_CACHE):  # cache creation
      tree = pack(self._fresh_decoder_conditioning(encoder_input_tokens),
                  with_ids=not fill_static_cache)
      self.put_variable("cache", DECODE_CACHE, tree)
      return unpack(tree) + (fill_static_cache,)
    stored = flax.core.unfreeze(self.get_variable("cache", DECODE_CACHE))
    if "task_ids" not in stored:  # made from the real inputs: fixed for the decode call
      return unpack(stored) + (True,)
    ids = stored["task_ids"][0] if cfg.scan_layers else stored["task_ids"]
    tree = nn.cond(
        jnp.all(ids == task_ids),
        lambda module, tokens, tree: tree,
        lambda module, tokens, tree: pack(module._fresh_decoder_conditioning(tokens)),
        self, encoder_input_tokens, stored)
    self.put_variable("cache", DECODE_CACHE, tree)
    return unpack(tree) + (False,)

  def _encoder_valid(self, encoder_input_tokens: Array, encoder_segment_ids=None,
                     prompt_rows: int = 0) -> Array:
    """Which encoded rows are real, `[B, Le]` (`[B, l + Le]` with `l` input-seam rows)."""
    valid = encoder_input_tokens > 0
    if not prompt_rows:
      return valid
    if encoder_segment_ids is not None:
      raise errors.ConfigError(
          f"conditioning={self.config.conditioning!r} does not support packed inputs "
          f"(segment ids were passed): {conditioning_lib.active(self.config).packing_refusal}; "
          "use pack=False.")
    return seams.extend_valid(valid, prompt_rows)

  def encode(self, encoder_input_tokens, encoder_segment_ids=None, enable_dropout=True):
    """Encodes `[B, Le]` tokens into `[B, Le, E]`."""
    cfg = self.config
    assert encoder_input_tokens.ndim == 2, "Expected `encoder_input_tokens` [batch, length]."
    input_prompt = self._input_prompt(encoder_input_tokens)
    valid = self._encoder_valid(encoder_input_tokens, encoder_segment_ids,
                                0 if input_prompt is None else input_prompt.shape[1])
    encoder_mask = layers.make_attention_mask(valid, valid, dtype=cfg.dtype)
    token_tasks = None
    if encoder_segment_ids is not None:
      encoder_mask = layers.combine_masks(
          encoder_mask,
          layers.make_attention_mask(encoder_segment_ids, encoder_segment_ids, jnp.equal,
                                     dtype=cfg.dtype))
      if conditioning_lib.active(cfg) is not None:
        token_tasks = self.packed_task_ids(encoder_input_tokens, encoder_segment_ids)
    prefixes = self._prefixes(encoder_input_tokens, "encoder", token_tasks)
    return self.encoder(encoder_input_tokens,
                        self._mask_prefix_slots(encoder_mask, prefixes, token_tasks),
                        deterministic=not enable_dropout, prefixes=prefixes,
                        adapters=self._adapters(encoder_input_tokens, "encoder", token_tasks),
                        input_prompt=input_prompt)

  def decode(self, encoded, encoder_input_tokens, decoder_input_tokens,
             decoder_target_tokens, encoder_segment_ids=None, decoder_segment_ids=None,
             decoder_positions=None, enable_dropout=True, decode=False,
             max_decode_length=None, fill_static_cache=False):
    """Decodes into logits `[B, Ld, V]` given encoded `[B, Le, E]`.

    `encoder_input_tokens` carries the task sentinel; with `decode=True` this
    runs one cached step (`decoder_input_tokens [B, 1]`), or creates the cache
    (the first call; `fill_static_cache`: see `init_decode_cache`).
    """
    cfg = self.config
    # Input-seam rows in front of the tokens: `encoded` is `[B, l + Le, E]`.
    prompt_rows = encoded.shape[1] - encoder_input_tokens.shape[1]
    encoder_valid = self._encoder_valid(encoder_input_tokens, encoder_segment_ids, prompt_rows)
    if decode:
      # Step-by-step decoding: the cache provides causality; no padding mask.
      decoder_mask = None
      encoder_decoder_mask = layers.make_attention_mask(
          jnp.ones_like(decoder_target_tokens), encoder_valid, dtype=cfg.dtype)
    else:
      decoder_mask = layers.make_decoder_mask(
          decoder_target_tokens=decoder_target_tokens, dtype=cfg.dtype,
          decoder_segment_ids=decoder_segment_ids)
      encoder_decoder_mask = layers.make_attention_mask(
          decoder_target_tokens > 0, encoder_valid, dtype=cfg.dtype)
    token_tasks = None
    if encoder_segment_ids is not None:
      if decode:
        raise ValueError("During decoding, packing should not be used but "
                         "`encoder_segment_ids` was passed to `Transformer.decode`.")
      encoder_decoder_mask = layers.combine_masks(
          encoder_decoder_mask,
          layers.make_attention_mask(decoder_segment_ids, encoder_segment_ids, jnp.equal,
                                     dtype=cfg.dtype))
      if conditioning_lib.active(cfg) is not None:
        token_tasks = self.packed_task_ids(encoder_input_tokens, encoder_segment_ids,
                                           decoder_segment_ids)
    prefixes, adapters, static_cache = self._decoder_conditioning(
        encoder_input_tokens, decode, token_tasks, fill_static_cache=fill_static_cache)
    return self.decoder(
        encoded, decoder_input_tokens=decoder_input_tokens,
        decoder_positions=decoder_positions,
        decoder_mask=self._mask_prefix_slots(decoder_mask, prefixes, token_tasks),
        encoder_decoder_mask=encoder_decoder_mask, deterministic=not enable_dropout,
        decode=decode, max_decode_length=max_decode_length, prefixes=prefixes,
        adapters=adapters, static_cache=static_cache)

  def init_decode_cache(self, encoder_input_tokens: Array, decoder_input_tokens: Array) -> Array:
    """Creates the decode cache from the real inputs; returns their encoding `[B, Le, E]`.

    Apply with `mutable=['cache']`. `decoder_input_tokens [B, Ld]` gives the decode
    length. Besides what t5x's cache initialisation creates (`__call__` with
    `decode=True` on all-ones inputs: per-layer self-attention caches and the
    decoder's conditioning), it stores what stays fixed for the whole decode call:
    each decoder layer's cross-attention keys and values of the encoded inputs, and
    the decoder's prompts / generated weights of these examples' tasks. The decode
    steps (`decode` with `decode=True`, as under t5x) then only read them: no step
    projects the encoded inputs or evaluates the hypernetworks.
    """
    encoded = self.encode(encoder_input_tokens, enable_dropout=False)
    self.decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_input_tokens,
                enable_dropout=False, decode=True, fill_static_cache=True)
    return encoded

  def __call__(self, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
               encoder_segment_ids=None, decoder_segment_ids=None, encoder_positions=None,
               decoder_positions=None, *, enable_dropout: bool = True, decode: bool = False):
    """Full encoder-decoder pass: logits `[B, Ld, V]`.

    Args:
      encoder_input_tokens: `[B, Le]`, task sentinel first.
      decoder_input_tokens: `[B, Ld]` (shifted targets).
      decoder_target_tokens: `[B, Ld]`.
      encoder_segment_ids, decoder_segment_ids: packing segment ids or None.
      encoder_positions, decoder_positions: packing positions or None (unused
        by relative attention; kept for the t5x signature).
      enable_dropout: dropout on (needs a 'dropout' rng).
      decode: cached decoding (used by t5x only to initialise the cache).
    """
    del encoder_positions
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids=encoder_segment_ids,
                          enable_dropout=enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       decoder_target_tokens, encoder_segment_ids=encoder_segment_ids,
                       decoder_segment_ids=decoder_segment_ids,
                       decoder_positions=decoder_positions, enable_dropout=enable_dropout,
                       decode=decode)
