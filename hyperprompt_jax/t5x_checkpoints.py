# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The path the README documents (`t5x_checkpoints.restore_params`, `load_params`, ...).

Thin re-export: the code lives in `hyperprompt_jax/formats/` (`tree`, `t5x`, `restore`).
"""

# pylint: disable=unused-import
from hyperprompt_jax.formats.restore import (checkpoint_param_shapes, load_params,
                                             open_checkpoint, resolve_checkpoint,
                                             restore_params)
from hyperprompt_jax.formats.t5x import (CHECKPOINT_PREFIX, LEGACY_FILENAME, STATE_ITEM,
                                         save_legacy_checkpoint, save_orbax_checkpoint)
from hyperprompt_jax.formats.tree import (ARCHITECTURE_FIELDS, CONFIG_FILENAME, CheckpointError,
                                          CheckpointReader, abstract_params,
                                          architecture_mismatches, backbone_config,
                                          config_from_dict, config_to_dict, flatten,
                                          infer_config, init_params_subset,
                                          is_conditioning_param, read_config, unflatten,
                                          write_config)
