# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Prompt-Tuning (Lester et al., 2021), multi-task: task ids -> soft prompt rows.

Seam: the input-embedding prompt. Each task `t` has a soft prompt
`P_t [l, E]` (`l = soft_prompt_length`) that is prepended to the encoder's
token embeddings, so the encoder runs on `l + L` rows. The prompt rows are
always visible: the encoder self-attention mask and the decoder's
cross-attention mask cover them (`seams.extend_valid`), and the encoder output keeps
them (the decoder attends to them, as in Lester et al.). Relative position
biases treat the prompt as positions `0..l-1` in front of the tokens.

As in the paper's multi-task setting (HyperPrompt, §4) the prompts are
task-specific and the whole model is tuned; to tune only the prompts, freeze
every parameter that does not match `prompt_tuning/.*`. Packed inputs are
refused at configuration time (`PACKING_REFUSAL`; the same restriction as t5x
prompt-tuning).

Parameters (under `prompt_tuning/`):
  prompts  [T, l, E]  (tasks, prompt_length, embed)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen import partitioning as nn_partitioning

from hyperprompt_jax import errors

param_with_axes = nn_partitioning.param_with_axes


# Why `pack=True` is refused (registry record; one line of the configuration error).
PACKING_REFUSAL = (
    "its soft prompt is l rows in front of the whole encoder row; conditioning packed "
    "segments would need l rows inside every segment, which changes the row length "
    "(L + S*l for S segments) and so cannot keep seqio's packed feature lengths")


def expected_num_params(config: Any) -> int:
  """Closed-form count of Prompt-Tuning's parameters: `T * l * E`."""
  return config.num_tasks * config.soft_prompt_length * config.emb_dim


def validate_config(config: Any) -> None:
  errors.check_positive(config, "soft_prompt_length")


class PromptTuning(nn.Module):
  """Task-specific soft prompts; see the module docstring."""
  config: Any

  @nn.compact
  def __call__(self, task_ids: jax.Array) -> jax.Array:
    """Soft prompt rows of each example's task.

    Args:
      task_ids: `[B]` int32 task indices.
    Returns:
      `[B, l, E]` float32.
    """
    cfg = self.config
    prompts = param_with_axes(
        "prompts", nn.initializers.normal(stddev=cfg.prompt_init_stddev),
        (cfg.num_tasks, cfg.soft_prompt_length, cfg.emb_dim), jnp.float32,
        axes=("tasks", "prompt_length", "embed"))
    return jnp.take(prompts, task_ids, axis=0)
