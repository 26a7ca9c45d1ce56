# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""What a training run does when something goes wrong, and how to configure it.

Every fault ends in one line on stderr (no traceback) and leaves what is already
in MODEL_DIR as it was:

* configuration mistakes (unknown task or gin name, feature lengths too short
  for the task sentinel, more tasks than NUM_TASKS, a MODEL_DIR holding another
  model or task table, a checkpoint that does not fit, an empty split) are
  refused before training starts: `error: ...`, exit status 2
  (`launch.ConfigurationError`; checks in `preflight.py` and `data.py`);
* a NaN or Inf in the loss, the gradients or the updated parameters stops the
  run before the bad state is saved: `error: non-finite ... at step N ...
  (first: <parameter>)`, exit status 1 (`numerics.NonFiniteError`); with
  `skip_nonfinite_steps` such updates are dropped instead;
* SIGTERM (preemption) saves a checkpoint at the next step boundary and exits
  with status 143 (`preemption.Preempted`); SIGKILL or a crash at any point,
  even in the middle of a checkpoint write, loses at most the steps since the
  last complete checkpoint: Orbax writes into a temporary folder and renames it
  when complete, a restart ignores (and removes) temporary folders and resumes
  bit-identically (parameters, optimizer state, RNG and input position).

`ReliabilityConfig` holds the switches (gin: `reliability.ReliabilityConfig`,
macros `ALLOW_CONFIG_CHANGE` and `SKIP_NONFINITE_STEPS` in runs/finetune.gin).
"""

from __future__ import annotations

import dataclasses

from hyperprompt_jax import errors


class RunStopped(Exception):
  """Training stopped early on purpose; `str(e)` is the one line the command prints.

  Attributes:
    exit_code: the command's exit status.
    prefix: printed before the message.
  """
  exit_code = 1
  prefix = "error: "

  def __init__(self, message: str):
    super().__init__(message)
    self.message = message


@dataclasses.dataclass(frozen=True)
class ReliabilityConfig:
  """Fault handling switches of `train` (all safe by default).

  Attributes:
    allow_config_change: resume in a MODEL_DIR whose saved model config
      (`model_config.json`) or task table (`task_table.json`) differs from this
      run's; the old files are kept as `*.replaced-<time>.json` (ALLOW_CONFIG_CHANGE).
    skip_nonfinite_steps: drop an update whose loss, gradients or new parameters
      are not finite (the step counter, input position and dropout key still
      advance) instead of stopping (SKIP_NONFINITE_STEPS).
    max_consecutive_skips: stop anyway after this many skipped steps in a row.
    truncation_check_examples: examples per task and split read before training
      to count inputs / targets longer than TASK_FEATURE_LENGTHS (0: no count).
    handle_sigterm: save a checkpoint and exit on SIGTERM (preemption).
  """
  allow_config_change: bool = False
  skip_nonfinite_steps: bool = False
  max_consecutive_skips: int = 10
  truncation_check_examples: int = 1000
  handle_sigterm: bool = True

  def __post_init__(self):
    if self.max_consecutive_skips < 1:
      raise errors.ConfigError(
          f"max_consecutive_skips must be >= 1, got {self.max_consecutive_skips}.")
    if self.truncation_check_examples < 0:
      raise errors.ConfigError("truncation_check_examples must be >= 0, got "
                               f"{self.truncation_check_examples}.")
