# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""T5's span-corruption objective (Raffel et al. 2020, section 3.1.4), on tf.data.

The definition, for a row of `n` tokens, noise density `d` and mean noise span
length `m` (t5: d = 0.15, m = 3):

* `num_noise = clip(round(n * d), 1, n - 1)` tokens are noise, in
  `num_spans = max(round(num_noise / m), 1)` spans; the noise tokens and the
  other tokens are each split into `num_spans` non-empty segments uniformly at
  random, and the row alternates non-noise, noise, non-noise, ... (it always
  starts with non-noise);
* inputs: every noise span replaced by one sentinel, `<extra_id_0>`,
  `<extra_id_1>`, ... in order (ids `vocab_size - 1`, `vocab_size - 2`, ...);
* targets: every non-noise span replaced by one sentinel the same way, so the
  targets are `<extra_id_0> span_0 <extra_id_1> span_1 ...`.

`span_corruption_lengths` is the inverse used to size the rows: the longest raw
row whose inputs (plus EOS) fit `inputs_length`. Randomness comes from seqio's
per-example seeds (`seqio.map_over_dataset(num_seeds=1)`), so the corruption of a
row is fixed by the dataset seed.
"""

from __future__ import annotations

from typing import Mapping, Tuple

import seqio
import tensorflow as tf

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0


def _counts(length, noise_density: float, mean_noise_span_length: float):
  """(num_noise, num_spans) of a row of `length` tokens (python ints or int32 tensors)."""
  length_f = tf.cast(length, tf.float32)
  num_noise = tf.cast(tf.round(length_f * noise_density), tf.int32)
  num_noise = tf.clip_by_value(num_noise, 1, tf.cast(length, tf.int32) - 1)
  num_spans = tf.cast(tf.round(tf.cast(num_noise, tf.float32) / mean_noise_span_length),
                      tf.int32)
  return num_noise, tf.maximum(num_spans, 1)


def span_corruption_lengths(inputs_length: int, noise_density: float = NOISE_DENSITY,
                            mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH
                            ) -> Tuple[int, int]:
  """(raw row length, targets length incl. EOS) for inputs of `inputs_length` incl. EOS."""
  def sizes(n):
    noise = min(max(int(round(n * noise_density)), 1), n - 1)
    spans = max(int(round(noise / mean_noise_span_length)), 1)
    return n - noise + spans + 1, noise + spans + 1
  n = 2
  while sizes(n + 1)[0] <= inputs_length:
    n += 1
  return n, sizes(n)[1]


def _segment_lengths(num_items, num_segments, seed) -> tf.Tensor:
  """Lengths `[num_segments]` of a uniformly random split of `num_items` into non-empty parts."""
  starts = tf.cast(tf.range(num_items - 1) < num_segments - 1, tf.int32)
  starts = tf.random.experimental.stateless_shuffle(starts, seed=seed)
  segment_id = tf.cumsum(tf.concat([[0], starts], axis=0))
  return tf.math.unsorted_segment_sum(tf.ones_like(segment_id), segment_id, num_segments)


def random_spans_noise_mask(length, seed, noise_density: float = NOISE_DENSITY,
                            mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH
                            ) -> tf.Tensor:
  """Boolean noise mask `[length]` (True = noise) by the definition above; `length >= 2`."""
  length = tf.cast(length, tf.int32)
  num_noise, num_spans = _counts(length, noise_density, mean_noise_span_length)
  seeds = tf.random.experimental.stateless_split(seed, num=2)
  noise_lengths = _segment_lengths(num_noise, num_spans, seeds[0])
  keep_lengths = _segment_lengths(length - num_noise, num_spans, seeds[1])
  # Span k of the row: keep_lengths[k] non-noise tokens, then noise_lengths[k] noise tokens.
  span_lengths = tf.reshape(tf.stack([keep_lengths, noise_lengths], axis=1), [-1])
  span_index = tf.repeat(tf.range(2 * num_spans), span_lengths)
  return tf.equal(span_index % 2, 1)


def _replace_spans(tokens: tf.Tensor, mask: tf.Tensor, vocab_size: int) -> tf.Tensor:
  """Each run of `mask` tokens replaced by the next sentinel (vocab_size - 1, - 2, ...)."""
  previous = tf.concat([[False], mask[:-1]], axis=0)
  first = tf.logical_and(mask, tf.logical_not(previous))
  sentinel = vocab_size - tf.cumsum(tf.cast(first, tokens.dtype))
  tokens = tf.where(first, sentinel, tokens)
  return tf.boolean_mask(tokens, tf.logical_not(tf.logical_and(mask, previous)))


def corrupt(tokens: tf.Tensor, seed, vocab_size: int, noise_density: float = NOISE_DENSITY,
            mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> Mapping[str, tf.Tensor]:
  """`{"inputs", "targets"}` of one row of `tokens` (`[n]`, n >= 2)."""
  mask = random_spans_noise_mask(tf.size(tokens), seed, noise_density, mean_noise_span_length)
  return {"inputs": _replace_spans(tokens, mask, vocab_size),
          "targets": _replace_spans(tokens, tf.logical_not(mask), vocab_size)}


def split_into_rows(dataset: tf.data.Dataset, row_length: int,
                    feature: str = "targets") -> tf.data.Dataset:
  """Concatenates the token streams of `feature` and cuts rows of `row_length` tokens."""
  return (dataset.map(lambda x: x[feature], num_parallel_calls=tf.data.AUTOTUNE)
          .unbatch().batch(row_length, drop_remainder=True)
          .map(lambda t: {feature: t}, num_parallel_calls=tf.data.AUTOTUNE))


def span_corruption(dataset: tf.data.Dataset, output_features: Mapping[str, seqio.Feature],
                    sequence_length: Mapping[str, int],
                    noise_density: float = NOISE_DENSITY,
                    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH) -> tf.data.Dataset:
  """seqio preprocessor: tokenized `targets` text -> span-corrupted rows (t5's objective).

  Rows are sized so that the inputs, with the EOS appended later
  (`append_eos_after_trim`), are exactly `sequence_length["inputs"]` long.
  """
  vocab_size = output_features["inputs"].vocabulary.vocab_size
  row_length, _ = span_corruption_lengths(sequence_length["inputs"], noise_density,
                                          mean_noise_span_length)

  @seqio.map_over_dataset(num_seeds=1)
  def _corrupt(row, seed):
    return corrupt(row["targets"], seed, vocab_size, noise_density, mean_noise_span_length)

  return _corrupt(split_into_rows(dataset, row_length))
