# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Parameter trees and T5Config files: the helpers every checkpoint format shares.

  flatten / unflatten        `{'a/b/kernel': leaf}` <-> nested params dict
  abstract_params(config)    the network's tree as `jax.ShapeDtypeStruct`s
  init_params_subset(...)    fresh values of some parameters only
  config_to_dict / config_from_dict / read_config / write_config
                             T5Config <-> `model_config.json` (run_dir.MODEL_CONFIG)
  infer_config(shapes)       T5Config of a t5x T5 parameter tree from its shapes
  CheckpointReader           a checkpoint's parameters: shapes first, values on demand
  CheckpointError            a checkpoint is missing, unreadable or does not fit
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from hyperprompt_jax import conditioning as conditioning_lib
from hyperprompt_jax import errors
from hyperprompt_jax import network
from hyperprompt_jax import run_dir

Params = Mapping[str, Any]
Shape = Tuple[int, ...]

# Our T5Config next to a checkpoint (the launcher's MODEL_DIR; `convert.py`'s output).
CONFIG_FILENAME = run_dir.MODEL_CONFIG
# T5Config fields that define the parameter tree and the backbone's function.
ARCHITECTURE_FIELDS = ("vocab_size", "emb_dim", "num_heads", "num_encoder_layers",
                       "num_decoder_layers", "head_dim", "mlp_dim", "mlp_activations",
                       "logits_via_embedding", "relative_attention_num_buckets",
                       "relative_attention_max_distance", "layer_norm_epsilon")
# Largest zarr chunk the legacy writer produces (elements; 64 MiB of float32, as t5x).
# Models up to this many parameters get their fresh parameters from an eager init.
_EAGER_INIT_MAX_PARAMS = 20_000_000


class CheckpointError(errors.ConfigError):
  """A checkpoint is missing, unreadable, or does not fit the model."""


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
  return key.split("/", 1)[0] in conditioning_lib.param_prefixes()


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
  run_dir.write_json(path, config_to_dict(config))


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

