# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""T5 building blocks on the t5x parameter and partitioning contract.

One attention (with an optional key/value prefix), one MLP, one RMS norm, one
relative position bias and one embedding. Parameter names, shapes and logical
axis names follow t5x's T5.1.1 example so that a t5x checkpoint restores into
these modules unchanged.

Shape letters: B batch, L length (q: queries, k: keys), H heads, D head_dim,
E emb_dim, F mlp_dim, V vocab, P prefix length.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Optional, Sequence, Tuple, Union

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.linen import partitioning as nn_partitioning

Array = jax.Array
DType = Any
Initializer = Callable[..., Array]

param_with_axes = nn_partitioning.param_with_axes
with_sharding_constraint = nn_partitioning.with_sharding_constraint

# Large negative logit used for masked attention positions (finite, so a row
# whose every key is masked stays finite).
_NEG_INF = -1e10

default_embed_init = nn.initializers.normal(stddev=1.0)
default_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def _canonicalize_tuple(x: Union[int, Iterable[int]]) -> Tuple[int, ...]:
  if isinstance(x, Iterable):
    return tuple(x)
  return (x,)


def _normalize_axes(axes: Tuple[int, ...], ndim: int) -> Tuple[int, ...]:
  return tuple(ax if ax >= 0 else ndim + ax for ax in axes)


# ---------------------------------------------------------------------------
# Masks.
# ---------------------------------------------------------------------------


def make_attention_mask(query_input: Array,
                        key_input: Array,
                        pairwise_fn: Callable[..., Any] = jnp.multiply,
                        extra_batch_dims: int = 0,
                        dtype: DType = jnp.float32) -> Array:
  """Pairwise mask `[B, 1, Lq, Lk]` from per-token inputs `[B, Lq]`, `[B, Lk]`."""
  mask = pairwise_fn(
      jnp.expand_dims(query_input, axis=-1), jnp.expand_dims(key_input, axis=-2))
  mask = jnp.expand_dims(mask, axis=-3)
  mask = jnp.expand_dims(mask, axis=tuple(range(extra_batch_dims)))
  return mask.astype(dtype)


def make_causal_mask(x: Array, extra_batch_dims: int = 0,
                     dtype: DType = jnp.float32) -> Array:
  """Causal mask `[B, 1, L, L]` for inputs `[B, L]` (position i sees j <= i)."""
  idxs = jnp.broadcast_to(jnp.arange(x.shape[-1], dtype=jnp.int32), x.shape)
  return make_attention_mask(idxs, idxs, jnp.greater_equal,
                             extra_batch_dims=extra_batch_dims, dtype=dtype)


def combine_masks(*masks: Optional[Array], dtype: DType = jnp.float32) -> Optional[Array]:
  """Logical AND of the non-None masks (all of the same rank)."""
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  assert all(m.ndim == masks[0].ndim for m in masks), (
      f"masks must have the same rank: {tuple(m.ndim for m in masks)}")
  mask, *rest = masks
  for other in rest:
    mask = jnp.logical_and(mask, other)
  return mask.astype(dtype)


def combine_biases(*biases: Optional[Array]) -> Optional[Array]:
  """Sum of the non-None biases (all of the same rank)."""
  biases = [b for b in biases if b is not None]
  if not biases:
    return None
  out, *rest = biases
  for other in rest:
    out = out + other
  return out


def make_decoder_mask(decoder_target_tokens: Array,
                      dtype: DType,
                      decoder_causal_attention: Optional[Array] = None,
                      decoder_segment_ids: Optional[Array] = None) -> Array:
  """Decoder self-attention mask `[B, 1, L, L]`: causal, non-padding, same segment.

  `decoder_causal_attention` (`[B, L]`, 1 on input positions of a prefix LM)
  makes those positions attend bidirectionally among themselves.
  """
  masks = []
  causal = make_causal_mask(decoder_target_tokens, dtype=dtype)
  if decoder_causal_attention is not None:
    inputs_mask = make_attention_mask(
        decoder_causal_attention, decoder_causal_attention, jnp.logical_and, dtype=dtype)
    masks.append(jnp.logical_or(causal, inputs_mask).astype(dtype))
  else:
    masks.append(causal)
  masks.append(make_attention_mask(decoder_target_tokens > 0, decoder_target_tokens > 0,
                                   dtype=dtype))
  if decoder_segment_ids is not None:
    masks.append(make_attention_mask(decoder_segment_ids, decoder_segment_ids, jnp.equal,
                                     dtype=dtype))
  return combine_masks(*masks, dtype=dtype)


