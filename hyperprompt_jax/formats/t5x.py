# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The t5x checkpoint layouts: reading (shapes first, values on demand) and writing.

Layouts (what t5x writes; parameters always sit under `target`, with t5x's
T5.1.1 names such as `encoder/layers_0/attention/query/kernel`):

* Orbax (current t5x, `use_orbax=True`): `MODEL_DIR/checkpoint_<step>/state/` is
  an Orbax `PyTreeCheckpointHandler(use_ocdbt=True)` item holding
  `{'target': params, 'state': {'step': ..., 'param_states': ...}}`.
* Legacy: `MODEL_DIR/checkpoint_<step>/checkpoint` is msgpack
  `{'version': 3, 'optimizer': {'target': params, 'state': {'step', 'param_states'}}}`.
  Large leaves are replaced in the msgpack by a tensorstore spec and stored as
  zarr directories named by their dotted path
  (`checkpoint_<step>/target.encoder.layers_0.attention.query.kernel/`); small
  leaves are stored inline.

Readers: `orbax_reader(state_dir)` and `legacy_reader(msgpack_path)` (a
`tree.CheckpointReader`); `formats.restore.open_checkpoint` picks one. Writers:
`save_orbax_checkpoint(model_dir, params, step=0)` (what `python -m
hyperprompt_jax.convert` writes and t5x restores through
`INITIAL_CHECKPOINT_PATH`) and `save_legacy_checkpoint(model_dir, params, step=0)`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from etils import epath
from flax import serialization

from hyperprompt_jax import network
from hyperprompt_jax import run_dir
from hyperprompt_jax.formats import tree as tree_lib
from hyperprompt_jax.formats.tree import CheckpointError, CheckpointReader, Params, Shape
from hyperprompt_jax.formats.tree import flatten, unflatten

# t5x's checkpoint folder prefix and Orbax item name.
CHECKPOINT_PREFIX = run_dir.CHECKPOINT_PREFIX
STATE_ITEM = "state"
LEGACY_FILENAME = "checkpoint"
LEGACY_VERSION = 3
_MAX_CHUNK_ELEMENTS = 2**24
_STEP_DIR_RE = re.compile(rf"^{CHECKPOINT_PREFIX}_(\d+)$")


def step_dirs(model_dir: str) -> List[Tuple[int, str]]:
  out = []
  for name in os.listdir(model_dir):
    m = _STEP_DIR_RE.match(name)
    if m and os.path.isdir(os.path.join(model_dir, name)):
      out.append((int(m.group(1)), os.path.join(model_dir, name)))
  return sorted(out)


def is_orbax_item(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "_METADATA"))



def saved_config(location: str) -> Optional[network.T5Config]:
  """Our T5Config saved next to the checkpoint (model dir or step dir), if any."""
  step_dir = os.path.dirname(location)
  for folder in (step_dir, os.path.dirname(step_dir)):
    candidate = os.path.join(folder, tree_lib.CONFIG_FILENAME)
    if os.path.isfile(candidate):
      return tree_lib.read_config(candidate)
  return None



def orbax_reader(state_dir: str) -> CheckpointReader:
  entries = os.listdir(state_dir)
  if (any(e.startswith("ocdbt.process_") for e in entries)
      and "manifest.ocdbt" not in entries):
    # Checked here: orbax would start every array read and fail on each one.
    raise CheckpointError(f"the Orbax checkpoint {state_dir} has OCDBT data but no "
                          "manifest.ocdbt (incomplete copy or unfinished save?)")
  handler = ocp.PyTreeCheckpointHandler()
  try:
    metadata = handler.metadata(epath.Path(state_dir))
    tree = metadata.tree if hasattr(metadata, "tree") else metadata
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"cannot read the Orbax checkpoint metadata in {state_dir}: "
                          f"{type(e).__name__}: {e}") from None
  finally:
    handler.close()
  if not isinstance(tree, Mapping) or "target" not in tree:
    top = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
    raise CheckpointError(f"the Orbax checkpoint {state_dir} has no `target` tree "
                          f"(top-level entries: {top}); t5x keeps the parameters there")
  flat_md = flatten(tree["target"])
  shapes = {k: tuple(m.shape) for k, m in flat_md.items()}

  def read(keys):
    item = unflatten({k: jax.ShapeDtypeStruct(shapes[k], flat_md[k].dtype) for k in keys})
    restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                          item)
    try:
      with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
        restored = ckptr.restore(
            epath.Path(state_dir),
            args=ocp.args.PyTreeRestore(item={"target": item},
                                        restore_args={"target": restore_args},
                                        partial_restore=True))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"cannot read the Orbax checkpoint {state_dir} (truncated or "
                            f"corrupt?): {type(e).__name__}: {e}") from None
    flat = flatten(restored["target"])
    return {k: np.asarray(flat[k]) for k in keys}

  return CheckpointReader("orbax", state_dir, shapes, read, lambda: saved_config(state_dir))


