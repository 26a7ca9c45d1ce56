# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The command line shared by `train`, `eval` and `infer`, with t5x's flags.

  --gin_file=F (repeatable)       gin files, looked up in --gin_search_paths and gin/
  --gin_bindings='X = V'          (repeatable) extra bindings
  --gin.X=V                       shorthand for --gin_bindings='X = V' (strings need \\"..\\")
  --gin_search_paths=a,b          directories to look up gin files (and their includes)
  --tfds_data_dir=D               TFDS data directory override (seqio)
  --seqio_additional_cache_dirs   more directories with cached seqio tasks
  --coordinator_address, --process_count, --process_index   multi-host (jax.distributed)
  --multiprocess_gpu              t5x's flag: initialise jax.distributed from those three
                                  flags, or (none given) from Slurm / Open MPI variables

Configuration mistakes (bad gin, unknown names, inconsistent settings: the
checks raise `errors.ConfigError`, and gin's own parse and binding errors) end
the command with one `error:` line on stderr and exit status 2. Any other
exception is a bug: it propagates with its traceback (and a non-zero status).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tokenize
from typing import Any, Callable, Dict, List, Optional, Sequence

import gin

from hyperprompt_jax import errors
from hyperprompt_jax import gin_checks
from hyperprompt_jax import gin_utils
from hyperprompt_jax import partitioning
from hyperprompt_jax import reliability

EXIT_CONFIG_ERROR = errors.EXIT_STATUS
_REGISTERED: Dict[int, Callable[..., Any]] = {}

# The one class of deliberate refusals (kept under its old name here).
ConfigurationError = errors.ConfigError


class CheckFailed(RuntimeError):
  """A run finished but missed a required result (exit status 1, one line)."""


class _QuietSeqioFilter(logging.Filter):
  """Drops seqio's advice to cache small in-memory tasks, printed once per task."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "uncached FunctionDataset" not in str(record.msg)


def one_line(message: str) -> str:
  """A gin / validation message folded onto one line (config dumps dropped)."""
  message = str(message).split(" in config string:")[0]
  parts = [p.strip() for p in message.splitlines() if p.strip() and p.strip() != "^"
           and not p.strip().startswith("In call to configurable")]
  return " | ".join(parts)


@contextlib.contextmanager
def configuration_errors():
  """Folds a `ConfigError` (or an error gin raised) into one line; anything else propagates.

  A bug (a `TypeError` in the network, a `KeyError` in a lookup) keeps its type and
  traceback: only deliberate refusals become the command's `error:` line.
  """
  try:
    yield
  except ConfigurationError as e:
    raise ConfigurationError(one_line(str(e))) from e
  except (ValueError, RuntimeError) as e:
    if not gin_utils.raised_by_gin(e):
      raise
    raise ConfigurationError(one_line(str(e))) from e


def _culprit(bindings: Sequence[str]) -> Optional[str]:
  """The first binding Python's tokenizer cannot read (gin reports only a position)."""
  for binding in bindings:
    try:
      list(tokenize.generate_tokens(io.StringIO(binding).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError) as e:
      return f"cannot parse binding {binding!r} ({e.args[0] if e.args else e})"
  return None


def parse_args(argv: Sequence[str], description: str = "") -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
  parser.add_argument("--gin_file", action="append", default=[])
  parser.add_argument("--gin_bindings", action="append", default=[])
  parser.add_argument("--gin_search_paths", action="append", default=[])
  parser.add_argument("--tfds_data_dir", default=None)
  parser.add_argument("--seqio_additional_cache_dirs", action="append", default=[])
  parser.add_argument("--coordinator_address", default=None)
  parser.add_argument("--process_count", type=int, default=None)
  parser.add_argument("--process_index", type=int, default=None)
  parser.add_argument("--multiprocess_gpu", action="store_true")
  args, unknown = parser.parse_known_args(gin_utils.rewrite_gin_args(list(argv)))
  if unknown:
    raise ConfigurationError(f"unknown command-line argument(s) {unknown}; use "
                             "--gin_file, --gin_bindings or --gin.NAME=VALUE.")
  args.gin_search_paths = [p for item in args.gin_search_paths for p in item.split(",") if p]
  args.seqio_additional_cache_dirs = [
      p for item in args.seqio_additional_cache_dirs for p in item.split(",") if p]
  return args


def configurable_entry_point(fn: Callable[..., Any]) -> Callable[..., Any]:
  """`fn` registered with gin under `__main__.<name>` (t5x's `train_script.train`).

  Run as `python -m hyperprompt_jax.train`, the function already lives in
  `__main__`; called in-process (tests, notebooks) it is placed there so that
  gin files importing `__main__ as train_script` resolve it.
  """
  main_module = sys.modules["__main__"]
  if getattr(main_module, fn.__name__, None) is not fn:
    setattr(main_module, fn.__name__, fn)
  if id(fn) not in _REGISTERED:
    _REGISTERED[id(fn)] = gin.configurable(fn.__name__, module="__main__")(fn)
  return _REGISTERED[id(fn)]


def _hide_gpus_from_tensorflow() -> None:
  """TensorFlow (tf.data only) must not take GPU memory that jax uses."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError):  # already initialised (an earlier run in this process)
    pass


def quiet_tensorflow() -> None:
  """Loads TensorFlow and hides the GPUs from it, without its start-up log lines.

  TensorFlow's C++ code writes its CUDA probe and oneDNN notices to stderr while it
  loads, before any log setting applies, and `failed call to cuInit` when it looks
  for GPUs on a machine without any; a newcomer reads them as errors. The commands
  call this first when run as `python -m ...` (never at library import): stderr
  is closed for these two steps only (a failing import still raises, and every
  later TensorFlow or XLA message is shown as usual).
  """
  if "tensorflow" in sys.modules:
    return
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    _hide_gpus_from_tensorflow()
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def setup(args: argparse.Namespace) -> None:
  """Process-level set-up before gin: TF without GPUs, multi-host jax, seqio paths."""
  _hide_gpus_from_tensorflow()
  with configuration_errors():
    partitioning.initialize_distributed(args.coordinator_address, args.process_count,
                                        args.process_index,
                                        multiprocess_gpu=args.multiprocess_gpu)
  import seqio  # pylint: disable=g-import-not-at-top
  if args.tfds_data_dir:
    seqio.set_tfds_data_dir_override(args.tfds_data_dir)
  if args.seqio_additional_cache_dirs:
    seqio.add_global_cache_dirs(args.seqio_additional_cache_dirs)


def run(entry_point: Callable[..., Any], argv: Sequence[str], description: str = "") -> Any:
  """Parses flags and gin, then calls the gin-configured `entry_point()`.

  Raises ConfigurationError for configuration mistakes (see `main`).
  """
  args = parse_args(argv, description)
  setup(args)
  with gin.unlock_config():  # an earlier run in this process may have locked it
    configured = configurable_entry_point(entry_point)
    gin.clear_config()
    try:
      gin_utils.parse_gin(args.gin_file, args.gin_bindings, args.gin_search_paths)
      gin_checks.check_cli_macros(args.gin_bindings)  # a typo'd macro gin accepts
    except ConfigurationError as e:
      message = str(e)
      if not message.startswith("Bad gin configuration"):
        message = f"Bad gin configuration: {_culprit(args.gin_bindings) or message}"
      raise ConfigurationError(one_line(message)) from e
  logging.info("gin configuration:\n%s", gin.config_str())
  with configuration_errors():
    return configured()


def main(entry_point: Callable[..., Any], argv: Optional[List[str]] = None,
         description: str = "") -> int:
  """Command-line entry: exit status 0, or 2 with one `error:` line for bad configuration."""
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
  logging.getLogger("absl").setLevel(logging.WARNING)
  logging.getLogger("absl").addFilter(_QuietSeqioFilter())
  argv = sys.argv[1:] if argv is None else argv
  try:
    run(entry_point, argv, description)
  except ConfigurationError as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_CONFIG_ERROR
  except CheckFailed as e:
    print(f"FAILED: {e}", file=sys.stderr)
    return 1
  except reliability.RunStopped as e:  # non-finite values (exit 1), preemption (143)
    print(f"{e.prefix}{one_line(str(e))}", file=sys.stderr)
    return e.exit_code
  import jax  # pylint: disable=g-import-not-at-top
  jax.effects_barrier()
  return 0
