# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the methods of one seam (key/value prefix, input rows)."""

from __future__ import annotations

from typing import Optional, Tuple

import jax
import jax.numpy as jnp


def stack_layers(stack: str, num_enc: int, num_dec: int) -> slice:
  """Slice of the `M' = num_enc + num_dec` prefixed layers (encoder first) for `stack`."""
  if stack == "encoder":
    return slice(0, num_enc)
  if stack == "decoder":
    return slice(num_enc, num_enc + num_dec)
  raise ValueError(f"stack must be 'encoder' or 'decoder', got {stack!r}")


def extend_valid(valid: jax.Array, prompt_length: int) -> jax.Array:
  """Input seam: per-token validity `[B, L]` -> `[B, l + L]`, the prompt rows always valid."""
  ones = jnp.ones(valid.shape[:-1] + (prompt_length,), valid.dtype)
  return jnp.concatenate([ones, valid], axis=-1)


def gather_prefixes(key_all: jax.Array, value_all: jax.Array, task_ids: jax.Array,
                    num_heads: int, head_dim: int) -> Optional[Tuple[jax.Array, jax.Array]]:
  """Per-example prefixes from per-task ones.

  Args:
    key_all, value_all: `[T, M_stack, l, H*D]` prefixes of every task.
    task_ids: `[B]` int32 task indices.
  Returns:
    `(keys, values)`, each `[B, M_stack, l, H, D]`, or None when `M_stack == 0`.
  """
  if key_all.shape[1] == 0:
    return None

  def gather(per_task):
    out = jnp.take(per_task, task_ids, axis=0)
    return out.reshape(out.shape[:-1] + (num_heads, head_dim))

  return gather(key_all), gather(value_all)
