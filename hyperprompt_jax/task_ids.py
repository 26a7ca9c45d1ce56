# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""How the per-example task index rides in `encoder_input_tokens`.

The scheme is the one t5x's prompt-tuning multi-task code uses: every example's
inputs start with a task *sentinel* token. Task `k` is marked by the sentinel
`<extra_id_k>`, whose id is `vocabulary.vocab_size - 1 - k` in seqio's
SentencePiece and byte vocabularies. The network reads the index back from
position 0 of `encoder_input_tokens`, which is the only input the stock t5x
`EncoderDecoderModel` passes to `encode` and to every step of beam search
(beam-expanded), so the task reaches every code path without a new feature.

`T5Config.task_sentinel_id` holds the id of `<extra_id_0>` (32099 for T5's
SentencePiece model with 100 extra ids). A token that is not a task sentinel
(for example the all-ones inputs t5x uses in `module.init`, or an all-padding
row) maps to a valid index by clipping inside the jitted network; out-of-range
task indices are refused earlier, when the data pipeline is configured
(`validate_task_index`), so real examples are never clipped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hyperprompt_jax import errors


def sentinel_for_task(task_index: int, task_sentinel_id: int) -> int:
  """Token id that marks task `task_index` (`<extra_id_{task_index}>`)."""
  return int(task_sentinel_id) - int(task_index)


def validate_task_index(task_index: int, *, num_tasks: int, task_sentinel_id: int,
                        vocab_size: int | None = None) -> None:
  """Raises ValueError unless `task_index` is representable in this configuration."""
  if not 0 <= task_index < num_tasks:
    raise errors.ConfigError(
        f"task index {task_index} is outside the configured number of tasks "
        f"(num_tasks={num_tasks}); raise T5Config.num_tasks or shrink the mixture.")
  token = sentinel_for_task(task_index, task_sentinel_id)
  if token < 3 or (vocab_size is not None and token >= vocab_size):
    raise errors.ConfigError(
        f"task index {task_index} needs sentinel id {token}, which is not a valid "
        f"extra id of a vocabulary of size {vocab_size} (task_sentinel_id="
        f"{task_sentinel_id}); the vocabulary needs at least {num_tasks} extra ids.")


def tokens_to_task_ids(encoder_input_tokens: jnp.ndarray, *, task_sentinel_id: int,
                       num_tasks: int) -> jnp.ndarray:
  """Task index `[B]` (int32) from the leading sentinel of `encoder_input_tokens [B, L]`."""
  first = jnp.asarray(encoder_input_tokens[:, 0]).astype(jnp.int32)
  return jnp.clip(task_sentinel_id - first, 0, num_tasks - 1)


def task_ids_to_tokens(task_ids: jnp.ndarray, *, task_sentinel_id: int) -> jnp.ndarray:
  """Inverse of `tokens_to_task_ids`: sentinel token ids `[B]` for task indices `[B]`."""
  return (task_sentinel_id - jnp.asarray(task_ids)).astype(jnp.int32)


def packed_task_ids(encoder_input_tokens: jnp.ndarray, encoder_segment_ids: jnp.ndarray, *,
                    task_sentinel_id: int, num_tasks: int) -> jnp.ndarray:
  """Per-token task index `[B, L]` of packed rows: each segment's leading sentinel.

  seqio's packing (`trim_and_pack_dataset`) numbers the segments of a row
  1, 2, ... and pads with 0, so a segment starts wherever the segment id
  changes. Every token takes the task of the sentinel at the first position of
  its segment (`lax.cummax` carries that position forward); padding takes a
  clipped index like any non-sentinel token. An unpacked row (one segment) gives
  `tokens_to_task_ids` at every position.
  """
  seg = jnp.asarray(encoder_segment_ids).astype(jnp.int32)
  length = seg.shape[-1]
  starts = jnp.concatenate(
      [jnp.ones(seg.shape[:-1] + (1,), bool), seg[..., 1:] != seg[..., :-1]], axis=-1)
  positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), seg.shape)
  first = jax.lax.cummax(jnp.where(starts, positions, 0), axis=seg.ndim - 1)
  sentinels = jnp.take_along_axis(jnp.asarray(encoder_input_tokens).astype(jnp.int32), first,
                                  axis=-1)
  return jnp.clip(task_sentinel_id - sentinels, 0, num_tasks - 1)


def decoder_task_ids(encoder_token_tasks: jnp.ndarray, encoder_segment_ids: jnp.ndarray,
                     decoder_segment_ids: jnp.ndarray) -> jnp.ndarray:
  """Per-token task index `[B, Ld]` of packed targets: the encoder segment with the same id.

  Args:
    encoder_token_tasks: `[B, Le]` from `packed_task_ids`.
    encoder_segment_ids: `[B, Le]`; decoder_segment_ids: `[B, Ld]` (segment k of
      the targets pairs with segment k of the inputs, as seqio packs them).
  """
  enc_seg = jnp.asarray(encoder_segment_ids).astype(jnp.int32)
  batch, length = enc_seg.shape
  rows = jnp.arange(batch)[:, None]
  # Segment id -> task; every token of a segment carries the same task, so `max` is exact.
  table = jnp.zeros((batch, length + 1), jnp.int32).at[
      rows, jnp.clip(enc_seg, 0, length)].max(encoder_token_tasks.astype(jnp.int32))
  dec_seg = jnp.clip(jnp.asarray(decoder_segment_ids).astype(jnp.int32), 0, length)
  return jnp.take_along_axis(table, dec_seg, axis=-1)
