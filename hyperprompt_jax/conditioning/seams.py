# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the methods of one seam (key/value prefix, input rows).

Packed rows (docs/method.md, "Packed rows"): a prefix method called with
`task_ids=None` returns the prefixes of *every* task as one shared block of
`T * l` slots (task-major, batch axis 1, broadcast over the rows), and the
network masks each query to the `l` slots of its own segment's task
(`task_slot_mask`). The block is the same for every row, so nothing is gathered
per row or per segment.
"""

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


def gather_prefixes(key_all: jax.Array, value_all: jax.Array, task_ids: Optional[jax.Array],
                    num_heads: int, head_dim: int) -> Optional[Tuple[jax.Array, jax.Array]]:
  """Per-example prefixes from per-task ones (or every task's, for packed rows).

  Args:
    key_all, value_all: `[T, M_stack, l, H*D]` prefixes of every task.
    task_ids: `[B]` int32 task indices, or None for packed rows.
  Returns:
    `(keys, values)`, each `[B, M_stack, l, H, D]` (`[1, M_stack, T*l, H, D]`,
    slot `t*l + j` = row `j` of task `t`, when `task_ids` is None), or None when
    `M_stack == 0`.
  """
  if key_all.shape[1] == 0:
    return None
  if task_ids is None:
    def every_task(per_task):
      t, m, l, _ = per_task.shape
      return jnp.transpose(per_task, (1, 0, 2, 3)).reshape(1, m, t * l, num_heads, head_dim)

    return every_task(key_all), every_task(value_all)

  def gather(per_task):
    out = jnp.take(per_task, task_ids, axis=0)
    return out.reshape(out.shape[:-1] + (num_heads, head_dim))

  return gather(key_all), gather(value_all)


def task_slot_mask(token_tasks: jax.Array, num_tasks: int, prompt_length: int,
                   dtype=jnp.float32) -> jax.Array:
  """Which of the `T * l` shared prefix slots each query sees: `[B, 1, L, T*l]`.

  Args:
    token_tasks: `[B, L]` task index of every query's segment.
  Returns:
    1 where slot `t*l + j` belongs to the query's task `t`, else 0.
  """
  slot_task = jnp.repeat(jnp.arange(num_tasks, dtype=jnp.int32), prompt_length)
  mask = jnp.equal(token_tasks[..., None].astype(jnp.int32), slot_task)
  return mask[:, None].astype(dtype)
