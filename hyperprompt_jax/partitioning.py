# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Logical axis rules: t5x's standard rules plus the task-conditioning axes.

Every parameter of the network carries logical axis names (`params_axes`
collection, `flax.linen.partitioning.param_with_axes`), as in t5x. The backbone
uses t5x's names; task conditioning adds these axes, all replicated (they are
small) and each with an Adafactor factor rule:

| axis               | what                          | mesh axis | Adafactor factor |
|--------------------|-------------------------------|-----------|------------------|
| tasks              | task index T                  | None      | batch            |
| prompt_length      | prompt length l               | None      | none             |
| prompt_embed       | prompt width d = H * D        | None      | row              |
| prompt_bottleneck  | hypernetwork bottleneck b     | None      | column           |
| task_embed         | task / layer embeddings t', t | None      | batch            |
| task_mlp           | hidden width of h_t           | None      | none             |
| prefix_mlp         | Prefix-Tuning MLP hidden      | None      | column           |
| adapter_bottleneck | adapter bottleneck b          | None      | column           |
| adapter_blocks     | HyperFormer++ block types     | None      | batch            |

`layers` (stacked per-layer hypernetworks) already has t5x rules (None / batch).
With t5x installed, pass `CONDITIONING_AXIS_RULES` as `additional_rules` of
`standard_logical_axis_rules` and map `FACTOR_RULES` into
`adafactor.standard_logical_factor_rules()` (see `gin/t5x/`).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

LogicalAxisRules = Sequence[Tuple[str, Optional[str]]]

CONDITIONING_AXIS_RULES: LogicalAxisRules = (
    ("tasks", None),
    ("prompt_length", None),
    ("prompt_embed", None),
    ("prompt_bottleneck", None),
    ("task_embed", None),
    ("task_mlp", None),
    ("prefix_mlp", None),
    ("adapter_bottleneck", None),
    ("adapter_blocks", None),
)

# Adafactor factorisation of every logical axis ('row', 'column', 'batch', 'none'),
# t5x's standard factor rules plus ours.
FACTOR_RULES = {
    "vocab": "column",
    "embed": "row",
    "mlp": "column",
    "heads": "column",
    "kv": "column",
    "joined_kv": "column",
    "relpos_buckets": "none",
    "abspos_buckets": "none",
    "layers": "batch",
    "stack": "batch",
    "mlp_activations": "batch",
    "tasks": "batch",
    "prompt_length": "none",
    "prompt_embed": "row",
    "prompt_bottleneck": "column",
    "task_embed": "batch",
    "task_mlp": "none",
    "prefix_mlp": "column",
    "adapter_bottleneck": "column",
    "adapter_blocks": "batch",
}


def standard_logical_axis_rules(activation_partitioning_dims: int = 1,
                                parameter_partitioning_dims: int = 1,
                                additional_rules: Optional[LogicalAxisRules] = None
                                ) -> LogicalAxisRules:
  """t5x's default logical-to-mesh axis rules (1-D data + 1-D model), plus ours.

  Args:
    activation_partitioning_dims: 1 (batch on 'data') or 2 (also embed on 'model').
    parameter_partitioning_dims: 1 (model parallel on 'model') or 2 (also embed on 'data').
    additional_rules: rules that take precedence (prepended).
  """
  if activation_partitioning_dims not in (1, 2) or parameter_partitioning_dims not in (1, 2):
    raise ValueError("partitioning dims must be 1 or 2.")
  rules = [("batch", "data"), ("vocab", "model"), ("mlp", "model"), ("heads", "model"),
           ("kv", None), ("joined_kv", "model")]
  if activation_partitioning_dims == 2 or parameter_partitioning_dims == 2:
    rules.append(("embed", "data") if parameter_partitioning_dims == 2 else ("embed", "model"))
  rules += [("embed", None), ("relpos_buckets", None), ("abspos_buckets", None),
            ("length", None), ("layers", None), ("stack", None), ("mlp_activations", None)]
  rules += list(CONDITIONING_AXIS_RULES)
  return list(additional_rules or ()) + rules
