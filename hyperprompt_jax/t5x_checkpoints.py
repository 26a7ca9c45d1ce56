# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Reading and writing t5x checkpoint layouts, and restoring them into our network.

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

Restoring into the network (what the launcher calls for `INITIAL_CHECKPOINT_PATH`):

  restore_params(path, target, *, fallback_to_scratch=TASK_CONDITIONING_PATTERNS,
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
          The default covers the task-conditioning modules (`hyperprompt/...`).
  rng:    PRNG key for the fresh parameters when `target` is a T5Config
          (default `PRNGKey(0)`); only the missing parameters are computed.
  init_fn: `rng -> params` for an abstract params `target` with missing params.
  dtype:  dtype of the returned leaves (default: the target's dtypes, float32).
  Returns the params tree of numpy arrays (same structure as the target).
  Raises `CheckpointError` (a ValueError) naming every parameter that is in the
  checkpoint but not the model, in the model but not the checkpoint (and not
  matched by `fallback_to_scratch`), or whose shapes differ (both shapes given),
  and for a missing, truncated or corrupt checkpoint.

Writers: `save_orbax_checkpoint(model_dir, params, step=0)` (what
`python -m hyperprompt_jax.convert` writes and t5x restores through
`INITIAL_CHECKPOINT_PATH`) and `save_legacy_checkpoint(model_dir, params, step=0)`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import flax
import jax
import jax.numpy as jnp
import numpy as np

from hyperprompt_jax import conditioning as conditioning_lib
from hyperprompt_jax import network

Params = Mapping[str, Any]
Shape = Tuple[int, ...]

# Top-level names of the task-conditioning modules (HyperPrompt and the baselines).
CONDITIONING_PARAM_PREFIXES: Tuple[str, ...] = tuple(getattr(
    conditioning_lib, "PARAM_PREFIXES",
    ("hyperprompt", "prefix_tuning", "prompt_tuning", "adapters", "hyperformer")))
# Task-conditioning parameters, initialised fresh when a backbone checkpoint lacks them.
TASK_CONDITIONING_PATTERNS: Tuple[str, ...] = tuple(
    rf"{prefix}/.*" for prefix in CONDITIONING_PARAM_PREFIXES)
# t5x's checkpoint folder prefix and Orbax item name.
CHECKPOINT_PREFIX = "checkpoint"
STATE_ITEM = "state"
LEGACY_FILENAME = "checkpoint"
LEGACY_VERSION = 3
# Our T5Config next to a converted checkpoint (`convert.py` writes it).
CONFIG_FILENAME = "model_config.json"
# T5Config fields that define the parameter tree and the backbone's function.
ARCHITECTURE_FIELDS = ("vocab_size", "emb_dim", "num_heads", "num_encoder_layers",
                       "num_decoder_layers", "head_dim", "mlp_dim", "mlp_activations",
                       "logits_via_embedding", "relative_attention_num_buckets",
                       "relative_attention_max_distance", "layer_norm_epsilon")
# Largest zarr chunk the legacy writer produces (elements; 64 MiB of float32, as t5x).
_MAX_CHUNK_ELEMENTS = 2**24
# Models up to this many parameters get their fresh parameters from an eager init.
_EAGER_INIT_MAX_PARAMS = 20_000_000
_STEP_DIR_RE = re.compile(rf"^{CHECKPOINT_PREFIX}_(\d+)$")


class CheckpointError(ValueError):
  """A checkpoint is missing, unreadable, or does not fit the model."""


# ---------------------------------------------------------------------------
# Trees and configs.
# ---------------------------------------------------------------------------


def flatten(tree: Params) -> Dict[str, Any]:
  """`{'a/b/kernel': leaf}` of a nested params dict."""
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")


def unflatten(flat: Mapping[str, Any]) -> Dict[str, Any]:
  return flax.traverse_util.unflatten_dict(dict(flat), sep="/")


def _init_params(config: network.T5Config, rng: jax.Array) -> Params:
  module = network.Transformer(config=config)
  ones = jnp.ones((1, 8), jnp.float32)
  return module.init(rng, ones, ones, ones, enable_dropout=False)["params"]


def backbone_config(config: network.T5Config) -> network.T5Config:
  """`config` without task conditioning (vanilla T5: the backbone parameters only)."""
  names = {f.name for f in dataclasses.fields(config)}
  changes = {"hyperprompt_variant": "none"}
  if "conditioning" in names:
    changes["conditioning"] = "none"
  return config.replace(**changes)


def is_conditioning_param(key: str) -> bool:
  """Whether the flat parameter path belongs to a task-conditioning module."""
  return key.split("/", 1)[0] in CONDITIONING_PARAM_PREFIXES


def abstract_params(config: network.T5Config) -> Dict[str, Any]:
  """The network's params tree as `jax.ShapeDtypeStruct`s (no memory is allocated)."""
  return flax.core.unfreeze(jax.eval_shape(lambda: _init_params(config, jax.random.PRNGKey(0))))


def init_params_subset(config: network.T5Config, rng: jax.Array, keys: Sequence[str]
                       ) -> Dict[str, np.ndarray]:
  """Freshly initialised values of the flat `keys` (the values a full init with `rng` gives).

  Large models are initialised under `jax.jit`, where XLA drops the initialisers
  of the parameters not asked for, so the backbone is never materialised; small
  ones are initialised eagerly, which is faster than compiling.
  """
  keys = tuple(keys)

  def subset(rng):
    flat = flatten(_init_params(config, rng))
    return {k: flat[k] for k in keys}

  total = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(abstract_params(config)))
  init = subset if total <= _EAGER_INIT_MAX_PARAMS else jax.jit(subset)
  return {k: np.asarray(v) for k, v in init(rng).items()}


def config_to_dict(config: network.T5Config) -> Dict[str, Any]:
  """JSON-able dict of every T5Config field."""
  out = {}
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if field.name == "dtype":
      value = jnp.dtype(value).name
    elif isinstance(value, tuple):
      value = list(value)
    out[field.name] = value
  return out


def config_from_dict(values: Mapping[str, Any]) -> network.T5Config:
  """Inverse of `config_to_dict`; an unknown field is an error."""
  known = {f.name for f in dataclasses.fields(network.T5Config)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise CheckpointError(f"unknown T5Config field(s) {unknown}; known: {sorted(known)}")
  values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
  return network.T5Config(**values)


def architecture_mismatches(a: network.T5Config, b: network.T5Config) -> List[str]:
  """`'field: a vs b'` for each ARCHITECTURE_FIELDS entry where the configs differ."""
  out = []
  for name in ARCHITECTURE_FIELDS:
    va, vb = getattr(a, name), getattr(b, name)
    if isinstance(va, (list, tuple)):
      va, vb = tuple(va), tuple(vb)
    if va != vb:
      out.append(f"{name}: {va!r} vs {vb!r}")
  return out


def infer_config(shapes: Mapping[str, Shape], **overrides) -> Tuple[network.T5Config, List[str]]:
  """T5Config of a t5x T5 parameter tree from its shapes.

  Shapes cannot tell the activation function, the relative-attention max
  distance or the layer-norm epsilon; those take the public T5 checkpoints'
  values (gated -> GELU, ungated -> ReLU, 128, 1e-6) unless given in
  `overrides`, and are listed in the returned notes.
  """

  def get(key):
    if key not in shapes:
      raise CheckpointError(f"cannot infer the T5 architecture: the checkpoint has no "
                            f"parameter {key!r}")
    return shapes[key]

  vocab_size, emb_dim = get("token_embedder/embedding")
  num_heads, num_buckets = get("encoder/relpos_bias/rel_embedding")
  joined_kv = get("encoder/layers_0/attention/query/kernel")[1]
  count = lambda stack: len({k.split("/")[1] for k in shapes
                             if re.match(rf"^{stack}/layers_\d+/", k)})
  if "encoder/layers_0/mlp/wi/kernel" in shapes:
    activations, mlp_dim = ("relu",), shapes["encoder/layers_0/mlp/wi/kernel"][1]
  else:
    num_wi = len([k for k in shapes if re.match(r"^encoder/layers_0/mlp/wi_\d+/kernel$", k)])
    if num_wi != 2:
      raise CheckpointError(f"cannot infer the MLP of a checkpoint with {num_wi} "
                            "encoder/layers_0/mlp/wi_* kernels; pass the config explicitly")
    activations, mlp_dim = ("gelu", "linear"), get("encoder/layers_0/mlp/wi_0/kernel")[1]
  values = dict(vocab_size=vocab_size, emb_dim=emb_dim, num_heads=num_heads,
                head_dim=joined_kv // num_heads, num_encoder_layers=count("encoder"),
                num_decoder_layers=count("decoder"), mlp_dim=mlp_dim,
                mlp_activations=activations,
                logits_via_embedding="decoder/logits_dense/kernel" not in shapes,
                relative_attention_num_buckets=num_buckets)
  notes = []
  for name, default in (("mlp_activations", activations),
                        ("relative_attention_max_distance", 128),
                        ("layer_norm_epsilon", 1e-6)):
    if name not in overrides:
      notes.append(f"{name}={default!r} (assumed: not visible in parameter shapes)")
  values.update(overrides)
  return config_from_dict(values), notes


def _matches(patterns: Sequence[str], key: str) -> bool:
  return any(re.fullmatch(p, key) or re.fullmatch(p, "target/" + key) for p in patterns)


# ---------------------------------------------------------------------------
# Finding and reading checkpoints.
# ---------------------------------------------------------------------------


def _step_dirs(model_dir: str) -> List[Tuple[int, str]]:
  out = []
  for name in os.listdir(model_dir):
    m = _STEP_DIR_RE.match(name)
    if m and os.path.isdir(os.path.join(model_dir, name)):
      out.append((int(m.group(1)), os.path.join(model_dir, name)))
  return sorted(out)


def _is_orbax_item(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "_METADATA"))


def _is_hf_dir(path: str) -> bool:
  from hyperprompt_jax import hf  # pylint: disable=g-import-not-at-top
  return hf.is_hf_dir(path)


def resolve_checkpoint(path: str) -> Tuple[str, str]:
  """`(kind, location)`: kind 'orbax' (location: the `state` item folder),
  'legacy' (the msgpack file) or 'hf' (the Hugging Face folder); location is absolute
  (a relative `path` is taken from the working directory: Orbax reads absolute paths only)."""
  from hyperprompt_jax import checkpoints  # pylint: disable=g-import-not-at-top
  path = checkpoints.absolute_path(os.fspath(path))
  if not os.path.exists(path):
    raise CheckpointError(f"checkpoint path does not exist: {path}")
  if os.path.isfile(path):
    if os.path.basename(path) == LEGACY_FILENAME:
      return "legacy", path
    raise CheckpointError(f"{path} is a file but not a t5x msgpack `{LEGACY_FILENAME}` file")
  if _is_orbax_item(path):
    return "orbax", path
  if _is_orbax_item(os.path.join(path, STATE_ITEM)):
    return "orbax", os.path.join(path, STATE_ITEM)
  if os.path.isfile(os.path.join(path, LEGACY_FILENAME)):
    return "legacy", os.path.join(path, LEGACY_FILENAME)
  if _is_hf_dir(path):
    return "hf", path
  steps = _step_dirs(path)
  if steps:
    return resolve_checkpoint(steps[-1][1])
  raise CheckpointError(
      f"{path} is not a checkpoint: expected a t5x `{CHECKPOINT_PREFIX}_<step>` folder "
      f"(Orbax `{STATE_ITEM}/_METADATA` or legacy msgpack `{LEGACY_FILENAME}`), a model "
      "folder holding such folders, or a Hugging Face T5 folder (config.json + weights)")


def _saved_config(location: str) -> Optional[network.T5Config]:
  """Our T5Config saved next to the checkpoint (model dir or step dir), if any."""
  step_dir = os.path.dirname(location)
  for folder in (step_dir, os.path.dirname(step_dir)):
    candidate = os.path.join(folder, CONFIG_FILENAME)
    if os.path.isfile(candidate):
      return read_config(candidate)
  return None


def read_config(path: str) -> network.T5Config:
  try:
    with open(path) as f:
      values = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"cannot read the T5Config JSON {path}: {e}") from None
  try:
    return config_from_dict(values)
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"{path}: {e}") from None


