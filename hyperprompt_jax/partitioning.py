# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Logical axis rules: t5x's standard rules plus the task-conditioning axes.

Every parameter of the network carries logical axis names (`params_axes`
collection, `flax.linen.partitioning.param_with_axes`), as in t5x. The backbone
uses t5x's names; each task-conditioning method's registry record
(`conditioning.Method`) adds the rules of its own axes. This project's methods
add these, all replicated (they are small), each with an Adafactor factor rule:

| axis               | what                          | mesh axis | Adafactor factor |
|--------------------|-------------------------------|-----------|------------------|
| tasks              | task index T                  | None      | batch            |
| prompt_length      | prompt length l               | None      | none             |
| prompt_embed       | prompt width d = H * D        | None      | row              |
| prompt_bottleneck  | hypernetwork bottleneck b     | None      | column           |
| task_embed         | task / layer embeddings t', t | None      | batch            |
| task_mlp           | hidden width of h_t           | None      | none             |
| prefix_mlp         | Prefix-Tuning MLP hidden      | None      | column           |
| adapter_bottleneck | adapter bottleneck b          | None      | column           |
| adapter_blocks     | HyperFormer++ block types     | None      | batch            |

`layers` (stacked per-layer hypernetworks) already has t5x rules (None / batch).
With t5x installed, pass `conditioning_axis_rules()` as `additional_rules` of
`standard_logical_axis_rules` and map `factor_rules()` into
`adafactor.standard_logical_factor_rules()` (see `gin/t5x/`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import jax
import numpy as np
from flax.linen import partitioning as nn_partitioning
from jax.sharding import AbstractMesh, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from hyperprompt_jax import conditioning
from hyperprompt_jax import errors

LogicalAxisRules = Sequence[Tuple[str, Optional[str]]]

# Adafactor factorisation of t5x's logical axes ('row', 'column', 'batch', 'none');
# `factor_rules()` adds the conditioning methods'.
BACKBONE_FACTOR_RULES = {
    "vocab": "column",
    "embed": "row",
    "mlp": "column",
    "heads": "column",
    "kv": "column",
    "joined_kv": "column",
    "relpos_buckets": "none",
    "abspos_buckets": "none",
    "layers": "batch",
    "stack": "batch",
    "mlp_activations": "batch",
}


def standard_logical_axis_rules(activation_partitioning_dims: int = 1,
                                parameter_partitioning_dims: int = 1,
                                additional_rules: Optional[LogicalAxisRules] = None
                                ) -> LogicalAxisRules:
  """t5x's default logical-to-mesh axis rules (1-D data + 1-D model), plus ours.

  Args:
    activation_partitioning_dims: 1 (batch on 'data') or 2 (also embed on 'model').
    parameter_partitioning_dims: 1 (model parallel on 'model') or 2 (also embed on 'data').
    additional_rules: rules that take precedence (prepended).
  """
  if activation_partitioning_dims not in (1, 2) or parameter_partitioning_dims not in (1, 2):
    raise errors.ConfigError("partitioning dims must be 1 or 2.")
  rules = [("batch", "data"), ("vocab", "model"), ("mlp", "model"), ("heads", "model"),
           ("kv", None), ("joined_kv", "model")]
  if activation_partitioning_dims == 2 or parameter_partitioning_dims == 2:
    rules.append(("embed", "data") if parameter_partitioning_dims == 2 else ("embed", "model"))
  rules += [("embed", None), ("relpos_buckets", None), ("abspos_buckets", None),
            ("length", None), ("layers", None), ("stack", None), ("mlp_activations", None)]
  rules += conditioning.axis_rules()
  return list(additional_rules or ()) + rules


# ---------------------------------------------------------------------------
# Meshes, shardings and per-host data layout (the launcher's partitioner).
# ---------------------------------------------------------------------------
#
# Everything below is the jax.sharding equivalent of t5x's `PjitPartitioner`:
# a 2-D `('data', 'model')` mesh, parameters and optimizer state placed by the
# logical axis rules above, batches split along 'data', one input shard per
# group of hosts that holds the same slice of 'data'.

MESH_AXES = ("data", "model")
AnyMesh = Union[Mesh, AbstractMesh]


def conditioning_axis_rules() -> LogicalAxisRules:
  """The registered conditioning methods' axis rules (for gin: t5x's `additional_rules`)."""
  return conditioning.axis_rules()


def factor_rules() -> Dict[str, str]:
  """Adafactor factor rule of every logical axis: t5x's and the conditioning methods'."""
  return {**BACKBONE_FACTOR_RULES, **conditioning.factor_rules()}


def t5x_logical_factor_rules() -> Mapping[str, Any]:
  """t5x Adafactor factor rules (`adafactor.FactorDim`) for every axis, ours included.

  Only usable where t5x is installed (see gin/t5x/); t5x is never a dependency.
  """
  from t5x import adafactor  # pylint: disable=g-import-not-at-top
  rules = dict(adafactor.standard_logical_factor_rules())
  rules.update({k: getattr(adafactor.FactorDim, v.upper()) for k, v in factor_rules().items()})
  return rules


def initialize_distributed(coordinator_address: Optional[str] = None,
                           process_count: Optional[int] = None,
                           process_index: Optional[int] = None,
                           multiprocess_gpu: bool = False) -> bool:
  """`jax.distributed.initialize` for multi-host runs; a no-op without a coordinator.

  Returns whether the distributed runtime was initialised. Explicit values need all
  three. `coordinator_address='auto'` (the other two None), or t5x's
  `multiprocess_gpu` with none of the three, lets jax detect them: on Cloud TPU from
  the TPU metadata, under Slurm or Open MPI from their environment variables.
  """
  if (coordinator_address is None and process_count is None and process_index is None
      and not multiprocess_gpu):
    return False
  if coordinator_address == "auto" or (
      multiprocess_gpu and coordinator_address is None and process_count is None
      and process_index is None):
    if process_count is not None or process_index is not None:
      raise errors.ConfigError("--coordinator_address=auto detects --process_count and "
                               "--process_index; do not give them.")
    jax.distributed.initialize()
  else:
    if coordinator_address is None or process_count is None or process_index is None:
      raise errors.ConfigError(
          "multi-host runs need all of --coordinator_address, --process_count and "
          f"--process_index (got {coordinator_address!r}, {process_count!r}, "
          f"{process_index!r}), or --coordinator_address=auto on Cloud TPU, Slurm or "
          "Open MPI.")
    jax.distributed.initialize(coordinator_address, num_processes=process_count,
                               process_id=process_index)
  return True


def mesh_shape_for(num_devices: int, mesh_shape: Optional[Sequence[int]] = None,
                   num_partitions: Optional[int] = None) -> Tuple[int, int]:
  """`(data, model)` sizes from an explicit shape (-1 allowed once) or `num_partitions`."""
  if mesh_shape is not None and num_partitions is not None:
    raise errors.ConfigError("give either mesh_shape or num_partitions, not both.")
  if mesh_shape is None:
    model = 1 if num_partitions is None else int(num_partitions)
    if model < 1 or num_devices % model:
      raise errors.ConfigError(f"num_partitions={num_partitions} must divide the number of "
                               f"devices ({num_devices}).")
    return num_devices // model, model
  shape = [int(s) for s in mesh_shape]
  if len(shape) != 2:
    raise errors.ConfigError(f"mesh_shape must be (data, model), got {tuple(mesh_shape)}.")
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise errors.ConfigError(f"mesh_shape {tuple(mesh_shape)} must hold positive sizes and at "
                             "most one -1.")
  if -1 in shape:
    known = math.prod(s for s in shape if s != -1)
    if num_devices % known:
      raise errors.ConfigError(f"mesh_shape {tuple(mesh_shape)} does not divide {num_devices} "
                               "devices.")
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) != num_devices:
    raise errors.ConfigError(f"mesh_shape {tuple(mesh_shape)} needs {math.prod(shape)} devices, "
                             f"but {num_devices} are available.")
  return shape[0], shape[1]


