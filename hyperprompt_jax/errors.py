# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The one error class for deliberate refusals of bad configuration or input.

A check that knows it is refusing what the user gave (a gin value, a mixture, a
checkpoint that does not fit, a MODEL_DIR holding another run) raises
`ConfigError` with a message naming what is wrong; the commands (`launch.main`)
print it as one `error: ...` line with exit status 2. Any other exception is a
bug and keeps its traceback. `ConfigError` is a `ValueError`, so code that
catches ValueError around a validation keeps working.
"""

# The exit status of a command that refused its configuration or input.
EXIT_STATUS = 2


class ConfigError(ValueError):
  """A run cannot start as configured, or an input was refused (one `error:` line)."""


def check_positive(config, *names: str) -> None:
  """Raises ConfigError for the first field of `config` (a T5Config) in `names` below 1."""
  for name in names:
    if getattr(config, name) < 1:
      raise ConfigError(f"T5Config.{name} must be >= 1, got {getattr(config, name)}.")
