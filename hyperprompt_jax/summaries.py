# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""What a run shows: TensorBoard summaries, terminal progress, a metrics history and its plot.

* TensorBoard: clu `metric_writers` under `MODEL_DIR/train/` and
  `MODEL_DIR/train_eval/` (seqio writes `MODEL_DIR/inference_eval/`).
* Terminal: one line per log period with step, loss, steps/s, global tokens/s (the
  non-padding tokens of the global batch, all hosts together), ETA.
* `MODEL_DIR/metrics_history.json`: train loss and per-task eval scores by
  step (survives restarts), plotted to `MODEL_DIR/metrics.png`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, TextIO

import jax
import numpy as np
import tensorflow as tf
from clu import metric_writers
from jax.experimental import multihost_utils

from hyperprompt_jax import run_dir



def create_writer(model_dir: str, name: str) -> metric_writers.MetricWriter:
  """TensorBoard writer of `MODEL_DIR/<name>` (logging only on hosts other than 0)."""
  return metric_writers.create_default_writer(
      os.path.join(model_dir, name), just_logging=jax.process_index() > 0,
      asynchronous=False)


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def sum_over_processes(count: int) -> int:
  """`count` summed over all processes, exactly (every process must call this together)."""
  if jax.process_count() == 1:
    return int(count)
  # Two int32 halves: exact without jax_enable_x64 (a log period may exceed 2**31 tokens).
  halves = np.asarray([int(count) >> 31, int(count) & (2**31 - 1)], np.int32)
  gathered = np.asarray(multihost_utils.process_allgather(halves)).reshape(-1, 2)
  return sum((int(high) << 31) | int(low) for high, low in gathered)


class Progress:
  """Terminal progress: step, loss, steps/s, global tokens/s and ETA since the last report.

  `add_tokens` takes this host's tokens; `report` (called by every process at the same
  steps) sums them over the processes, so tokens/s is the global batch's.
  """

  def __init__(self, total_steps: int, start_step: int, stream: Optional[TextIO] = None):
    self.total_steps = total_steps
    self._stream = stream or sys.stdout
    self._last_time = time.time()
    self._last_step = start_step
    self._tokens = 0
    self._enabled = jax.process_index() == 0
    self._eta_start: Optional[tuple] = None  # (time, step) of the first report

  def add_tokens(self, count: int) -> None:
    self._tokens += count

  def report(self, step: int, metrics: Mapping[str, float]) -> Dict[str, float]:
    """Prints one line; returns the throughput numbers (for the summaries)."""
    now = time.time()
    elapsed = max(now - self._last_time, 1e-9)
    steps = step - self._last_step
    tokens = sum_over_processes(self._tokens)
    rates = {"steps_per_sec": steps / elapsed, "tokens_per_sec": tokens / elapsed}
    # ETA from the pace since the first report (compilation excluded, evaluations and
    # checkpoints included); none at the first report (it includes compilation).
    if self._eta_start is None or step <= self._eta_start[1]:
      self._eta_start = (now, step)
      eta = "--:--" if step < self.total_steps else _format_duration(0)  # compiling
    else:
      pace = (step - self._eta_start[1]) / max(now - self._eta_start[0], 1e-9)
      eta = _format_duration((self.total_steps - step) / pace if pace > 0 else 0.0)
    self._last_time, self._last_step, self._tokens = now, step, 0
    if self._enabled:
      extra = "".join(f"  {k} {metrics[k]:.3g}" for k in ("accuracy", "learning_rate")
                      if k in metrics)
      print(f"step {step:>6d}/{self.total_steps}  loss {metrics.get('loss_per_token', 0.0):.4f}"
            f"{extra}  {rates['steps_per_sec']:.2f} steps/s  "
            f"{rates['tokens_per_sec']:.0f} global tokens/s  ETA {eta}",
            file=self._stream, flush=True)
    return rates


class MetricsHistory:
  """Train loss and eval scores by step, in `MODEL_DIR/metrics_history.json`."""

  def __init__(self, model_dir: str):
    self.model_dir = model_dir
    self.path = os.path.join(model_dir, run_dir.METRICS_HISTORY)
    self.data: Dict[str, Any] = {"train": [], "eval": {}}
    if tf.io.gfile.exists(self.path):
      with tf.io.gfile.GFile(self.path) as f:
        self.data = json.load(f)

  def truncate(self, step: int) -> None:
    """Drops entries after `step` (a restart from an earlier checkpoint redoes them)."""
    self.data["train"] = [e for e in self.data["train"] if e[0] <= step]
    for task, entries in self.data["eval"].items():
      self.data["eval"][task] = [e for e in entries if e[0] <= step]

  def add_train(self, step: int, loss: float) -> None:
    self.data["train"].append([int(step), float(loss)])

  def add_eval(self, step: int, scores: Mapping[str, float]) -> None:
    for task, score in scores.items():
      self.data["eval"].setdefault(task, []).append([int(step), float(score)])

  def save(self) -> None:
    if jax.process_index() != 0:
      return
    run_dir.write_json(self.path, self.data, indent=None, sort_keys=False)

  def plot(self, path: Optional[str] = None, title: str = "") -> Optional[str]:
    """Writes the loss and per-task score curves as a PNG; returns its path."""
    if jax.process_index() != 0:
      return None
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
    path = path or os.path.join(self.model_dir, run_dir.METRICS_PLOT)
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(12, 4.5))
    train: List[List[float]] = self.data["train"]
    if train:
      ax_loss.plot([e[0] for e in train], [e[1] for e in train], color="C0")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("train loss per token")
    ax_loss.set_title("training loss")
    ax_loss.grid(alpha=0.3)
    for i, (task, entries) in enumerate(sorted(self.data["eval"].items())):
      style = dict(color="black", linewidth=2.5) if task == "average" else dict(color=f"C{i}")
      ax_eval.plot([e[0] for e in entries], [e[1] for e in entries], marker="o",
                   markersize=3, label=re.sub(r"_task_index_\d+$", "", task), **style)
    ax_eval.set_xlabel("step")
    ax_eval.set_ylabel("score (mean of the task's metrics)")
    ax_eval.set_title("per-task evaluation")
    ax_eval.grid(alpha=0.3)
    if self.data["eval"]:
      ax_eval.legend(fontsize=7, loc="lower right")
    if title:
      fig.suptitle(title)
    fig.tight_layout()
    with tf.io.gfile.GFile(path, "wb") as f:
      fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return path