def _is_ts_spec(x: Any) -> bool:
  return isinstance(x, Mapping) and "driver" in x and "kvstore" in x


def _local_ts_spec(spec: Mapping[str, Any], ckpt_dir: str, name: str) -> Dict[str, Any]:
  """A t5x tensorstore spec (file, gfile or gcs kvstore; relative path) read from ckpt_dir."""
  spec = copy.deepcopy(dict(spec))
  kvstore = dict(spec.get("kvstore") or {})
  rel = kvstore.get("path") or spec.pop("path", None)
  spec.pop("path", None)
  if not rel:
    raise CheckpointError(f"parameter {name}: its tensorstore spec has no path: {spec}")
  rel = os.path.basename(rel.rstrip("/")) if kvstore.get("driver") == "gcs" else rel
  full = rel if os.path.isabs(rel) else os.path.join(ckpt_dir, rel)
  spec["kvstore"] = {"driver": "file", "path": full}
  return spec


def _check_zarr_complete(folder: str, name: str) -> None:
  """Every chunk of a zarr v2 array without a fill value is on disk."""
  if not os.path.isdir(folder):
    raise CheckpointError(f"parameter {name}: its tensorstore folder {folder} is missing "
                          "(truncated checkpoint?)")
  zarray = os.path.join(folder, ".zarray")
  try:
    with open(zarray) as f:
      meta = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"parameter {name}: cannot read {zarray}: {e}") from None
  if meta.get("fill_value") is not None:
    return  # Chunks equal to the fill value may legitimately be absent.
  shape, chunks = meta.get("shape", []), meta.get("chunks", [])
  expected = math.prod(math.ceil(s / c) for s, c in zip(shape, chunks)) if shape else 1
  found = sum(1 for _, _, files in os.walk(folder) for f in files if not f.startswith("."))
  if found < expected:
    raise CheckpointError(f"parameter {name}: {expected - found} of {expected} zarr chunks "
                          f"are missing in {folder} (truncated checkpoint?)")


def _read_msgpack(path: str) -> Dict[str, Any]:
  try:
    with open(path, "rb") as f:
      contents = serialization.msgpack_restore(f.read())
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"{path} is not a readable t5x msgpack checkpoint (truncated or "
                          f"corrupt?): {type(e).__name__}: {e}") from None
  if not isinstance(contents, dict):
    raise CheckpointError(f"{path} does not hold a t5x state dict (got "
                          f"{type(contents).__name__})")
  return contents


def legacy_reader(path: str) -> CheckpointReader:
  ckpt_dir = os.path.dirname(path)
  contents = _read_msgpack(path)
  version = contents.get("version", 0)
  if "optimizer" in contents:
    if not isinstance(version, (int, np.integer)) or version < 2:
      raise CheckpointError(f"{path}: t5x checkpoint version {version!r} is not supported "
                            "(t5x reads versions >= 2)")
    state = contents["optimizer"]
  else:
    state = contents
  if not isinstance(state, Mapping) or "target" not in state:
    top = sorted(state) if isinstance(state, Mapping) else type(state).__name__
    raise CheckpointError(f"{path} has no `target` parameters (entries: {top})")
  flat = flax.traverse_util.flatten_dict(
      state["target"], sep="/", is_leaf=lambda _, x: _is_ts_spec(x))
  shapes = {}
  for k, v in flat.items():
    if _is_ts_spec(v):
      shape = (v.get("metadata") or {}).get("shape")
      if shape is None:
        raise CheckpointError(f"parameter {k}: its tensorstore spec has no shape: {v}")
      shapes[k] = tuple(int(s) for s in shape)
    elif isinstance(v, (np.ndarray, np.generic, int, float)):
      shapes[k] = tuple(np.shape(v))
    else:
      raise CheckpointError(f"parameter {k}: unexpected {type(v).__name__} in {path}")

  def read(keys):
    out = {}
    for k in keys:
      v = flat[k]
      if not _is_ts_spec(v):
        out[k] = np.asarray(v)
        continue
      spec = _local_ts_spec(v, ckpt_dir, k)
      _check_zarr_complete(spec["kvstore"]["path"], k)
      try:
        out[k] = np.asarray(ts.open(spec, open=True, read=True).result().read().result())
      except Exception as e:  # pylint: disable=broad-except
        raise CheckpointError(f"parameter {k}: cannot read {spec['kvstore']['path']} "
                              f"(truncated or corrupt?): {e}") from None
      if out[k].shape != shapes[k]:
        raise CheckpointError(f"parameter {k}: stored array has shape {out[k].shape} but "
                              f"the msgpack spec says {shapes[k]}")
    return out

  return CheckpointReader("legacy", path, shapes, read, lambda: saved_config(path))