def write_config(path: str, config: network.T5Config) -> None:
  with open(path, "w") as f:
    json.dump(config_to_dict(config), f, indent=2, sort_keys=True)
    f.write("\n")


class CheckpointReader:
  """A checkpoint's `target` parameters: shapes first, values on demand."""

  def __init__(self, kind: str, location: str, shapes: Mapping[str, Shape],
               read_fn: Callable[[Sequence[str]], Dict[str, np.ndarray]],
               config_fn: Callable[[], Optional[network.T5Config]] = lambda: None):
    self.kind = kind
    self.location = location
    self._shapes = dict(shapes)
    self._read_fn = read_fn
    self._config_fn = config_fn

  @property
  def config(self) -> Optional[network.T5Config]:
    """The architecture the checkpoint declares (HF config or our saved T5Config), if any."""
    return self._config_fn()

  def shapes(self) -> Dict[str, Shape]:
    return dict(self._shapes)

  def read(self, keys: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    keys = list(self._shapes) if keys is None else list(keys)
    return self._read_fn(keys)


def _orbax_reader(state_dir: str) -> CheckpointReader:
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
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

  return CheckpointReader("orbax", state_dir, shapes, read, lambda: _saved_config(state_dir))


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
  from flax import serialization  # pylint: disable=g-import-not-at-top
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


def _legacy_reader(path: str) -> CheckpointReader:
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
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

  return CheckpointReader("legacy", path, shapes, read, lambda: _saved_config(path))


def open_checkpoint(path: str) -> CheckpointReader:
  """A reader for any checkpoint `resolve_checkpoint` recognises."""
  kind, location = resolve_checkpoint(path)
  if kind == "orbax":
    return _orbax_reader(location)
  if kind == "legacy":
    return _legacy_reader(location)
  from hyperprompt_jax import hf  # pylint: disable=g-import-not-at-top
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


# ---------------------------------------------------------------------------
# Restoring into the network.
# ---------------------------------------------------------------------------


def _describe(keys: Sequence[str], shapes: Mapping[str, Shape], limit: int = 20) -> str:
  items = [f"{k} {tuple(shapes[k])}" for k in sorted(keys)]
  if len(items) > limit:
    items = items[:limit] + [f"... ({len(keys) - limit} more)"]
  return "; ".join(items)


def restore_params(path: str,
                   target: Union[network.T5Config, Params],
                   *,
                   fallback_to_scratch: Sequence[str] = TASK_CONDITIONING_PATTERNS,
                   rng: Optional[jax.Array] = None,
                   init_fn: Optional[Callable[[jax.Array], Params]] = None,
                   dtype: Any = None) -> Dict[str, Any]:
  """Restores a checkpoint's parameters into the network's params tree.

  See the module docstring for the arguments. Parameters matched by
  `fallback_to_scratch` that the checkpoint lacks are initialised fresh; any
  other difference between checkpoint and model is a `CheckpointError`.
  """
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


# ---------------------------------------------------------------------------
# Writing.
# ---------------------------------------------------------------------------


def save_orbax_checkpoint(model_dir: str, params: Params, *, step: int = 0) -> str:
  """Writes `model_dir/checkpoint_<step>/state` the way t5x's Orbax manager does.

  The item holds `{'target': params, 'state': {'step': step}}` (no optimizer
  slots: t5x fills those from scratch with `fallback_to_scratch=True`).
  Returns the checkpoint folder (`INITIAL_CHECKPOINT_PATH`).
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
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
  import tensorstore as ts  # pylint: disable=g-import-not-at-top
  from flax import serialization  # pylint: disable=g-import-not-at-top
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