# ---------------------------------------------------------------------------
# Dense, embeddings, norm.
# ---------------------------------------------------------------------------


class DenseGeneral(nn.Module):
  """Dense over arbitrary axes with a 2-D kernel `[prod(in), prod(out)]` (t5x layout).

  Attributes:
    features: output feature shape.
    axis: input axes contracted.
    kernel_axes: logical axis names of the 2-D kernel.
  """
  features: Union[Iterable[int], int]
  axis: Union[Iterable[int], int] = -1
  dtype: DType = jnp.float32
  kernel_init: Initializer = default_kernel_init
  kernel_axes: Tuple[str, ...] = ()

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    features = _canonicalize_tuple(self.features)
    axis = _normalize_axes(_canonicalize_tuple(self.axis), inputs.ndim)
    inputs = jnp.asarray(inputs, self.dtype)
    in_shape = tuple(inputs.shape[ax] for ax in axis)
    kernel_shape = in_shape + features
    flat_shape = (int(np.prod(in_shape)), int(np.prod(features)))

    # As in t5x the kernel is initialised and stored in its 2-D shape, so fan-in
    # is prod(input dims) (E for q/k/v, H*D for the output projection).
    kernel = param_with_axes("kernel", self.kernel_init, flat_shape, jnp.float32,
                             axes=self.kernel_axes)
    kernel = jnp.asarray(kernel, self.dtype)
    batch_ndim = inputs.ndim - len(axis)
    if axis == tuple(range(batch_ndim, inputs.ndim)):
      # Trailing axes (every T5 projection): one 2-D matmul `[N, prod(in)] x [prod(in),
      # prod(out)]` over the flattened leading axes, whose kernel gradient is then a dot with
      # a single contracting axis. Contracting `[B, L]` as two axes instead, XLA:CPU gave
      # that gradient a transposed operand and computed its elementwise producer (the gated
      # activation's backward) twice, once per layout: a stack of T5.1.1 MLPs took 1.45x as
      # long for forward + backward (2026-12-01, bench/README.md).
      batch_shape = inputs.shape[:batch_ndim]
      flat = inputs.reshape((int(np.prod(batch_shape)), flat_shape[0]))
      y = lax.dot_general(flat, kernel, (((1,), (0,)), ((), ())))
      return y.reshape(batch_shape + features)
    contract = (axis, tuple(range(len(axis))))
    return lax.dot_general(inputs, kernel.reshape(kernel_shape), (contract, ((), ())))


class Embed(nn.Module):
  """Token embedding `[V, E]` with `attend` for tied logits."""
  num_embeddings: int
  features: int
  dtype: DType = jnp.float32
  attend_dtype: Optional[DType] = None
  embedding_init: Initializer = default_embed_init
  one_hot: bool = False

  def setup(self):
    self.embedding = param_with_axes(
        "embedding", self.embedding_init, (self.num_embeddings, self.features),
        jnp.float32, axes=("vocab", "embed"))

  def __call__(self, inputs: Array) -> Array:
    """Embeds integer tokens `[...]` into `[..., E]`."""
    if not jnp.issubdtype(inputs.dtype, jnp.integer):
      raise ValueError("Input type must be an integer or unsigned integer.")
    embedding = jnp.asarray(self.embedding, self.dtype)
    if self.one_hot:
      iota = lax.iota(jnp.int32, self.num_embeddings)
      one_hot = jnp.array(inputs[..., jnp.newaxis] == iota, dtype=self.dtype)
      output = jnp.dot(one_hot, embedding)
    else:
      output = jnp.take(embedding, inputs, axis=0)
    return with_sharding_constraint(output, ("batch", "length", "embed"))

  def attend(self, query: Array) -> Array:
    """Logits `[..., V]` of `[..., E]` queries against the embedding matrix."""
    dtype = self.attend_dtype if self.attend_dtype is not None else self.dtype
    return jnp.dot(query, jnp.asarray(self.embedding, dtype).T)


class LayerNorm(nn.Module):
  """T5 layer norm: RMS normalisation with a learned `scale` (no bias, no centring)."""
  epsilon: float = 1e-6
  dtype: DType = jnp.float32
  scale_init: Initializer = nn.initializers.ones

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = jnp.asarray(x, jnp.float32)
    features = x.shape[-1]
    mean2 = jnp.mean(lax.square(x), axis=-1, keepdims=True)
    y = jnp.asarray(x * lax.rsqrt(mean2 + self.epsilon), self.dtype)
    scale = param_with_axes("scale", self.scale_init, (features,), jnp.float32,
                            axes=("embed",))
    return y * jnp.asarray(scale, self.dtype)


