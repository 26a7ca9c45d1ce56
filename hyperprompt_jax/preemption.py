# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Preemption: SIGTERM asks the training loop to save a checkpoint and exit.

Schedulers (Borg, Kubernetes, SLURM, spot VMs) send SIGTERM some seconds before
they kill a job. `PreemptionWatcher` turns it into a request that the loop
honours at the next step boundary: save the current state, wait until it is
written, raise `Preempted` (exit status 143 = 128 + SIGTERM). Rerunning the same
command resumes from that checkpoint. A second SIGTERM while saving kills the
process as usual.

With several processes (`jax.distributed`), jax's preemption sync manager
catches SIGTERM on any host and `multihost_utils.reached_preemption_sync_point`
makes every host stop at the same step; no Python handler is installed then.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Optional

import jax

from hyperprompt_jax import reliability

_REQUESTED = threading.Event()


def requested() -> bool:
  """Whether this process received SIGTERM while a watcher was active."""
  return _REQUESTED.is_set()


class Preempted(reliability.RunStopped):
  """Training saved a checkpoint and stopped because of SIGTERM."""
  exit_code = 128 + signal.SIGTERM
  prefix = ""

  def __init__(self, step: int, checkpoint_dir: Optional[str]):
    where = f"saved {checkpoint_dir}" if checkpoint_dir else "no checkpoint saved"
    super().__init__(f"preempted (SIGTERM) at step {step}: {where}; rerun the same command "
                     "to resume.")
    self.step = step
    self.checkpoint_dir = checkpoint_dir


class PreemptionWatcher:
  """Turns SIGTERM into `should_stop(step) -> True` at a step boundary.

  `start()` installs the handler, `stop()` restores the previous one (also as a
  context manager). Outside the main thread no handler can be installed; the
  watcher then only reports jax's multi-host sync point.
  """

  def __init__(self, enabled: bool = True):
    self.enabled = enabled
    self._previous = None
    self._installed = False

  def _handler(self, signum, frame):
    del frame
    logging.warning("received signal %d: saving a checkpoint at the next step boundary.",
                    signum)
    _REQUESTED.set()
    # A second signal gets the previous behaviour (by default: terminate now).
    signal.signal(signum, self._previous if self._previous is not None else signal.SIG_DFL)

  def __enter__(self) -> "PreemptionWatcher":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

  def start(self) -> "PreemptionWatcher":
    _REQUESTED.clear()
    if not self.enabled or jax.process_count() > 1:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handler)
      self._installed = True
    except ValueError:  # not the main thread
      logging.info("SIGTERM handler not installed (not in the main thread).")
    return self

  def stop(self) -> None:
    if self._installed:
      if signal.getsignal(signal.SIGTERM) == self._handler:
        signal.signal(signal.SIGTERM, self._previous if self._previous is not None
                      else signal.SIG_DFL)
      self._installed = False

  def should_stop(self, step: int) -> bool:
    """True (on every host at the same step) once a preemption was signalled."""
    if not self.enabled:
      return False
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      try:
        return bool(multihost_utils.reached_preemption_sync_point(int(step)))
      except RuntimeError:  # preemption service not enabled
        return False
    return requested()
