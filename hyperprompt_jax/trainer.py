# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Train state and the jitted, sharded train / eval / predict steps.

`Trainer(model, optimizer_def, partitioner, input_shapes)` derives, without
allocating anything, the abstract `TrainState` (`jax.eval_shape`) and its
shardings: parameters from their logical axis names (the model's
`params_axes`), optimizer state following its parameters, batches along
'data'. Every step function is `jax.jit` with those in/out shardings, traced
under the partitioner's mesh and axis rules:

  init_state(rng)                 -> TrainState (created sharded, on device)
  train_step(state, batch)        -> (TrainState, metrics)   state donated
  eval_step(params, batch)        -> metrics
  predict_batch(params, batch)    -> (tokens [B, Ld], scores [B])
  score_batch(params, batch)      -> log-likelihood [B]

The dropout key of step s is `fold_in(state.rng, s)`, so a resumed run draws
the same dropout masks as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from hyperprompt_jax import errors
from hyperprompt_jax import faults
from hyperprompt_jax import optimizers as optimizers_lib
from hyperprompt_jax import partitioning as partitioning_lib
from hyperprompt_jax import reliability

Batch = Mapping[str, jax.Array]


@struct.dataclass
class TrainState:
  """Everything a step needs and a checkpoint keeps.

  Attributes:
    step: int32 scalar, number of updates applied.
    params: the model parameters.
    opt_state: optax state (empty for frozen parameters).
    rng: uint32 `[2]` key data; dropout of step s uses `fold_in(rng, s)`.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def _int_features(input_shapes: Mapping[str, Tuple[int, ...]]) -> Dict[str, Any]:
  return {k: jnp.int32 for k in input_shapes}


class Trainer:
  """Sharded train / eval / predict steps of one model on one mesh.

  Args:
    model: `models.EncoderDecoderModel` (t5x API).
    optimizer_def: `optimizers.OptimizerDef` (or a bare optax transformation).
    partitioner: `partitioning.Partitioner`.
    input_shapes: global batch shapes, e.g. `{'encoder_input_tokens': (B, Le),
      'decoder_input_tokens': (B, Ld), ...}` (only the two token shapes are
      needed for initialisation).
  """

  def __init__(self, model: Any, optimizer_def: Any,
               partitioner: partitioning_lib.Partitioner,
               input_shapes: Mapping[str, Tuple[int, ...]],
               skip_nonfinite_steps: bool = False):
    self.model = model
    self.skip_nonfinite_steps = skip_nonfinite_steps
    trainable_patterns = (".*",)
    if isinstance(optimizer_def, optimizers_lib.OptimizerDef):
      self.tx, self.learning_rate_fn = optimizer_def.tx, optimizer_def.learning_rate_fn
      trainable_patterns = optimizer_def.trainable_patterns
    elif optimizer_def is None:  # evaluation / inference only
      self.tx, self.learning_rate_fn = optax.identity(), None
    else:
      self.tx, self.learning_rate_fn = optimizer_def, None
    self.can_train = optimizer_def is not None
    self.partitioner = partitioner
    self.input_shapes = {k: tuple(v) for k, v in input_shapes.items()}
    self._init_shapes = {k: self.input_shapes[k]
                         for k in ("encoder_input_tokens", "decoder_input_tokens")}

    variables = jax.eval_shape(self._init_variables, jax.random.PRNGKey(0))
    if "params_axes" not in variables:
      raise errors.ConfigError("the model's variables have no `params_axes` collection; declare "
                               "parameters with flax.linen.partitioning.param_with_axes.")
    abstract_params = variables["params"]
    # Paths of frozen parameters (the optimizer's labels): the train step
    # differentiates only the others.
    labels = optimizers_lib.param_labels(abstract_params, trainable_patterns)
    self.frozen_paths = frozenset(
        path for path, label in flax.traverse_util.flatten_dict(labels, sep="/").items()
        if label == optimizers_lib.FROZEN)
    self.params_axes = variables["params_axes"]
    self.params_shardings = partitioner.params_shardings(variables["params_axes"],
                                                         abstract_params)
    self.abstract_params = jax.tree_util.tree_map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_params,
        self.params_shardings)
    abstract_opt_state = jax.eval_shape(self.tx.init, abstract_params)
    opt_shardings = partitioner.opt_state_shardings(abstract_opt_state, abstract_params,
                                                    self.params_shardings)
    replicated = partitioner.replicated
    self.state_shardings = TrainState(step=replicated, params=self.params_shardings,
                                      opt_state=opt_shardings, rng=replicated)
    key_shape = jax.eval_shape(lambda: jax.random.key_data(jax.random.PRNGKey(0))).shape
    abstract = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=abstract_params,
                          opt_state=abstract_opt_state,
                          rng=jax.ShapeDtypeStruct(key_shape, jnp.uint32))
    self.abstract_state = jax.tree_util.tree_map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
        self.state_shardings)

    data = partitioner.data_sharding
    self._init_jit = partitioner.partition(self._init_state, in_shardings=None,
                                           out_shardings=self.state_shardings)
    self._train_jit = partitioner.partition(
        self._train_step, in_shardings=(self.state_shardings, data),
        out_shardings=(self.state_shardings, replicated), donate_argnums=(0,))
    self._eval_jit = partitioner.partition(
        self._eval_step, in_shardings=(self.params_shardings, data), out_shardings=replicated)
    self._predict_jit = partitioner.partition(
        self._predict_step, in_shardings=(self.params_shardings, data),
        out_shardings=replicated)
    self._score_jit = partitioner.partition(
        self._score_step, in_shardings=(self.params_shardings, data), out_shardings=replicated)

  # -- pure functions -------------------------------------------------------------
  def _init_variables(self, rng):
    return flax.core.unfreeze(self.model.get_initial_variables(
        rng, self._init_shapes, _int_features(self._init_shapes)))

  def init_params(self, rng):
    """Freshly initialised parameters (host-side / unsharded; jit it for speed)."""
    return self._init_variables(rng)["params"]

  def _init_state(self, rng) -> TrainState:
    init_rng, dropout_rng = jax.random.split(rng)
    params = self._init_variables(init_rng)["params"]
    return TrainState(step=jnp.asarray(0, jnp.int32), params=params,
                      opt_state=self.tx.init(params),
                      rng=jax.random.key_data(dropout_rng).astype(jnp.uint32))

  def _train_step(self, state: TrainState, batch: Batch) -> Tuple[TrainState, Dict[str, Any]]:
    dropout_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    (loss, metrics), grads = self._loss_and_grads(state.params, batch, dropout_rng, state.step)
    grads = faults.poison_grads(grads, state.step)  # fault-injection tests only
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # Which parameters are non-finite; skip mode keeps the old state on a bad update.
    squares = reliability.grad_squares(grads)
    new_state, report = reliability.guard_update(
        loss, squares, state, state.replace(step=state.step + 1, params=params,
                                            opt_state=opt_state),
        skip=self.skip_nonfinite_steps)
    metrics = dict(metrics, **report)
    metrics["grad_norm"] = jnp.sqrt(jnp.sum(squares))
    if self.learning_rate_fn is not None:
      metrics["learning_rate"] = jnp.asarray(self.learning_rate_fn(state.step), jnp.float32)
    return new_state, metrics

  def _loss_and_grads(self, params, batch: Batch, dropout_rng, step):
    """`((loss, metrics), grads)`; frozen parameters are not differentiated.

    With frozen parameters the loss is differentiated with respect to the
    trainable ones only, so XLA never computes the frozen weights' gradients
    (for a frozen backbone: no weight-gradient matmuls in the backbone, and no
    backward pass below the lowest trainable parameter). Their entries in
    `grads` are zeros, which the optimizer (`optax.set_to_zero` on them)
    ignores and which count 0 in the reported `grad_norm` (the norm of the
    trainable gradients, the one gradient clipping sees).
    """
    loss_fn = faults.poison_loss_fn(self.model.loss_fn, step)
    if not self.frozen_paths:
      return jax.value_and_grad(loss_fn, has_aux=True)(params, batch, dropout_rng)
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
    frozen = {k: v for k, v in flat.items() if k in self.frozen_paths}
    trainable = {k: v for k, v in flat.items() if k not in self.frozen_paths}

    def trainable_loss_fn(trainable, batch, dropout_rng):
      merged = flax.traverse_util.unflatten_dict({**frozen, **trainable}, sep="/")
      return loss_fn(merged, batch, dropout_rng)

    out, trainable_grads = jax.value_and_grad(trainable_loss_fn, has_aux=True)(
        trainable, batch, dropout_rng)
    grads = flax.traverse_util.unflatten_dict(
        {**{k: jnp.zeros_like(v) for k, v in frozen.items()}, **trainable_grads}, sep="/")
    if isinstance(params, flax.core.FrozenDict):
      grads = flax.core.freeze(grads)
    return out, grads

  def _eval_step(self, params, batch: Batch) -> Dict[str, Any]:
    return self.model.eval_fn(params, batch)[1]

  def _predict_step(self, params, batch: Batch):
    tokens, aux = self.model.predict_batch_with_aux(params, batch)
    return tokens, aux["scores"]

  def _score_step(self, params, batch: Batch):
    return self.model.score_batch(params, batch)

  # -- sharded entry points ---------------------------------------------------------
  def init_state(self, rng: jax.Array) -> TrainState:
    return self._init_jit(rng)

  def state_from_params(self, params: Any, rng: jax.Array, step: int = 0) -> TrainState:
    """A fresh optimizer state around given (e.g. restored) params, placed on the mesh."""
    params = jax.device_put(params, self.params_shardings)
    init_opt = self.partitioner.partition(
        self.tx.init, in_shardings=(self.params_shardings,),
        out_shardings=self.state_shardings.opt_state)
    key = jax.random.key_data(jax.random.split(rng)[1]).astype(jnp.uint32)
    replicated = self.partitioner.replicated
    return TrainState(step=jax.device_put(jnp.asarray(step, jnp.int32), replicated),
                      params=params, opt_state=init_opt(params),
                      rng=jax.device_put(key, replicated))

  def train_step(self, state: TrainState, batch: Batch) -> Tuple[TrainState, Dict[str, Any]]:
    if not self.can_train:
      raise errors.ConfigError("the model has no optimizer_def: bind "
                               "models.EncoderDecoderModel.optimizer_def (OPTIMIZER) in gin.")
    return self._train_jit(state, batch)

  def eval_step(self, params: Any, batch: Batch) -> Dict[str, Any]:
    return self._eval_jit(params, batch)

  def predict_batch(self, params: Any, batch: Batch):
    return self._predict_jit(params, batch)

  def score_batch(self, params: Any, batch: Batch):
    return self._score_jit(params, batch)

  def abstract_train_step(self, batch_shapes: Optional[Mapping[str, Tuple[int, ...]]] = None):
    """`jax.eval_shape` of one train step on the abstract state (no allocation)."""
    shapes = batch_shapes or self.input_shapes
    batch = {k: jax.ShapeDtypeStruct(v, jnp.int32 if "weights" not in k else jnp.float32,
                                     sharding=self.partitioner.data_sharding)
             for k, v in shapes.items()}
    return self._train_jit.eval_shape(self.abstract_state, batch)


def batch_shapes(batch_size: int, feature_lengths: Mapping[str, int]) -> Dict[str, Tuple[int, int]]:
  """Shapes of the `EncDecFeatureConverter` (pack=False) features of a global batch."""
  le, ld = int(feature_lengths["inputs"]), int(feature_lengths["targets"])
  return {"encoder_input_tokens": (batch_size, le), "decoder_input_tokens": (batch_size, ld),
          "decoder_target_tokens": (batch_size, ld), "decoder_loss_weights": (batch_size, ld)}


def params_changed(before: Any, after: Any) -> Dict[str, bool]:
  """`{'a/b/kernel': changed?}` between two params trees (host arrays)."""
  flat_a = flax.traverse_util.flatten_dict(flax.core.unfreeze(before), sep="/")
  flat_b = flax.traverse_util.flatten_dict(flax.core.unfreeze(after), sep="/")
  return {k: not np.array_equal(np.asarray(flat_a[k]), np.asarray(flat_b[k])) for k in flat_a}

