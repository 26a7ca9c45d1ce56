# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""optax optimizers for the launcher: Adafactor (T5's default), AdamW, schedules, freezing.

`create_optimizer(...)` returns an `OptimizerDef`: the optax transformation and
its learning-rate schedule (for logging). Gin binds it as the model's
`optimizer_def` (`gin/optimizers/*.gin`), as t5x binds `OPTIMIZER`.

Freezing follows prompt-tuning's `MultiOptimizer`: a parameter is trained iff
one of the `trainable` regexes `re.fullmatch`es its `/`-joined path
(`encoder/layers_0/attention/query/kernel`, `hyperprompt/task_embedding`);
all other parameters get a zero update and no optimizer state
(`optax.multi_transform` with `optax.set_to_zero`). Presets:

| trainable          | trains                                                          |
|--------------------|-----------------------------------------------------------------|
| 'all'              | every parameter                                                 |
| 'conditioning'     | the task-conditioning modules (`hyperprompt/...`, baselines)    |
| 'task_embeddings'  | only the task embeddings (`.../task_embedding`)                 |
| [regex, ...]       | the parameters the regexes select                               |

Gradient clipping (by global norm) sees only the trainable gradients.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import flax
import jax
import jax.numpy as jnp
import optax

from hyperprompt_jax import conditioning
from hyperprompt_jax import errors
from hyperprompt_jax.formats import scan as scan_lib

Schedule = Callable[[Any], Any]

ALL = (".*",)
# Presets of `trainable`, resolved when the optimizer is built ('conditioning': the
# parameters of every registered conditioning method).
TRAINABLE_PRESETS = {
    "all": lambda: ALL,
    "conditioning": conditioning.param_patterns,
    "task_embeddings": lambda: (r"(.*/)?task_embedding",),
}
TRAINABLE, FROZEN = "trainable", "frozen"


@dataclasses.dataclass(frozen=True)
class OptimizerDef:
  """What the trainer needs: the transformation, its schedule, the trainable regexes."""
  tx: optax.GradientTransformation
  learning_rate_fn: Schedule
  trainable_patterns: Tuple[str, ...] = (".*",)


def resolve_trainable(trainable: Union[str, Sequence[str]]) -> Tuple[str, ...]:
  """Regexes of a preset name or a list of regexes (each must compile)."""
  if isinstance(trainable, str):
    if trainable in TRAINABLE_PRESETS:
      return TRAINABLE_PRESETS[trainable]()
    raise errors.ConfigError(f"unknown trainable preset {trainable!r}; use one of "
                             f"{sorted(TRAINABLE_PRESETS)} or a list of parameter-path regexes.")
  patterns = tuple(trainable)
  if not patterns:
    raise errors.ConfigError("trainable regex list is empty: nothing would be trained.")
  for pattern in patterns:
    try:
      re.compile(pattern)
    except re.error as e:
      raise errors.ConfigError(f"trainable regex {pattern!r} does not compile: {e}") from None
  return patterns


def is_trainable(path: str, patterns: Sequence[str]) -> bool:
  return any(re.fullmatch(p, path) for p in patterns)


def match_any(regexes: Union[str, Sequence[str]]) -> Callable[[str, Any], bool]:
  """`filter_fn(path, value)` for `flax.traverse_util.ModelParamTraversal`.

  For t5x's `MultiOptimizer` (gin/t5x/train_conditioning_only.gin): True when one
  of the regexes (or a `TRAINABLE_PRESETS` name) fullmatches the parameter path,
  whose leading '/' is ignored, so the same regexes serve both launchers.
  """
  compiled = [re.compile(p) for p in resolve_trainable(regexes)]

  def filter_fn(path: str, unused_value: Any = None) -> bool:
    path = path.lstrip("/")
    return any(c.fullmatch(path) for c in compiled)

  return filter_fn


