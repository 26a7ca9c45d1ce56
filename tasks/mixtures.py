# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""GLUE / SuperGLUE mixtures (t5's names and rates) and the joint HyperPrompt blend.

Rates are the training-set sizes (examples-proportional mixing, t5's
`glue_utils` weight mappings); eval-only tasks have rate 0 and are evaluated but
never trained on. Task order (and so the task table) is t5's order.

| mixture | tasks (table) |
|---|---|
| `glue_v002_proportional` | 11 tasks, 8 task indices (mnli's eval twins share its index); WNLI is left out as in t5 |
| `super_glue_v102_proportional` | 12 tasks, 9 task indices (wsc eval, axb, axg share) |
| `glue_super_glue_proportional` | both (23 tasks, 17 indices: GLUE's 8 then SuperGLUE's 9) |

`register_glue_super_glue_mixture(name, temperature=T, maximum=M)` registers the
joint blend with rates `min(n, M) ** (1/T)` (seqio's `mixing_rate_num_examples`
order: cap, then temperature).
"""

from __future__ import annotations

from typing import Optional

import seqio

from hyperprompt_tasks import registry

GLUE_MIXTURE = "glue_v002_proportional"
SUPER_GLUE_MIXTURE = "super_glue_v102_proportional"
GLUE_SUPER_GLUE_MIXTURE = "glue_super_glue_proportional"

GLUE_MIXTURE_TASKS = (
    "glue_cola_v002", "glue_sst2_v002", "glue_mrpc_v002", "glue_qqp_v002", "glue_stsb_v002",
    "glue_mnli_v002", "glue_qnli_v002", "glue_rte_v002", "glue_mnli_mismatched_v002",
    "glue_mnli_matched_v002", "glue_ax_v002",
)
SUPER_GLUE_MIXTURE_TASKS = (
    "dpr_v001_simple", "super_glue_wsc_v102_simple_train", "super_glue_wsc_v102_simple_eval",
    "super_glue_boolq_v102", "super_glue_cb_v102", "super_glue_copa_v102",
    "super_glue_multirc_v102", "super_glue_record_v102", "super_glue_rte_v102",
    "super_glue_wic_v102", "super_glue_axb_v102", "super_glue_axg_v102",
)


def register_glue_super_glue_mixture(name: str = GLUE_SUPER_GLUE_MIXTURE, *,
                                     temperature: float = 1.0,
                                     maximum: Optional[float] = None,
                                     prefix: str = "") -> seqio.Mixture:
  """The joint GLUE + SuperGLUE blend, examples-proportional with optional T and cap."""
  rate = registry.rate_num_examples(maximum=maximum, temperature=temperature)
  tasks = GLUE_MIXTURE_TASKS + SUPER_GLUE_MIXTURE_TASKS
  return registry.register_mixture(prefix + name, [(prefix + t, rate) for t in tasks])


def register_benchmark_mixtures(prefix: str = "") -> tuple:
  """Registers the three mixtures above (after the GLUE and SuperGLUE tasks)."""
  rate = registry.rate_num_examples()
  registry.register_mixture(prefix + GLUE_MIXTURE,
                            [(prefix + t, rate) for t in GLUE_MIXTURE_TASKS])
  registry.register_mixture(prefix + SUPER_GLUE_MIXTURE,
                            [(prefix + t, rate) for t in SUPER_GLUE_MIXTURE_TASKS])
  register_glue_super_glue_mixture(prefix=prefix)
  return tuple(prefix + n for n in (GLUE_MIXTURE, SUPER_GLUE_MIXTURE, GLUE_SUPER_GLUE_MIXTURE))