# ---------------------------------------------------------------------------
# Relative position bias.
# ---------------------------------------------------------------------------


def relative_position_bucket(relative_position: Array,
                             bidirectional: bool = True,
                             num_buckets: int = 32,
                             max_distance: int = 128) -> Array:
  """T5's bucketing of `key_pos - query_pos`: exact for small, log-spaced for large."""
  ret = 0
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    ret += (n < 0).astype(np.int32) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  eps = np.finfo(np.float32).eps
  val_if_large = max_exact + (
      np.log(n.astype(np.float32) / max_exact + eps) / np.log(max_distance / max_exact) *
      (num_buckets - max_exact)).astype(np.int32)
  val_if_large = np.minimum(val_if_large, num_buckets - 1)
  ret += np.where(is_small, n, val_if_large)
  return ret


class RelativePositionBiases(nn.Module):
  """Per-head relative position bias `[1, H, Lq, Lk]`, parameter `rel_embedding [H, buckets]`."""
  num_buckets: int
  max_distance: int
  num_heads: int
  dtype: DType = jnp.float32
  embedding_init: Initializer = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")

  @nn.compact
  def __call__(self, qlen: int, klen: int, bidirectional: bool = True) -> Array:
    # Positions are static, so the buckets are a numpy constant.
    context_position = np.arange(qlen, dtype=np.int32)[:, None]
    memory_position = np.arange(klen, dtype=np.int32)[None, :]
    rp_bucket = relative_position_bucket(
        memory_position - context_position, bidirectional=bidirectional,
        num_buckets=self.num_buckets, max_distance=self.max_distance)
    rel_embedding = param_with_axes(
        "rel_embedding", self.embedding_init, (self.num_heads, self.num_buckets),
        jnp.float32, axes=("heads", "relpos_buckets"))
    rel_embedding = jnp.asarray(rel_embedding, self.dtype)
    values = jnp.take(rel_embedding, jnp.asarray(rp_bucket), axis=1)  # [H, Lq, Lk]
    return values[jnp.newaxis]


# ---------------------------------------------------------------------------
# Attention with an optional key/value prefix.
# ---------------------------------------------------------------------------


def dot_product_attention(query: Array,
                          key: Array,
                          value: Array,
                          bias: Optional[Array] = None,
                          dropout_rng: Optional[jax.Array] = None,
                          dropout_rate: float = 0.,
                          deterministic: bool = False,
                          dtype: DType = jnp.float32,
                          float32_logits: bool = False) -> Array:
  """Unscaled T5 attention (the 1/sqrt(D) scale lives in the query initialiser).

  Args:
    query: `[B, Lq, H, D]`.
    key: `[B, Lk, H, D]`.
    value: `[B, Lk, H, D]`.
    bias: additive bias broadcastable to `[B, H, Lq, Lk]` (mask folded in).
  Returns:
    `[B, Lq, H, D]`.
  """
  assert key.ndim == query.ndim == value.ndim, "q, k, v must have the same rank."
  assert query.shape[-1] == key.shape[-1], "q, k depths must match."
  assert key.shape[-3] == value.shape[-3], "k, v lengths must match."
  if float32_logits:
    query = query.astype(jnp.float32)
    key = key.astype(jnp.float32)
  logits = jnp.einsum("bqhd,bkhd->bhqk", query, key)
  if bias is not None:
    logits = logits + bias.astype(logits.dtype)
  # JAX's custom-JVP softmax (`y * (g - sum(y * g))`): the same weights, and its backward keeps
  # only them, not also the unnormalised exponentials and their sums that differentiating
  # `exp / sum` keeps (JAX's default): 48 MiB less memory per T5.1.1-small train step, forward +
  # backward 3% faster on CPU (2026-12-01, bench/README.md).
  with jax.softmax_custom_jvp(True):
    weights = jax.nn.softmax(logits).astype(dtype)
  if not deterministic and dropout_rate > 0.:
    keep_prob = 1.0 - dropout_rate
    # Same dropout pattern for every query position (t5x broadcasts over Lq).
    dropout_shape = list(weights.shape)
    dropout_shape[-2] = 1
    keep = jax.random.bernoulli(dropout_rng, keep_prob, dropout_shape)
    keep = jnp.broadcast_to(keep, weights.shape)
    weights = weights * (keep.astype(dtype) / jnp.asarray(keep_prob, dtype))
  return jnp.einsum("bhqk,bkhd->bqhd", weights, value)