def create_mesh(mesh_shape: Optional[Sequence[int]] = None,
                num_partitions: Optional[int] = None,
                devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A `('data', 'model')` mesh over `devices` (default: all), model axis innermost.

  An explicit `mesh_shape` smaller than the device count uses the first devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  if mesh_shape is not None and -1 not in tuple(mesh_shape):
    wanted = math.prod(int(s) for s in mesh_shape)
    if 0 < wanted < len(devices):
      logging.warning("mesh_shape %s uses %d of the %d devices.", tuple(mesh_shape), wanted,
                      len(devices))
      devices = devices[:wanted]
  shape = mesh_shape_for(len(devices), mesh_shape, num_partitions)
  try:
    from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
    device_array = mesh_utils.create_device_mesh(shape, devices)
  except (ValueError, NotImplementedError, AssertionError):
    device_array = np.asarray(devices, dtype=object).reshape(shape)
  return Mesh(device_array, MESH_AXES,
              axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def create_abstract_mesh(mesh_shape: Sequence[int]) -> AbstractMesh:
  """A device-free `('data', 'model')` mesh, for `jax.eval_shape` of pod-sized runs."""
  data, model = (int(s) for s in mesh_shape)
  return AbstractMesh((data, model), MESH_AXES,
                      axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def fit_spec(spec: P, shape: Sequence[int], mesh: AnyMesh) -> P:
  """`spec` with every mesh axis dropped from a dimension it does not divide evenly.

  Arguments of a jitted function must split evenly; a small dimension (e.g. 2
  heads over 4 model shards of a test model) is replicated instead.
  """
  sizes = dict(mesh.shape)
  entries = list(spec) + [None] * (len(shape) - len(spec))
  out = []
  for dim, entry in zip(shape, entries):
    axes = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
    kept, split = [], 1
    for axis in axes:
      if dim % (split * sizes[axis]) == 0:
        kept.append(axis)
        split *= sizes[axis]
    if len(kept) != len(axes):
      logging.debug("replicating a dimension of size %d instead of splitting it over %s",
                    dim, axes)
    out.append(None if not kept else (kept[0] if len(kept) == 1 else tuple(kept)))
  return P(*out)


def _dict_key_path(path) -> Tuple[str, ...]:
  return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


class DataLayout(NamedTuple):
  """This host's part of the global batch (t5x's `DataLayout`)."""
  batch_size: int
  shard_id: int
  num_shards: int
  is_first_host_in_replica_set: bool


class Partitioner:
  """Places a training run on a `('data', 'model')` mesh by logical axis names.

  Args:
    num_partitions: size of the 'model' axis (data = devices / num_partitions).
    mesh_shape: explicit `(data, model)`; -1 fills in the rest. Excludes
      `num_partitions`.
    logical_axis_rules: logical-name -> mesh-axis rules (default
      `standard_logical_axis_rules()`).
    mesh: a ready `Mesh` or `AbstractMesh` (overrides the two shapes above).
    devices: devices of the mesh (default: all).
    compiler_options: XLA options for every partitioned function (e.g.
      `{'xla_backend_optimization_level': 0}` to compile tiny test models faster).
  """

  def __init__(self, num_partitions: Optional[int] = None,
               mesh_shape: Optional[Sequence[int]] = None,
               logical_axis_rules: Optional[LogicalAxisRules] = None,
               mesh: Optional[AnyMesh] = None,
               devices: Optional[Sequence[jax.Device]] = None,
               compiler_options: Optional[Mapping[str, Any]] = None):
    self.compiler_options = dict(compiler_options) if compiler_options else None
    self.mesh = mesh if mesh is not None else create_mesh(mesh_shape, num_partitions, devices)
    if tuple(self.mesh.axis_names) != MESH_AXES:
      raise errors.ConfigError(f"mesh axes must be {MESH_AXES}, got {self.mesh.axis_names}.")
    self.logical_axis_rules = tuple(
        standard_logical_axis_rules() if logical_axis_rules is None else logical_axis_rules)

  # -- mesh facts -------------------------------------------------------------
  @property
  def is_abstract(self) -> bool:
    return isinstance(self.mesh, AbstractMesh)

  @property
  def num_data_shards(self) -> int:
    return int(self.mesh.shape["data"])

  @property
  def num_partitions(self) -> int:
    return int(self.mesh.shape["model"])

  @property
  def data_sharding(self) -> NamedSharding:
    """Batches: leading dimension split along 'data'."""
    return NamedSharding(self.mesh, P("data"))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def context(self):
    """Mesh + axis rules for tracing (activation `with_sharding_constraint`s)."""
    stack = contextlib.ExitStack()
    if self.is_abstract:
      stack.enter_context(jax.sharding.use_abstract_mesh(self.mesh))
    else:
      stack.enter_context(jax.set_mesh(self.mesh))
    stack.enter_context(nn_partitioning.axis_rules(self.logical_axis_rules))
    return stack

  # -- parameters and optimizer state ------------------------------------------
  def logical_to_mesh_spec(self, logical_spec: P, shape: Sequence[int]) -> P:
    """Mesh PartitionSpec of one array from its logical axis names."""
    mesh_spec = nn_partitioning.logical_to_mesh_axes(logical_spec, self.logical_axis_rules)
    return fit_spec(P(*mesh_spec), shape, self.mesh)

  def params_shardings(self, params_axes: Mapping[str, Any], abstract_params: Any) -> Any:
    """NamedShardings of the params tree from the model's `params_axes` collection."""
    logical = nn_partitioning.get_axis_names(params_axes)
    flat_shapes = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
    flat_logical = {_dict_key_path(p): s for p, s in jax.tree_util.tree_flatten_with_path(
        logical, is_leaf=lambda x: isinstance(x, P))[0]}
    out = []
    for path, leaf in flat_shapes:
      key = _dict_key_path(path)
      if key not in flat_logical:
        raise errors.ConfigError(f"parameter {'/'.join(key)} has no logical axis names; declare it "
                                 "with flax.linen.partitioning.param_with_axes.")
      out.append(NamedSharding(self.mesh, self.logical_to_mesh_spec(flat_logical[key],
                                                                    leaf.shape)))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(abstract_params), out)

  def opt_state_shardings(self, abstract_opt_state: Any, abstract_params: Any,
                          params_shardings: Any) -> Any:
    """Shardings of an optax state: each leaf follows the parameter it belongs to.

    A leaf is matched to a parameter by the longest suffix of its dict-key path
    that is a parameter path. Same shape: the parameter's spec; one dimension
    fewer (factored second moments, e.g. Adafactor's v_row / v_col): the spec
    without the reduced dimension; anything else (counts, scalars): replicated.
    """
    param_shape = {_dict_key_path(p): leaf.shape for p, leaf in
                   jax.tree_util.tree_flatten_with_path(abstract_params)[0]}
    param_spec = {_dict_key_path(p): s.spec for p, s in
                  jax.tree_util.tree_flatten_with_path(params_shardings)[0]}

    def for_leaf(path, leaf):
      shape = getattr(leaf, "shape", ())
      keys = _dict_key_path(path)
      for start in range(len(keys)):
        key = keys[start:]
        if key in param_shape:
          return NamedSharding(self.mesh, self._derived_spec(param_spec[key],
                                                             param_shape[key], shape))
      return self.replicated

    return jax.tree_util.tree_map_with_path(for_leaf, abstract_opt_state)

  def _derived_spec(self, spec: P, param_shape: Sequence[int], shape: Sequence[int]) -> P:
    entries = list(spec) + [None] * (len(param_shape) - len(spec))
    if tuple(shape) == tuple(param_shape):
      return P(*entries)
    if len(shape) == len(param_shape) - 1:
      for drop in reversed(range(len(param_shape))):
        if tuple(param_shape[:drop]) + tuple(param_shape[drop + 1:]) == tuple(shape):
          return fit_spec(P(*(entries[:drop] + entries[drop + 1:])), shape, self.mesh)
    return P()

  # -- data ---------------------------------------------------------------------
  def get_data_layout(self, batch_size: int, process_index: Optional[int] = None) -> DataLayout:
    """Which input shard this host reads, and how many examples of the global batch.

    Hosts whose devices hold the same rows of 'data' form a replica set and read
    the same shard (`seqio.ShardInfo(shard_id, num_shards)`).
    """
    if batch_size % self.num_data_shards:
      raise errors.ConfigError(f"batch size {batch_size} must be divisible by the 'data' mesh axis "
                               f"({self.num_data_shards}).")
    if self.is_abstract:
      return DataLayout(batch_size, 0, 1, True)
    process_index = jax.process_index() if process_index is None else process_index
    rows_of: Dict[int, set] = {}
    for (row, _), device in np.ndenumerate(self.mesh.devices):
      rows_of.setdefault(device.process_index, set()).add(row)
    blocks = sorted({tuple(sorted(r)) for r in rows_of.values()})
    mine = tuple(sorted(rows_of[process_index]))
    num_shards = len(blocks)
    if batch_size % num_shards:
      raise errors.ConfigError(f"batch size {batch_size} must be divisible by the number of input "
                               f"shards ({num_shards}).")
    first = min(p for p, r in rows_of.items() if tuple(sorted(r)) == mine)
    return DataLayout(batch_size // num_shards, blocks.index(mine), num_shards,
                      first == process_index)

  def shard_batch(self, local_batch: Mapping[str, np.ndarray], global_batch_size: int
                  ) -> Dict[str, jax.Array]:
    """Global arrays split along 'data' from this host's part of the batch."""
    out = {}
    for name, value in local_batch.items():
      value = np.asarray(value)
      global_shape = (global_batch_size,) + value.shape[1:]
      out[name] = jax.make_array_from_process_local_data(self.data_sharding, value,
                                                         global_shape)
    return out

  def partition(self, fn: Callable, in_shardings: Any, out_shardings: Any,
                donate_argnums: Sequence[int] = (), static_argnums: Sequence[int] = ()
                ) -> Callable:
    """`jax.jit` with shardings, traced under this mesh and its axis rules."""
    jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings,
                     donate_argnums=tuple(donate_argnums), static_argnums=tuple(static_argnums),
                     compiler_options=self.compiler_options)

    def call(*args, **kwargs):
      with self.context():
        return jitted(*args, **kwargs)

    call.lower = lambda *a, **k: _lower_in(self, jitted, a, k)
    call.eval_shape = lambda *a, **k: _eval_shape_in(self, jitted, a, k)
    return call


def _lower_in(partitioner: Partitioner, jitted, args, kwargs):
  with partitioner.context():
    return jitted.lower(*args, **kwargs)


def _eval_shape_in(partitioner: Partitioner, jitted, args, kwargs):
  with partitioner.context():
    return jax.eval_shape(jitted, *args, **kwargs)


PjitPartitioner = Partitioner  # t5x's name, for gin files written against t5x.


def per_device_bytes(abstract_tree: Any) -> int:
  """Bytes one device holds of a tree of sharded `jax.ShapeDtypeStruct`s (or arrays)."""
  total = 0
  for leaf in jax.tree_util.tree_leaves(abstract_tree):
    shape = leaf.shape
    sharding = getattr(leaf, "sharding", None)
    if sharding is not None:
      shape = sharding.shard_shape(shape)
    total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
  return total
