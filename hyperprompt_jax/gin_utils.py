# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Gin command-line handling shared by our commands, with t5x's conventions.

`--gin.KEY=VALUE` is rewritten to `--gin_bindings='KEY = VALUE'` (as
`t5x.gin_utils.rewrite_gin_args` does); gin files are looked up in
`--gin_search_paths` and in the package's own `gin/` directory.
"""

from __future__ import annotations

import logging
import os
import sysconfig
import traceback
from typing import Iterable, List, Optional, Sequence

import gin

from hyperprompt_jax import errors

# The `gin/` directory of this project (next to the package in a source checkout).
GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")
# Where the gin library itself lives: an exception whose traceback ends there is gin's
# verdict on what the configuration says, not a bug in code the configuration reached.
_GIN_LIBRARY_DIR = os.path.dirname(os.path.abspath(gin.__file__))
_STDLIB_DIR = os.path.abspath(sysconfig.get_paths()["stdlib"])


def raised_by_gin(e: BaseException) -> bool:
  """Whether gin itself raised `e` (a parse error, a missing binding, an unknown name).

  Frames of the standard library that gin called (the import machinery, the tokenizer)
  are skipped, so a gin file's `import` of a module that does not exist, or a binding
  the tokenizer cannot read, counts as gin's; an exception raised while an imported
  module's own code runs (an import-time bug) ends in that module and does not.
  """
  frames = [os.path.abspath(f.filename) for f in traceback.extract_tb(e.__traceback__)
            if not f.filename.startswith("<frozen ")]
  frames = [f for f in frames if not f.startswith(_STDLIB_DIR + os.sep)]
  return bool(frames) and frames[-1].startswith(_GIN_LIBRARY_DIR + os.sep)


class _QuietSearchFilter(logging.Filter):
  """Drops gin's "Path not found" lines, logged for every search path it tries."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Path not found")


logging.getLogger().addFilter(_QuietSearchFilter())


def _guard_system_path_reader() -> None:
  """Makes gin's Python-package file lookup answer False instead of raising.

  gin also looks an `include 'a/b.gin'` up as file `b.gin` of Python package `a`;
  when `a` is a namespace package (a folder without `__init__.py` on sys.path:
  a `runs/` folder in the working directory of `python -m ...`, or
  `tests/conditioning/` while testing) gin-config's `resource_reader` raises
  TypeError (the package has no file location) instead of moving on to the search
  paths. Idempotent.
  """
  readers = getattr(gin.config, "_FILE_READERS", None)
  if not isinstance(readers, list):
    return
  for i, (reader, exists) in enumerate(readers):
    if getattr(exists, "__module__", "") == "gin.resource_reader":

      def guarded(path, _exists=exists):
        try:
          return _exists(path)
        except TypeError:
          return False

      guarded.__module__ = __name__
      guarded.__wrapped__ = exists
      readers[i] = (reader, guarded)


# Installed on import: t5x's launchers parse our gin files with gin directly, and the first
# of our files they read imports this package (hyperprompt_jax/__init__.py imports this
# module), so every `include` after that is guarded too.
_guard_system_path_reader()


def rewrite_gin_args(args: Sequence[str]) -> List[str]:
  """Rewrites `--gin.KEY=VALUE` into `--gin_bindings=KEY = VALUE`."""
  out = []
  for arg in args:
    if arg.startswith("--gin."):
      if "=" not in arg:
        raise errors.ConfigError(f"Gin override {arg!r} must have the form --gin.KEY=VALUE.")
      key, value = arg[len("--gin."):].split("=", 1)
      out.append(f"--gin_bindings={key} = {value}")
    else:
      out.append(arg)
  return out


def parse_gin(gin_files: Iterable[str], gin_bindings: Iterable[str] = (),
              gin_search_paths: Iterable[str] = (), defaults: Iterable[str] = (),
              finalize: bool = True) -> None:
  """Parses gin files and bindings; `defaults` are bound between the files and the bindings.

  Raises:
    errors.ConfigError: naming the file or binding gin refused. Any other exception
      (an import-time bug in a module a gin file imports) keeps its traceback.
  """
  search_paths = [p for p in list(gin_search_paths) + [os.getcwd(), GIN_DIR]
                  if p and os.path.isdir(p)]
  for path in search_paths:
    gin.add_config_file_search_path(path)
  _guard_system_path_reader()
  try:
    files = [resolve_gin_file(f, search_paths) for f in gin_files]
    gin.parse_config_files_and_bindings(files, list(defaults) + list(gin_bindings),
                                        finalize_config=finalize)
  except errors.ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    if not raised_by_gin(e):
      raise
    raise errors.ConfigError(f"Bad gin configuration: {e}") from e


def resolve_gin_file(name: str, search_paths: Sequence[str]) -> str:
  """Absolute path of gin file `name`: as given, else under the first search path holding it."""
  if os.path.isabs(name) or os.path.exists(name):
    return os.path.abspath(name)
  for path in search_paths:
    candidate = os.path.join(path, name)
    if os.path.exists(candidate):
      return candidate
  raise errors.ConfigError(f"gin file {name!r} not found (searched {', '.join(search_paths)})")


def gin_files_for(names: Sequence[str]) -> List[str]:
  """Resolves gin file names relative to GIN_DIR when they do not exist as given."""
  return [n if os.path.exists(n) else os.path.join(GIN_DIR, n) for n in names]
