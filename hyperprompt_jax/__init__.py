# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""HyperPrompt in JAX/Flax on the t5x network contract."""

# Makes gin skip, instead of crash on, package look-ups of gin files in folders that are
# namespace packages (gin_utils._guard_system_path_reader), also under t5x's launchers.
from hyperprompt_jax import gin_utils as _gin_utils  # pylint: disable=unused-import
