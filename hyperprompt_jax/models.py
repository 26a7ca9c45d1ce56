# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Loss, scoring and decoding around the network, mirroring `t5x.models.EncoderDecoderModel`.

`EncoderDecoderModel(module, input_vocabulary, output_vocabulary, ...)` exposes the
t5x methods our launcher needs (`get_initial_variables`, `loss_fn`, `eval_fn`,
`score_batch`, `predict_batch`, `predict_batch_with_aux`) and the same
`FEATURE_CONVERTER_CLS`. Users who have t5x use t5x's own class with our
`network.Transformer` instead (see `gin/t5x/`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import seqio
from flax import linen as nn

Array = jax.Array
Batch = Mapping[str, Array]


def cross_entropy_with_logits(logits: Array, targets: Array, z_loss: float = 0.0
                              ) -> Tuple[Array, Array]:
  """Per-token softmax cross-entropy `[B, L]` of `[B, L, V]` logits and its z-loss `[B, L]`."""
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  loss = log_z - target_logit
  total_z_loss = z_loss * jnp.square(log_z)
  return loss + total_z_loss, total_z_loss


def compute_weighted_cross_entropy(logits: Array, targets: Array, weights: Optional[Array] = None,
                                   label_smoothing: float = 0.0, z_loss: float = 0.0,
                                   loss_normalizing_factor: Optional[float] = None
                                   ) -> Tuple[Array, Array, Array]:
  """Weighted cross-entropy as t5x computes it: `(loss, z_loss, weight_sum)` (scalars).

  Args:
    logits: `[B, L, V]`.
    targets: `[B, L]` int.
    weights: `[B, L]` or None (all ones).
    label_smoothing: mass spread over the other classes.
    z_loss: coefficient of the `log(Z)^2` auxiliary loss.
    loss_normalizing_factor: divide the summed loss by this (None: no division).
  """
  if logits.ndim != targets.ndim + 1:
    raise ValueError(f"Incorrect shapes. Got shape {logits.shape} logits and "
                     f"{targets.shape} targets")
  vocab_size = logits.shape[-1]
  confidence = 1.0 - label_smoothing
  low_confidence = (1.0 - confidence) / (vocab_size - 1)
  normalizing_constant = -(
      confidence * np.log(confidence) +
      (vocab_size - 1) * low_confidence * np.log(low_confidence + 1e-20))
  if label_smoothing > 0:
    soft_targets = optax.smooth_labels(jax.nn.one_hot(targets, vocab_size), label_smoothing)
    log_z = jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)
    total_loss = -jnp.sum(soft_targets * jax.nn.log_softmax(logits.astype(jnp.float32)), -1)
    z = z_loss * jnp.square(log_z)
    total_loss = total_loss + z - normalizing_constant
    total_z_loss = z
  else:
    total_loss, total_z_loss = cross_entropy_with_logits(logits, targets, z_loss)
  if weights is not None:
    total_loss = total_loss * weights
    total_z_loss = total_z_loss * weights
    weight_sum = jnp.sum(weights)
  else:
    weight_sum = jnp.asarray(np.prod(targets.shape), jnp.float32)
  loss = jnp.sum(total_loss)
  z = jnp.sum(total_z_loss)
  if loss_normalizing_factor is not None:
    loss, z = loss / loss_normalizing_factor, z / loss_normalizing_factor
  return loss, z, weight_sum