def prepend_prefix(prefix: Array, x: Array) -> Array:
  """Concatenates a prefix `[B or 1, P, H, D]` in front of `[B, L, H, D]` along length."""
  prefix = jnp.broadcast_to(prefix.astype(x.dtype), (x.shape[0],) + prefix.shape[1:])
  return jnp.concatenate([prefix, x], axis=1)


def widen_mask_for_prefix(mask: Optional[Array], prefix_len: int) -> Optional[Array]:
  """Mask `[B, 1, Lq, Lk]` -> `[B, 1, Lq, P + Lk]`: prefix columns are always visible."""
  if mask is None:
    return None
  ones = jnp.ones(mask.shape[:-1] + (prefix_len,), mask.dtype)
  return jnp.concatenate([ones, mask], axis=-1)


def widen_bias_for_prefix(bias: Optional[Array], prefix_len: int) -> Optional[Array]:
  """Bias `[.., Lq, Lk]` -> `[.., Lq, P + Lk]` with zero bias on prefix columns."""
  if bias is None:
    return None
  zeros = jnp.zeros(bias.shape[:-1] + (prefix_len,), bias.dtype)
  return jnp.concatenate([zeros, bias], axis=-1)


class MultiHeadDotProductAttention(nn.Module):
  """t5x multi-head attention, with an optional task prefix on keys and values.

  The prefix (`key_prefix`, `value_prefix`: `[B, P, H, D]`, already in the
  projected K/V space) is prepended to the keys and values; it gets zero relative
  position bias, and unless the mask already has `P + Lk` columns it is never
  masked. Packed rows pass one prefix block shared by the rows (`[1, P, H, D]`)
  and a mask `[B, 1, Lq, P + Lk]` whose first `P` columns say which prefix slots
  each query sees (its own segment's task's). Queries and the output length are
  unchanged.

  Cached decoding (`decode=True`, self-attention): the cache is t5x's
  (`cached_key`, `cached_value` `[B, H, D, L]`, `cache_index`), with the prefix in
  `P` columns in front of the `L` decode positions (`[B, H, D, P + L]`), so a step
  runs vanilla T5's attention over `P + L` columns. With `static_prefix` (a cache
  made from the real inputs) the call that creates the cache writes the prefix and
  steps leave it; otherwise (t5x's cache from all-ones inputs, whose prefix may be
  another task's) every step writes `key_prefix`/`value_prefix` over those columns.

  Cross-attention in cached decoding: `inputs_kv` (the encoded inputs) is the same at
  every step. With `static_kv_cache`, the call that creates the cache
  (`fill_static_kv_cache`) projects it once and stores the keys and values in the
  layouts the attention's matmuls read (`cached_key [B, H, D, Lk]`, `cached_value
  [B, H, Lk, D]`), and the decode steps (`static_kv_cache`) read them. Without that
  cache (t5x's cache initialisation from all-ones inputs) a step projects `inputs_kv`
  itself, as t5x does: XLA hoists the projections out of the decode loop but still
  transposes both at every step and layer.
  """
  num_heads: int
  head_dim: int
  dtype: DType = jnp.float32
  dropout_rate: float = 0.
  kernel_init: Initializer = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
  float32_logits: bool = False

  @nn.compact
  def __call__(self,
               inputs_q: Array,
               inputs_kv: Array,
               mask: Optional[Array] = None,
               bias: Optional[Array] = None,
               *,
               key_prefix: Optional[Array] = None,
               value_prefix: Optional[Array] = None,
               decode: bool = False,
               static_prefix: bool = False,
               static_kv_cache: bool = False,
               fill_static_kv_cache: bool = False,
               deterministic: bool = False) -> Array:
    """Applies attention.

    Args:
      inputs_q: `[B, Lq, E]`.
      inputs_kv: `[B, Lk, E]`.
      mask: `[B, 1, Lq, Lk]` (1 = attend) or None; with a prefix also
        `[B, 1, Lq, P + Lk]` (the prefix columns' visibility given).
      bias: `[1 or B, H, Lq, Lk]` or None.
      key_prefix, value_prefix: `[B or 1, P, H, D]` or None (both or neither).
      decode: autoregressive self-attention step with the `cache` collection.
      static_prefix: with `decode` and a prefix: the prefix is written into the cache
        when it is created and not rewritten by the steps.
      static_kv_cache: `inputs_kv` is fixed over the decode steps (cross-attention
        in cached decoding): read its keys/values from the cache if it holds them.
      fill_static_kv_cache: with `static_kv_cache`, on the call that creates the
        cache: store them there.
      deterministic: disables dropout.
    Returns:
      `[B, Lq, E]`.
    """
    if (key_prefix is None) != (value_prefix is None):
      raise ValueError("key_prefix and value_prefix must be given together.")
    if decode and static_kv_cache:
      raise ValueError("decode (self-attention cache) and static_kv_cache (cross-attention "
                       "cache) are exclusive.")
    projection = functools.partial(
        DenseGeneral, axis=-1, features=(self.num_heads, self.head_dim),
        kernel_axes=("embed", "joined_kv"), dtype=self.dtype)
    depth_scaling = jnp.sqrt(self.head_dim).astype(self.dtype)

    def query_init(*args):
      return self.kernel_init(*args) / depth_scaling

    query = projection(kernel_init=query_init, name="query")(inputs_q)
    query = with_sharding_constraint(query, ("batch", "length", "heads", "kv"))
    if static_kv_cache and self.has_variable("cache", "cached_key"):
      # [B, H, D, Lk] and [B, H, Lk, D] -> [B, Lk, H, D]: XLA folds these into the matmuls.
      key = jnp.moveaxis(self.get_variable("cache", "cached_key"), -1, -3)
      value = jnp.moveaxis(self.get_variable("cache", "cached_value"), -2, -3)
    else:
      key = projection(kernel_init=self.kernel_init, name="key")(inputs_kv)
      value = projection(kernel_init=self.kernel_init, name="value")(inputs_kv)
      if static_kv_cache and fill_static_kv_cache:
        self.put_variable("cache", "cached_key", jnp.moveaxis(key, -3, -1))
        self.put_variable("cache", "cached_value", jnp.moveaxis(value, -3, -2))
    key = with_sharding_constraint(key, ("batch", "length", "heads", "kv"))
    value = with_sharding_constraint(value, ("batch", "length", "heads", "kv"))

    prefix_len = 0 if key_prefix is None else key_prefix.shape[1]
    if decode:
      is_initialized = self.has_variable("cache", "cached_key")
      # Cache layout [B, H, D, P + L], as t5x keeps it ([B, H, D, L]) with the prefix's
      # P columns in front.
      cache_shape = key.shape[:-3] + (key.shape[-2], key.shape[-1], prefix_len + key.shape[-3])

      def prefix_columns(prefix, dtype):  # [B or 1, P, H, D] -> the cache's [B, H, D, P]
        return jnp.broadcast_to(jnp.moveaxis(prefix.astype(dtype), -3, -1),
                                cache_shape[:-1] + (prefix_len,))

      def initial(prefix, dtype):  # zeros, with the prefix's columns when it is static
        if not (static_prefix and prefix_len):
          return jnp.zeros(cache_shape, dtype)
        rest = jnp.zeros(cache_shape[:-1] + (cache_shape[-1] - prefix_len,), dtype)
        return jnp.concatenate([prefix_columns(prefix, dtype), rest], axis=-1)

      cached_key = self.variable("cache", "cached_key", initial, key_prefix, key.dtype)
      cached_value = self.variable("cache", "cached_value", initial, value_prefix, value.dtype)
      cache_index = self.variable("cache", "cache_index",
                                  lambda: jnp.array(0, dtype=jnp.int32))
      if is_initialized:
        batch, num_heads, head_dim, length = cached_key.value.shape
        expected = (batch, 1, num_heads, head_dim)
        if expected != query.shape:
          raise ValueError(f"Autoregressive cache shape error, expected query shape "
                           f"{expected} instead got {query.shape}.")
        cur_index = cache_index.value

        def update(cached, new, prefix):
          # [B, 1, H, D] -> [B, H, D, 1] written into column P + cur_index, in place (t5x
          # adds a one-hot [L] times the new column instead: the same values, but a pass
          # over the whole cache at every step and layer); the prefix over columns < P.
          start = (0,) * (cached.ndim - 1)
          updated = lax.dynamic_update_slice(cached, jnp.moveaxis(new, -3, -1).astype(cached.dtype),
                                             start + (prefix_len + cur_index,))
          if prefix is None or static_prefix:
            return updated
          return lax.dynamic_update_slice(updated, prefix_columns(prefix, cached.dtype),
                                          start + (0,))

        key = update(cached_key.value, key, key_prefix)
        value = update(cached_value.value, value, value_prefix)
        cached_key.value = key
        cached_value.value = value
        cache_index.value = cache_index.value + 1
        key = jnp.moveaxis(key, -1, -3)
        value = jnp.moveaxis(value, -1, -3)
        # The prefix and the keys up to and including the current position are visible.
        mask = combine_masks(
            mask,
            jnp.broadcast_to(jnp.arange(length) <= prefix_len + cur_index,
                             (batch, 1, 1, length)))
        if bias is not None:
          # Widened before the row is picked: the widened bias is the same at every step.
          bias = widen_bias_for_prefix(bias, prefix_len) if prefix_len else bias
          bias = lax.dynamic_slice(bias, (0, 0, cur_index, 0),
                                   (1, bias.shape[1], 1, bias.shape[3]))
        key_prefix = value_prefix = None  # in the cache now

    if key_prefix is not None:
      if mask is None or mask.shape[-1] != prefix_len + key.shape[1]:
        mask = widen_mask_for_prefix(mask, prefix_len)  # else the caller masked the prefix
      bias = widen_bias_for_prefix(bias, prefix_len)
      key = prepend_prefix(key_prefix, key)
      value = prepend_prefix(value_prefix, value)
      key = with_sharding_constraint(key, ("batch", "length", "heads", "kv"))
      value = with_sharding_constraint(value, ("batch", "length", "heads", "kv"))

    if mask is not None:
      attention_bias = lax.select(
          mask > 0,
          jnp.full(mask.shape, 0.).astype(self.dtype),
          jnp.full(mask.shape, _NEG_INF).astype(self.dtype))
    else:
      attention_bias = None
    attention_bias = combine_biases(attention_bias, bias)

    dropout_rng = None
    if not deterministic and self.dropout_rate > 0.:
      dropout_rng = self.make_rng("dropout")

    x = dot_product_attention(
        query, key, value, bias=attention_bias, dropout_rng=dropout_rng,
        dropout_rate=self.dropout_rate, deterministic=deterministic, dtype=self.dtype,
        float32_logits=self.float32_logits)
    out = DenseGeneral(features=inputs_q.shape[-1], axis=(-2, -1), kernel_init=self.kernel_init,
                       kernel_axes=("joined_kv", "embed"), dtype=self.dtype, name="out")(x)
    return out