def param_labels(params: Any, patterns: Sequence[str]) -> Any:
  """Tree of 'trainable' / 'frozen' labels, same structure as `params`."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
  labels = {k: TRAINABLE if is_trainable(k, patterns) else FROZEN for k in flat}
  if TRAINABLE not in labels.values():
    raise errors.ConfigError(f"the trainable regexes {list(patterns)} match no parameter; "
                             f"parameters look like {sorted(flat)[:3]}.")
  out = flax.traverse_util.unflatten_dict(labels, sep="/")
  return flax.core.freeze(out) if isinstance(params, flax.core.FrozenDict) else out


def learning_rate_schedule(base_learning_rate: float = 1e-3, warmup_steps: int = 0,
                           decay: str = "constant", decay_steps: Optional[int] = None,
                           end_learning_rate: float = 0.0,
                           warmup_init_value: float = 0.0) -> Schedule:
  """Linear warm-up to `base_learning_rate`, then a decay, from optax schedules.

  Args:
    base_learning_rate: peak learning rate.
    warmup_steps: linear warm-up from `warmup_init_value` (0: none).
    decay: 'constant'; 'linear' or 'cosine' to `end_learning_rate` over
      `decay_steps`; 'rsqrt' (T5's inverse square root: constant for
      `decay_steps` steps, then `base * sqrt(decay_steps / s)`, s counted
      after the warm-up; t5x's 'constant * rsqrt_decay').
    decay_steps: length of the linear/cosine decay, or the rsqrt plateau.
    end_learning_rate: final value of the linear/cosine decay.
    warmup_init_value: learning rate at step 0 of the warm-up.
  """
  if base_learning_rate <= 0:
    raise errors.ConfigError(f"base_learning_rate must be > 0, got {base_learning_rate}.")
  if warmup_steps < 0:
    raise errors.ConfigError(f"warmup_steps must be >= 0, got {warmup_steps}.")
  if decay == "constant":
    after = optax.constant_schedule(base_learning_rate)
  elif decay in ("linear", "cosine"):
    if not decay_steps or decay_steps < 1:
      raise errors.ConfigError(f"decay={decay!r} needs decay_steps >= 1, got {decay_steps}.")
    if decay == "linear":
      after = optax.linear_schedule(base_learning_rate, end_learning_rate, decay_steps)
    else:
      after = optax.cosine_decay_schedule(base_learning_rate, decay_steps,
                                          alpha=end_learning_rate / base_learning_rate)
  elif decay == "rsqrt":
    if not decay_steps or decay_steps < 1:
      raise errors.ConfigError(f"decay='rsqrt' needs decay_steps >= 1 (the plateau), got "
                               f"{decay_steps}.")
    plateau = float(decay_steps)
    after = lambda step: base_learning_rate * jnp.sqrt(
        plateau / jnp.maximum(jnp.asarray(step, jnp.float32), plateau))
  else:
    raise errors.ConfigError(f"unknown decay {decay!r}; use 'constant', 'linear', 'cosine' or "
                             "'rsqrt'.")
  if not warmup_steps:
    return after
  warmup = optax.linear_schedule(warmup_init_value, base_learning_rate, warmup_steps)
  return optax.join_schedules([warmup, after], [warmup_steps])


def _stacked_groups(tree: Any) -> Dict[str, Any]:
  """`{'encoder/layers': subtree, 'decoder/layers': subtree, '': the rest}` (empty ones left out).

  The first two hold the stacked layer parameters of a scanned model (formats/scan.py).
  """
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), keep_empty_nodes=True)
  groups: Dict[str, Dict[Tuple[str, ...], Any]] = {}
  for key, leaf in flat.items():
    stacked = len(key) > 2 and key[0] in scan_lib.STACKS and key[1] == "layers"
    groups.setdefault("/".join(key[:2]) if stacked else "", {})[key] = leaf
  for name in [n for n in groups if n]:
    # Frozen layers (optax.multi_transform's masked leaves) have no arrays to map over.
    if not any(hasattr(leaf, "shape") for leaf in groups[name].values()):
      groups.setdefault("", {}).update(groups.pop(name))
  return {name: flax.traverse_util.unflatten_dict(group) for name, group in groups.items()}


def _merge_groups(groups: Mapping[str, Any]) -> Any:
  flat = {}
  for group in groups.values():
    flat.update(flax.traverse_util.flatten_dict(group, keep_empty_nodes=True))
  return flax.traverse_util.unflatten_dict(flat)


def per_layer(inner: optax.GradientTransformation, layers_axis: int = 1
              ) -> optax.GradientTransformation:
  """`inner` applied to each layer of the stacked parameters of a scanned model.

  The leaves under `encoder/layers/` and `decoder/layers/` (`T5Config.scan_layers`)
  carry every layer on axis `layers_axis` (`T5Config.param_scan_axis`); `inner` is
  `jax.vmap`ped over that axis, so its statistics (Adafactor's factored second
  moments, parameter scale and update clipping) are computed per layer, as for the
  unrolled model (t5x's Adafactor factor rule `'layers': FactorDim.BATCH`). Other
  leaves get `inner` as they are. A tree without stacked leaves (an unrolled
  model) gets exactly `inner`'s state and updates.
  """
  def check(name, group):
    sizes = {leaf.shape[layers_axis] if leaf.ndim > layers_axis else None: path
             for path, leaf in flax.traverse_util.flatten_dict(group).items()
             if hasattr(leaf, "shape")}
    if len(sizes) > 1 or None in sizes:
      raise errors.ConfigError(
          f"{name}: the stacked leaves {sorted('/'.join(p) for p in sizes.values())} do not "
          f"share a layer count on axis {layers_axis}; set optimizers.adafactor.layers_axis "
          f"to the model's T5Config.param_scan_axis.")

  def state_axes(group):
    """Where each state leaf of a stacked group keeps its layers: at `layers_axis`, as
    in the parameters (so a state leaf shaped like its parameter, or with one reduced
    axis, is sharded like it), or first for leaves of lower rank (step counts)."""
    one_layer = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape[:layers_axis] + x.shape[layers_axis + 1:],
                                       x.dtype), group)
    return jax.tree_util.tree_map(lambda x: min(layers_axis, x.ndim),
                                  jax.eval_shape(inner.init, one_layer))

  def init_fn(params):
    groups = _stacked_groups(params)
    if set(groups) <= {""}:
      return inner.init(params)
    state = {}
    for name, group in groups.items():
      if name:
        check(name, group)
        state[name] = jax.vmap(inner.init, in_axes=layers_axis,
                               out_axes=state_axes(group))(group)
      else:
        state[name] = inner.init(group)
    return state

  def update_fn(updates, state, params=None):
    groups = _stacked_groups(updates)
    if set(groups) <= {""}:
      return inner.update(updates, state, params)
    param_groups = _stacked_groups(params) if params is not None else {}
    out, new_state = {}, {}
    for name, group in groups.items():
      if name:
        axes = state_axes(group)
        update = jax.vmap(inner.update, in_axes=(layers_axis, axes, layers_axis),
                          out_axes=(layers_axis, axes))
      else:
        update = inner.update
      out[name], new_state[name] = update(group, state[name], param_groups.get(name))
    return _merge_groups(out), new_state

  return optax.GradientTransformation(init_fn, update_fn)


def adafactor(learning_rate: Union[float, Schedule], decay_rate: float = 0.8,
              clipping_threshold: Optional[float] = 1.0,
              multiply_by_parameter_scale: bool = True, min_dim_size_to_factor: int = 128,
              momentum: Optional[float] = None, weight_decay_rate: Optional[float] = None,
              eps: float = 1e-30, factored: bool = True, layers_axis: int = 1
              ) -> optax.GradientTransformation:
  """optax Adafactor with T5's defaults (those of t5x's `adafactor.Adafactor`).

  The stacked layer parameters of a scanned model are updated layer by layer
  (`per_layer`; `layers_axis` is the model's `T5Config.param_scan_axis`), so a
  scanned and an unrolled model take the same steps.
  """
  return per_layer(optax.adafactor(
      learning_rate=learning_rate, decay_rate=decay_rate, clipping_threshold=clipping_threshold,
      multiply_by_parameter_scale=multiply_by_parameter_scale,
      min_dim_size_to_factor=min_dim_size_to_factor, momentum=momentum,
      weight_decay_rate=weight_decay_rate, eps=eps, factored=factored), layers_axis)


def adamw(learning_rate: Union[float, Schedule], b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 0.0) -> optax.GradientTransformation:
  """optax AdamW (decoupled weight decay)."""
  return optax.adamw(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps,
                     weight_decay=weight_decay)


def create_optimizer(base_optimizer: Callable[..., optax.GradientTransformation] = adafactor,
                     learning_rate: Union[float, Schedule, None] = None,
                     grad_clip_norm: Optional[float] = None,
                     trainable: Union[str, Sequence[str]] = "all") -> OptimizerDef:
  """The launcher's optimizer: `base_optimizer(learning_rate=...)`, clipping, freezing.

  Args:
    base_optimizer: `adafactor`, `adamw` or any `learning_rate -> optax` callable.
    learning_rate: a float, an optax schedule, or None for `learning_rate_schedule()`
      (gin-configurable).
    grad_clip_norm: clip the trainable gradients to this global norm (None: no
      clipping).
    trainable: a `TRAINABLE_PRESETS` name or a list of parameter-path regexes.
  """
  if learning_rate is None:
    learning_rate = learning_rate_schedule()
  schedule = learning_rate if callable(learning_rate) else optax.constant_schedule(
      float(learning_rate))
  patterns = resolve_trainable(trainable)
  parts = []
  if grad_clip_norm is not None:
    if grad_clip_norm <= 0:
      raise errors.ConfigError(f"grad_clip_norm must be > 0, got {grad_clip_norm}.")
    parts.append(optax.clip_by_global_norm(grad_clip_norm))
  parts.append(base_optimizer(learning_rate=schedule))
  tx = optax.chain(*parts) if len(parts) > 1 else parts[0]
  if patterns != ALL:
    tx = optax.multi_transform({TRAINABLE: tx, FROZEN: optax.set_to_zero()},
                               functools.partial(param_labels, patterns=patterns))
  return OptimizerDef(tx=tx, learning_rate_fn=schedule, trainable_patterns=patterns)