def save_orbax_checkpoint(model_dir: str, params: Params, *, step: int = 0) -> str:
  """Writes `model_dir/checkpoint_<step>/state` the way t5x's Orbax manager does.

  The item holds `{'target': params, 'state': {'step': step}}` (no optimizer
  slots: t5x fills those from scratch with `fallback_to_scratch=True`).
  Returns the checkpoint folder (`INITIAL_CHECKPOINT_PATH`).
  """
  model_dir = os.path.abspath(model_dir)
  tree = {"target": jax.tree_util.tree_map(np.asarray, flax.core.unfreeze(params)),
          "state": {"step": np.asarray(step, np.int32)}}
  options = ocp.CheckpointManagerOptions(step_prefix=CHECKPOINT_PREFIX, create=True)
  with ocp.CheckpointManager(
      model_dir, item_handlers={STATE_ITEM: ocp.PyTreeCheckpointHandler(use_ocdbt=True)},
      options=options) as manager:
    manager.save(step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.PyTreeSave(tree)}),
                 force=True)
    manager.wait_until_finished()
  return os.path.join(model_dir, f"{CHECKPOINT_PREFIX}_{step}")


def _chunk_shape(shape: Shape, max_elements: int) -> List[int]:
  """Chunks that split the leading axis until a chunk holds <= max_elements."""
  chunks = list(shape)
  rest = math.prod(shape[1:]) if len(shape) > 1 else 1
  chunks[0] = max(1, min(shape[0], max_elements // max(rest, 1)))
  return chunks


def save_legacy_checkpoint(model_dir: str, params: Params, *, step: int = 0,
                           param_states: Optional[Params] = None,
                           max_chunk_elements: int = _MAX_CHUNK_ELEMENTS) -> str:
  """Writes the legacy t5x layout: msgpack `checkpoint` plus zarr folders.

  Leaves with 2 or more dimensions go to tensorstore zarr folders named by their
  dotted path (`target.encoder.layers_0.attention.query.kernel`, gzip, as t5x
  writes partitioned parameters); smaller leaves are inline in the msgpack.
  Returns the checkpoint folder.
  """
  ckpt_dir = os.path.join(os.path.abspath(model_dir), f"{CHECKPOINT_PREFIX}_{step}")
  os.makedirs(ckpt_dir, exist_ok=True)
  written = {}
  for key, value in flatten(params).items():
    arr = np.asarray(value)
    if arr.ndim < 2:
      written[key] = arr
      continue
    name = "target." + key.replace("/", ".")
    spec = {"driver": "zarr", "dtype": arr.dtype.name,
            "kvstore": {"driver": "file", "path": name},
            "metadata": {"compressor": {"id": "gzip"}, "shape": list(arr.shape),
                         "chunks": _chunk_shape(arr.shape, max_chunk_elements)}}
    store = ts.open(_local_ts_spec(spec, ckpt_dir, key), create=True, delete_existing=True
                    ).result()
    store.write(arr).result()
    written[key] = spec
  state = {"step": np.asarray(step, np.int32)}
  if param_states is not None:
    state["param_states"] = jax.tree_util.tree_map(np.asarray, flax.core.unfreeze(param_states))
  contents = {"version": LEGACY_VERSION,
              "optimizer": {"target": unflatten(written), "state": state}}
  with open(os.path.join(ckpt_dir, LEGACY_FILENAME), "wb") as f:
    f.write(serialization.msgpack_serialize(contents))
  return ckpt_dir