class EncoderDecoderModel:
  """t5x-style wrapper: loss, scoring, greedy decoding with the autoregressive cache."""

  FEATURE_CONVERTER_CLS = seqio.EncDecFeatureConverter

  def __init__(self, module: nn.Module, input_vocabulary: Optional[seqio.Vocabulary] = None,
               output_vocabulary: Optional[seqio.Vocabulary] = None,
               optimizer_def: Any = None, label_smoothing: float = 0.0,
               z_loss: float = 0.0, loss_normalizing_factor: Optional[float] = None):
    self.module = module
    self.input_vocabulary = input_vocabulary
    self.output_vocabulary = output_vocabulary
    self.optimizer_def = optimizer_def
    self._label_smoothing = label_smoothing
    self._z_loss = z_loss
    self._loss_normalizing_factor = loss_normalizing_factor

  # -- initialisation -------------------------------------------------------
  def get_initial_variables(self, rng: jax.Array, input_shapes: Mapping[str, Tuple[int, ...]],
                            input_types: Optional[Mapping[str, Any]] = None):
    """`module.init` on float all-ones inputs, exactly as t5x does."""
    input_types = input_types or {}
    enc_shape = input_shapes["encoder_input_tokens"]
    dec_shape = input_shapes["decoder_input_tokens"]
    enc_type = input_types.get("encoder_input_tokens", jnp.float32)
    dec_type = input_types.get("decoder_input_tokens", jnp.float32)
    segment_kwargs = {}
    if "encoder_segment_ids" in input_shapes:
      seg_type = input_types.get("encoder_segment_ids", jnp.int32)
      segment_kwargs = dict(
          encoder_segment_ids=jnp.ones(input_shapes["encoder_segment_ids"], seg_type),
          decoder_segment_ids=jnp.ones(input_shapes["decoder_segment_ids"], seg_type),
          encoder_positions=jnp.ones(input_shapes["encoder_positions"], seg_type),
          decoder_positions=jnp.ones(input_shapes["decoder_positions"], seg_type))
    params_rng, dropout_rng = jax.random.split(rng)
    return self.module.init(
        {"params": params_rng, "dropout": dropout_rng}, jnp.ones(enc_shape, enc_type),
        jnp.ones(dec_shape, dec_type), jnp.ones(dec_shape, dec_type), **segment_kwargs,
        decode=False, enable_dropout=False)

  # -- training -------------------------------------------------------------
  def _compute_logits(self, params, batch: Batch, dropout_rng: Optional[jax.Array] = None,
                      mutable=False, other_variables=None) -> Array:
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    return self.module.apply(
        {"params": params, **(other_variables or {})},
        batch["encoder_input_tokens"], batch["decoder_input_tokens"],
        batch["decoder_target_tokens"],
        encoder_segment_ids=batch.get("encoder_segment_ids"),
        decoder_segment_ids=batch.get("decoder_segment_ids"),
        encoder_positions=batch.get("encoder_positions"),
        decoder_positions=batch.get("decoder_positions"),
        decode=False, enable_dropout=dropout_rng is not None, rngs=rngs, mutable=mutable)

  def loss_fn(self, params, batch: Batch, dropout_rng: Optional[jax.Array]
              ) -> Tuple[Array, Mapping[str, Array]]:
    """Summed (or normalised) weighted cross-entropy and metrics, as in t5x."""
    logits = self._compute_logits(params, batch, dropout_rng)
    weights = batch.get("decoder_loss_weights")
    loss, z_loss, weight_sum = compute_weighted_cross_entropy(
        logits, targets=batch["decoder_target_tokens"], weights=weights,
        label_smoothing=self._label_smoothing, z_loss=self._z_loss,
        loss_normalizing_factor=self._loss_normalizing_factor)
    targets = batch["decoder_target_tokens"]
    w = weights if weights is not None else jnp.ones_like(targets, jnp.float32)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32) * w
    metrics = {
        "loss": loss,
        "z_loss": z_loss,
        "weight_sum": weight_sum,
        "accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(w), 1.0),
        "cross_ent_loss_per_token": (loss - z_loss) / jnp.maximum(weight_sum, 1.0),
    }
    return loss, metrics

  def eval_fn(self, params, batch: Batch) -> Tuple[Array, Mapping[str, Array]]:
    return self.loss_fn(params, batch, dropout_rng=None)

  def score_batch(self, params, batch: Batch) -> Array:
    """Sum of target log-likelihoods per example `[B]` (weighted by loss weights)."""
    logits = self._compute_logits(params, batch)
    token_scores = -cross_entropy_with_logits(logits, batch["decoder_target_tokens"])[0]
    weights = batch.get("decoder_loss_weights")
    if weights is None:
      weights = (batch["decoder_target_tokens"] > 0).astype(jnp.float32)
    return jnp.sum(token_scores * weights, axis=-1)

  # -- inference ------------------------------------------------------------
  def _init_cache(self, params, encoder_input_tokens: Array, max_decode_length: int
                  ) -> Tuple[Mapping[str, Any], Array]:
    """The decode cache of `encoder_input_tokens [B, Le]`'s examples and their encoding.

    Unlike t5x, which initialises the cache from all-ones inputs, this creates it from
    the real inputs (`network.Transformer.init_decode_cache`), so what is fixed for the
    decode call (the cross-attention keys/values of the encoded inputs, the decoder's
    hyper-prompts) is computed here, once, and never inside a decode step.
    """
    batch_size = encoder_input_tokens.shape[0]
    dec_shape = (batch_size, max_decode_length)
    encoded, variables = self.module.apply(
        {"params": params}, encoder_input_tokens, jnp.ones(dec_shape, jnp.int32),
        mutable=["cache"], method=self.module.init_decode_cache)
    return variables["cache"], encoded

  def predict_batch_with_aux(self, params, batch: Batch, rng: Optional[jax.Array] = None,
                             decoder_params: Optional[Mapping[str, Any]] = None,
                             max_decode_length: Optional[int] = None
                             ) -> Tuple[Array, Mapping[str, Array]]:
    """Greedy decoding with the autoregressive cache.

    Returns:
      tokens `[B, Ld]` (0 after EOS) and `{'scores': [B]}` (sum of log-probs).
    """
    del rng, decoder_params
    encoder_input_tokens = batch["encoder_input_tokens"]
    if max_decode_length is None:
      max_decode_length = batch["decoder_input_tokens"].shape[1]
    eos_id = self.output_vocabulary.eos_id if self.output_vocabulary is not None else 1
    cache, encoded = self._init_cache(params, encoder_input_tokens, max_decode_length)
    batch_size = encoder_input_tokens.shape[0]

    def step(carry, _):
      cache, cur_token, done, score = carry
      logits, new_vars = self.module.apply(
          {"params": params, "cache": cache}, encoded, encoder_input_tokens,
          cur_token[:, None], cur_token[:, None], enable_dropout=False, decode=True,
          max_decode_length=max_decode_length, mutable=["cache"], method=self.module.decode)
      log_probs = jax.nn.log_softmax(logits[:, 0].astype(jnp.float32))
      next_token = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
      next_token = jnp.where(done, 0, next_token)
      token_lp = jnp.take_along_axis(log_probs, next_token[:, None], -1)[:, 0]
      score = score + jnp.where(done, 0.0, token_lp)
      done = done | (next_token == eos_id)
      return (new_vars["cache"], next_token, done, score), next_token

    init = (cache, jnp.zeros((batch_size,), jnp.int32), jnp.zeros((batch_size,), bool),
            jnp.zeros((batch_size,), jnp.float32))
    (_, _, _, scores), tokens = jax.lax.scan(step, init, None, length=max_decode_length)
    return jnp.transpose(tokens), {"scores": scores}

  def predict_batch(self, params, batch: Batch, rng: Optional[jax.Array] = None) -> Array:
    return self.predict_batch_with_aux(params, batch, rng)[0]
