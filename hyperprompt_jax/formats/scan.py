# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The scanned and the unrolled layout of the layer parameters (`T5Config.scan_layers`).

Unrolled (t5x's T5.1.1 layout, `scan_layers=False`): one subtree per layer,

    encoder/layers_0/attention/query/kernel   [E, H*D]
    encoder/layers_1/attention/query/kernel   [E, H*D]

Scanned (t5x scalable_t5's layout, `scan_layers=True`): one subtree per stack,
every leaf stacked on a `layers` axis at `param_scan_axis` (t5x's default 1):

    encoder/layers/attention/query/kernel     [E, layers, H*D]
    encoder/layers/pre_attention_layer_norm/scale  [E, layers]

Everything outside the layers (embeddings, final norms, the shared
relative-position biases, the conditioning modules) is the same in both.
`stack_layers` and `unstack_layers` convert a params tree (nested or flat,
numpy, jax or `jax.ShapeDtypeStruct` leaves) between the two; `stacked_reader`
and `unstacked_reader` give a checkpoint reader the other layout's view, so any
checkpoint restores into either model (`restore.restore_params`).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hyperprompt_jax.formats.tree import CheckpointError, CheckpointReader, flatten, unflatten

STACKS = ("encoder", "decoder")
_UNROLLED = re.compile(r"(encoder|decoder)/layers_(\d+)/(.+)")
_SCANNED = re.compile(r"(encoder|decoder)/layers/(.+)")


def is_scanned(keys: Sequence[str]) -> bool:
  """Whether flat parameter paths `keys` are in the scanned layout."""
  return any(_SCANNED.fullmatch(k) for k in keys)


def is_unrolled(keys: Sequence[str]) -> bool:
  """Whether flat parameter paths `keys` hold per-layer `layers_<i>` subtrees."""
  return any(_UNROLLED.fullmatch(k) for k in keys)


def _groups(keys: Sequence[str]) -> Dict[str, Dict[int, str]]:
  """`{scanned key: {layer: unrolled key}}` of the unrolled `keys`; every layer present."""
  groups: Dict[str, Dict[int, str]] = {}
  for k in keys:
    m = _UNROLLED.fullmatch(k)
    if m:
      groups.setdefault(f"{m.group(1)}/layers/{m.group(3)}", {})[int(m.group(2))] = k
  for scanned, by_layer in groups.items():
    if sorted(by_layer) != list(range(len(by_layer))):
      raise CheckpointError(f"cannot stack {scanned}: layers {sorted(by_layer)} are not "
                            f"0..{len(by_layer) - 1}")
  return groups


def _stack_leaves(leaves: Sequence[Any], axis: int) -> Any:
  if isinstance(leaves[0], jax.ShapeDtypeStruct):
    shape = list(leaves[0].shape)
    shape.insert(axis, len(leaves))
    return jax.ShapeDtypeStruct(tuple(shape), leaves[0].dtype)
  if isinstance(leaves[0], np.ndarray):
    return np.stack(leaves, axis=axis)
  return jnp.stack(leaves, axis=axis)


def _take_leaf(leaf: Any, index: int, axis: int) -> Any:
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(leaf.shape[:axis] + leaf.shape[axis + 1:], leaf.dtype)
  if isinstance(leaf, np.ndarray):
    return np.take(leaf, index, axis=axis)
  return jnp.take(leaf, index, axis=axis)


def stack_layers(params: Mapping[str, Any], *, axis: int = 1) -> Dict[str, Any]:
  """Unrolled -> scanned layout (see the module docstring); other leaves unchanged.

  Args:
    params: a nested params tree or a flat `{'a/b/c': leaf}` dict.
    axis: `T5Config.param_scan_axis`, where the `layers` axis is inserted.
  Returns:
    The same kind of tree (nested or flat) in the scanned layout.
  """
  nested = any(isinstance(v, Mapping) for v in params.values())
  flat = flatten(params) if nested else dict(params)
  groups = _groups(list(flat))
  out = {k: v for k, v in flat.items() if not _UNROLLED.fullmatch(k)}
  for scanned, by_layer in groups.items():
    out[scanned] = _stack_leaves([flat[by_layer[i]] for i in range(len(by_layer))], axis)
  return unflatten(out) if nested else out


def unstack_layers(params: Mapping[str, Any], *, axis: int = 1) -> Dict[str, Any]:
  """Scanned -> unrolled layout, the inverse of `stack_layers` (same arguments)."""
  nested = any(isinstance(v, Mapping) for v in params.values())
  flat = flatten(params) if nested else dict(params)
  out = {}
  for k, v in flat.items():
    m = _SCANNED.fullmatch(k)
    if not m:
      out[k] = v
      continue
    for i in range(v.shape[axis]):
      out[f"{m.group(1)}/layers_{i}/{m.group(2)}"] = _take_leaf(v, i, axis)
  return unflatten(out) if nested else out


def _shapes_as(shapes: Mapping[str, Sequence[int]], convert) -> Dict[str, tuple]:
  structs = {k: jax.ShapeDtypeStruct(tuple(s), jnp.float32) for k, s in shapes.items()}
  return {k: tuple(v.shape) for k, v in convert(structs).items()}


def stacked_reader(reader: CheckpointReader, *, axis: int = 1) -> CheckpointReader:
  """`reader` of an unrolled checkpoint seen in the scanned layout (reads on demand)."""
  groups = _groups(list(reader.shapes()))

  def read(keys: Sequence[str]) -> Dict[str, np.ndarray]:
    wanted = [k for k in keys if k not in groups]
    wanted += [src for k in keys if k in groups for src in groups[k].values()]
    values = reader.read(wanted)
    return stack_layers({k: np.asarray(v) for k, v in values.items()}, axis=axis)

  shapes = _shapes_as(reader.shapes(), lambda s: stack_layers(s, axis=axis))
  return CheckpointReader(reader.kind, reader.location, shapes, read, lambda: reader.config)


def unstacked_reader(reader: CheckpointReader, *, axis: int = 1) -> CheckpointReader:
  """`reader` of a scanned checkpoint seen in the unrolled layout (reads on demand)."""

  def read(keys: Sequence[str]) -> Dict[str, np.ndarray]:
    sources = sorted({(f"{m.group(1)}/layers/{m.group(3)}" if m else k)
                      for k in keys for m in [_UNROLLED.fullmatch(k)]})
    values = unstack_layers({k: np.asarray(v) for k, v in reader.read(sources).items()},
                            axis=axis)
    return {k: values[k] for k in keys}

  shapes = _shapes_as(reader.shapes(), lambda s: unstack_layers(s, axis=axis))
  return CheckpointReader(reader.kind, reader.location, shapes, read, lambda: reader.config)


def unrolled(params: Mapping[str, Any], config: Any):
  """`(params, config)` in the unrolled layout, for the writers of other formats
  (Hugging Face, t5x's T5.1.1); unchanged when `config.scan_layers` is False."""
  if not config.scan_layers:
    return params, config
  return unstack_layers(params, axis=config.param_scan_axis), config.replace(scan_layers=False)
