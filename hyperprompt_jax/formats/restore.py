# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Restoring any checkpoint format into the network, and the switch between formats.

`resolve_checkpoint(path)` tells the format of a path (t5x Orbax, t5x legacy,
Hugging Face folder) and `open_checkpoint(path)` returns its reader
(`tree.CheckpointReader`). Restoring (what the launcher calls for
`INITIAL_CHECKPOINT_PATH`):

  restore_params(path, target, *, fallback_to_scratch=None,
                 rng=None, init_fn=None, dtype=None) -> params

  path:   `MODEL_DIR/checkpoint_<step>` in either layout, its `state/` folder or
          `checkpoint` file, a `MODEL_DIR` (its latest step is used), or a
          Hugging Face T5 directory (`config.json` + weights; see `hf.py`).
  target: a `network.T5Config` (the parameters the network defines), or a params
          tree of arrays or `jax.ShapeDtypeStruct`s (not the `{'params': ...}`
          variables dict; that is accepted too and unwrapped).
  fallback_to_scratch: regexes (`re.fullmatch` on the `/`-joined path, with or
          without a leading `target/`) of parameters that may be absent from the
          checkpoint; those are initialised fresh, like t5x's
          `RestoreCheckpointConfig(assignment_map=((regex, None),), fallback_to_scratch=True)`.
          The default (None) covers every registered task-conditioning method
          (`conditioning.param_patterns()`: `hyperprompt/.*`, ...).
  rng:    PRNG key for the fresh parameters when `target` is a T5Config
          (default `PRNGKey(0)`); only the missing parameters are computed.
  init_fn: `rng -> params` for an abstract params `target` with missing params.
  dtype:  dtype of the returned leaves (default: the target's dtypes, float32).
  Returns the params tree of numpy arrays (same structure as the target).
  Raises `CheckpointError` (an `errors.ConfigError`) naming every parameter that is in the
  checkpoint but not the model, in the model but not the checkpoint (and not
  matched by `fallback_to_scratch`), or whose shapes differ (both shapes given),
  and for a missing, truncated or corrupt checkpoint.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import flax
import jax
import jax.numpy as jnp
import numpy as np

from hyperprompt_jax import conditioning
from hyperprompt_jax import network
from hyperprompt_jax import run_dir
from hyperprompt_jax.formats import hf
from hyperprompt_jax.formats import scan
from hyperprompt_jax.formats import t5x
from hyperprompt_jax.formats.tree import (CheckpointError, CheckpointReader, Params, Shape,
                                          abstract_params, architecture_mismatches, flatten,
                                          init_params_subset, unflatten)


def _matches(patterns: Sequence[str], key: str) -> bool:
  return any(re.fullmatch(p, key) or re.fullmatch(p, "target/" + key) for p in patterns)



def resolve_checkpoint(path: str) -> Tuple[str, str]:
  """`(kind, location)`: kind 'orbax' (location: the `state` item folder),
  'legacy' (the msgpack file) or 'hf' (the Hugging Face folder); location is absolute
  (a relative `path` is taken from the working directory: Orbax reads absolute paths only)."""
  path = run_dir.absolute_path(os.fspath(path))
  if not os.path.exists(path):
    raise CheckpointError(f"checkpoint path does not exist: {path}")
  if os.path.isfile(path):
    if os.path.basename(path) == t5x.LEGACY_FILENAME:
      return "legacy", path
    raise CheckpointError(f"{path} is a file but not a t5x msgpack `{t5x.LEGACY_FILENAME}` file")
  if t5x.is_orbax_item(path):
    return "orbax", path
  if t5x.is_orbax_item(os.path.join(path, t5x.STATE_ITEM)):
    return "orbax", os.path.join(path, t5x.STATE_ITEM)
  if os.path.isfile(os.path.join(path, t5x.LEGACY_FILENAME)):
    return "legacy", os.path.join(path, t5x.LEGACY_FILENAME)
  if hf.is_hf_dir(path):
    return "hf", path
  steps = t5x.step_dirs(path)
  if steps:
    return resolve_checkpoint(steps[-1][1])
  raise CheckpointError(
      f"{path} is not a checkpoint: expected a t5x `{t5x.CHECKPOINT_PREFIX}_<step>` folder "
      f"(Orbax `{t5x.STATE_ITEM}/_METADATA` or legacy msgpack `{t5x.LEGACY_FILENAME}`), a model "
      "folder holding such folders, or a Hugging Face T5 folder (config.json + weights)")



def open_checkpoint(path: str) -> CheckpointReader:
  """A reader for any checkpoint `resolve_checkpoint` recognises."""
  kind, location = resolve_checkpoint(path)
  if kind == "orbax":
    return t5x.orbax_reader(location)
  if kind == "legacy":
    return t5x.legacy_reader(location)
  config, params = hf.load_hf_checkpoint(location)
  flat = {k: np.asarray(v) for k, v in flatten(params).items()}
  return CheckpointReader("hf", location, {k: v.shape for k, v in flat.items()},
                          lambda keys: {k: flat[k] for k in keys}, lambda: config)


def load_params(path: str) -> Dict[str, Any]:
  """The checkpoint's whole `target` params tree (numpy), as stored."""
  return unflatten(open_checkpoint(path).read())


def checkpoint_param_shapes(path: str) -> Dict[str, Shape]:
  """`{'encoder/.../kernel': shape}` of the checkpoint's parameters, without reading them."""
  return open_checkpoint(path).shapes()


def _describe(keys: Sequence[str], shapes: Mapping[str, Shape], limit: int = 20) -> str:
  items = [f"{k} {tuple(shapes[k])}" for k in sorted(keys)]
  if len(items) > limit:
    items = items[:limit] + [f"... ({len(keys) - limit} more)"]
  return "; ".join(items)


def restore_params(path: str,
                   target: Union[network.T5Config, Params],
                   *,
                   fallback_to_scratch: Optional[Sequence[str]] = None,
                   rng: Optional[jax.Array] = None,
                   init_fn: Optional[Callable[[jax.Array], Params]] = None,
                   dtype: Any = None,
                   param_scan_axis: int = 1) -> Dict[str, Any]:
  """Restores a checkpoint's parameters into the network's params tree.

  The scanned and unrolled layouts (`formats/scan.py`) restore into each other:
  `param_scan_axis` is the model's stacking axis when `target` is a params tree
  (a T5Config target gives its own); a scanned checkpoint's axis is the one its
  saved T5Config names (t5x's default 1 without one).

  See the module docstring for the arguments. Parameters matched by
  `fallback_to_scratch` that the checkpoint lacks are initialised fresh; any
  other difference between checkpoint and model is a `CheckpointError`.
  """
  if fallback_to_scratch is None:
    fallback_to_scratch = conditioning.param_patterns()
  if isinstance(fallback_to_scratch, str):
    fallback_to_scratch = (fallback_to_scratch,)
  config = target if isinstance(target, network.T5Config) else None
  wrapped = False
  if config is not None:
    template = abstract_params(config)
  else:
    template = flax.core.unfreeze(target)
    if set(template) == {"params"}:
      template, wrapped = template["params"], True
  flat_template = flatten(template)
  model_shapes = {k: tuple(v.shape) for k, v in flat_template.items()}

  reader = open_checkpoint(path)
  if config is not None and reader.config is not None:
    diffs = architecture_mismatches(reader.config, config)
    if diffs:
      raise CheckpointError(f"the checkpoint at {reader.location} was saved for a different "
                            f"architecture (checkpoint vs model): {'; '.join(diffs)}")
  reader = _in_model_layout(reader, list(model_shapes),
                            config.param_scan_axis if config is not None else param_scan_axis)
  ckpt_shapes = reader.shapes()

  extra = [k for k in ckpt_shapes if k not in model_shapes]
  absent = [k for k in model_shapes if k not in ckpt_shapes]
  fresh = [k for k in absent if _matches(fallback_to_scratch, k)]
  missing = [k for k in absent if k not in fresh]
  mismatched = [k for k in ckpt_shapes
                if k in model_shapes and tuple(ckpt_shapes[k]) != model_shapes[k]]
  problems = []
  if mismatched:
    problems.append("shape mismatch (checkpoint vs model): " + "; ".join(
        f"{k} {tuple(ckpt_shapes[k])} vs {model_shapes[k]}" for k in sorted(mismatched)))
  if extra:
    problems.append("in the checkpoint but not the model: " + _describe(extra, ckpt_shapes))
  if missing:
    problems.append("in the model but not the checkpoint (and not matched by "
                    f"fallback_to_scratch={tuple(fallback_to_scratch)}): "
                    + _describe(missing, model_shapes))
  if problems:
    raise CheckpointError(f"checkpoint {reader.location} does not fit the model: "
                          + " | ".join(problems))

  values = reader.read([k for k in model_shapes if k in ckpt_shapes])
  if fresh:
    values.update(_fresh_values(fresh, flat_template, config, rng, init_fn))
  out = {}
  for k, leaf in flat_template.items():
    want = jnp.dtype(dtype) if dtype is not None else jnp.dtype(leaf.dtype)
    out[k] = np.asarray(values[k]).astype(want, copy=False)
  params = unflatten(out)
  return {"params": params} if wrapped else params


def _in_model_layout(reader: CheckpointReader, model_keys: Sequence[str],
                     model_axis: int) -> CheckpointReader:
  """`reader` seen in the model's layout: stacked or unstacked on the fly when they differ."""
  ckpt_keys = list(reader.shapes())
  if scan.is_scanned(model_keys) and scan.is_unrolled(ckpt_keys):
    return scan.stacked_reader(reader, axis=model_axis)
  if scan.is_unrolled(model_keys) and scan.is_scanned(ckpt_keys):
    saved = reader.config
    return scan.unstacked_reader(reader, axis=getattr(saved, "param_scan_axis", 1))
  return reader


def _fresh_values(keys, flat_template, config, rng, init_fn) -> Dict[str, np.ndarray]:
  if all(isinstance(flat_template[k], (np.ndarray, jax.Array)) for k in keys):
    return {k: np.asarray(flat_template[k]) for k in keys}
  rng = jax.random.PRNGKey(0) if rng is None else rng
  if config is not None:
    return init_params_subset(config, rng, keys)
  if init_fn is None:
    raise CheckpointError(
        f"{len(keys)} parameter(s) must be initialised from scratch ({sorted(keys)[0]}, ...) "
        "but the target is abstract: pass init_fn, a T5Config, or concrete params")
  flat = flatten(init_fn(rng))
  return {k: np.asarray(flat[k]) for k in keys}