# ---------------------------------------------------------------------------
# MLP.
# ---------------------------------------------------------------------------


def _convert_to_activation_function(fn_or_string: Union[str, Callable]) -> Callable:
  if fn_or_string == "linear":
    return lambda x: x
  if isinstance(fn_or_string, str):
    return getattr(nn, fn_or_string)
  if callable(fn_or_string):
    return fn_or_string
  raise ValueError(f"Unknown activation {fn_or_string!r}.")


class MlpBlock(nn.Module):
  """T5 feed-forward: `wi` (or gated `wi_0, wi_1, ...`), dropout, `wo`.

  `activations=('relu',)` is T5.1.0; `('gelu', 'linear')` is T5.1.1's gated GELU.
  Input and output `[B, L, E]`; hidden `[B, L, F]`.
  """
  intermediate_dim: int = 2048
  activations: Sequence[Union[str, Callable]] = ("relu",)
  kernel_init: Initializer = default_kernel_init
  intermediate_dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: Array, decode: bool = False, deterministic: bool = False) -> Array:
    del decode
    activations = []
    for idx, act_fn in enumerate(self.activations):
      name = "wi" if len(self.activations) == 1 else f"wi_{idx}"
      x = DenseGeneral(self.intermediate_dim, dtype=self.dtype, kernel_init=self.kernel_init,
                       kernel_axes=("embed", "mlp"), name=name)(inputs)
      activations.append(_convert_to_activation_function(act_fn)(x))
    x = functools.reduce(lambda a, b: a * b, activations)
    x = nn.Dropout(rate=self.intermediate_dropout_rate, broadcast_dims=(-2,))(
        x, deterministic=deterministic)
    x = with_sharding_constraint(x, ("batch", "length", "mlp"))
    return DenseGeneral(inputs.shape[-1], dtype=self.dtype, kernel_init=self.kernel_init,
                        kernel_axes=("mlp", "embed"), name="wo")(x)
