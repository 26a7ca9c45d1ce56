# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Gin typos the parser lets through: a command-line macro that nothing uses.

gin refuses unknown configurables and parameters (`train_script.train.totl_steps`)
but accepts any macro binding, so `--gin.TRAIN_STESP=5` would silently train
with the default TRAIN_STEPS. `check_cli_macros(bindings)`, called after the gin
files and bindings are parsed, refuses a macro bound on the command line that no
gin binding references, naming the closest used macros.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Dict, Iterable, Tuple

import gin

from hyperprompt_jax import errors

_MACRO_BINDING_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")


def _macro_references(value: Any, found: set) -> None:
  if isinstance(value, gin.config.ConfigurableReference):
    if value.configurable.selector == "gin.macro":
      found.add(value.scoped_selector.rsplit("/", 1)[0])
  elif isinstance(value, dict):
    for v in value.values():
      _macro_references(v, found)
  elif isinstance(value, (list, tuple, set)):
    for v in value:
      _macro_references(v, found)


def gin_macros() -> Tuple[Dict[str, Any], set]:
  """`({macro: value}, {referenced macro names})` of the parsed gin configuration."""
  config = gin.config._CONFIG  # pylint: disable=protected-access
  macros = {scope: args.get("value") for (scope, selector), args in config.items()
            if selector == "gin.macro"}
  used: set = set()
  for args in config.values():
    for value in args.values():
      _macro_references(value, used)
  return macros, used


def check_cli_macros(bindings: Iterable[str]) -> None:
  """Raises ValueError for a command-line macro binding that nothing uses (a typo).

  Call after the gin files and bindings are parsed.
  """
  given = [m.group(1) for m in (_MACRO_BINDING_RE.match(b) for b in bindings) if m]
  if not given:
    return
  macros, used = gin_macros()
  unused = [name for name in given if name not in used]
  if not unused:
    return
  known = sorted(used)
  hints = []
  for name in unused:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hints.append(f"{name}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
  raise errors.ConfigError(
      f"unknown gin macro(s) {'; '.join(hints)}: bound on the command line but "
      "used by no gin binding of the given files.")
