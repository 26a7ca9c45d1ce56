# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Task-conditioning methods: one registry record per method, each plugged into one seam.

`T5Config.conditioning` selects the method (one gin switch); every method is a
module that maps per-example `task_ids [B]` to what its seam consumes, and its
parameters live under one top-level name of the parameter tree (the method's
name), so freezing regexes (`adapters/.*`) and the parameter report work:

| conditioning    | seam                                  | module                       |
|-----------------|---------------------------------------|------------------------------|
| 'none'          | (vanilla multi-task T5)               | -                            |
| 'hyperprompt'   | key/value prefix of self-attention    | hyperprompt.HyperPrompt      |
|                 | (`hyperprompt_variant='none'`: vanilla)|                              |
| 'prefix_tuning' | key/value prefix of self-attention    | prefix_tuning.PrefixTuning   |
| 'prompt_tuning' | input-embedding prompt                | prompt_tuning.PromptTuning   |
| 'adapters'      | residual adapter after a sub-layer    | adapters.Adapters            |
| 'hyperformer'   | residual adapter after a sub-layer    | hyperformer.HyperFormer      |

Seam contracts (`B` batch, `M` layers of one stack, `l` prompt/prefix length):
  * 'prefix':  `module(task_ids, stack)` -> `(keys, values)` each `[B, M, l, H, D]` or None.
  * 'input':   `module(task_ids)` -> `[B, l, E]` rows prepended to the encoder embeddings.
  * 'adapter': `module(task_ids, stack)` -> `{block: weights}` with `weights` a dict of
               `[B, M, ...]` arrays consumed by `adapters.apply_adapter`, or None.

Packed rows (several examples per row, `encoder_segment_ids` given): the network
calls a 'prefix' or 'adapter' module with `task_ids=None` and gets every task's
prefixes (`[1, M, T*l, H, D]`, masked per query by the network) or weights
(`[T, M, ...]`, picked per token); a method whose record sets `packing_refusal`
is refused with `pack=True` at configuration time (`data.check_model_and_tasks`).

The registry is the one place that knows the methods. A `Method` record holds
everything the rest of the library needs about one: the network builds
`record.module(config=cfg)` under `record.name` and feeds its seam; partitioning
adds its logical-axis and Adafactor factor rules; the checkpoint restore
initialises its parameters fresh when a backbone checkpoint lacks them; the
trainable preset 'conditioning', the parameter report and `preflight` read its
prefix and runtime fields; `export` asks it for the prompts it can precompute. A
new method is one module plus one `register(Method(...))` call, from any package
(see `tests/conditioning/test_registry.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from hyperprompt_jax import errors
from hyperprompt_jax.conditioning import adapters
from hyperprompt_jax.conditioning import hyperformer
from hyperprompt_jax.conditioning import hyperprompt
from hyperprompt_jax.conditioning import prefix_tuning
from hyperprompt_jax.conditioning import prompt_tuning

NONE = "none"
SEAM_NAMES = ("prefix", "input", "adapter")
FACTORS = ("row", "column", "batch", "none")
AxisRules = Tuple[Tuple[str, Optional[str]], ...]
# (prompt rows l, placement, prompted layers M') of prompts a method can precompute.
ExportedPrompts = Tuple[int, str, int]


def _no_checks(config: Any) -> None:
  del config


def _always(config: Any) -> bool:
  del config
  return True


@dataclasses.dataclass(frozen=True)
class Method:
  """Everything the library needs to know about one task-conditioning method.

  Attributes:
    name: the `T5Config.conditioning` value; also the top-level name of the
      method's parameters (`<name>/...`) and of its submodule of the network.
    seam: 'prefix', 'input' or 'adapter' (see the module docstring).
    module: a flax module class (or factory) built as `module(config=cfg)`.
    num_params: `config -> int`, the closed-form count of the parameters it adds.
    axis_rules: `(logical axis, mesh axis or None)` for the axes its parameters use
      beyond t5x's (they are replicated unless a rule says otherwise).
    factor_rules: `{logical axis: 'row' | 'column' | 'batch' | 'none'}`, the
      Adafactor factorisation of those axes.
    validate: `config -> None`, raises `errors.ConfigError` naming a bad field.
    exported_prompts: `config -> (l, placement, M')` when `export` can precompute
      its key/value prompts (the module then has `all_prompts(layers)`), else None.
    runtime_fields: T5Config fields it reads that do not change the trained model
      (initialisers): they may change between runs in one MODEL_DIR.
    is_active: `config -> bool`; False makes the network vanilla T5
      (HyperPrompt with `hyperprompt_variant='none'`).
    packing_refusal: why the method cannot condition packed rows (each segment
      on its own task), refused at configuration time with `pack=True`; None
      when it can (its module then accepts `task_ids=None`, see "Packed rows").
    decode_cache: keep the decoder's per-example conditioning in the decode cache,
      computed once per decode call (`network.Transformer._decoder_conditioning`);
      False recomputes it in every step (for methods that only gather parameters
      and whose per-example copy would be large, e.g. adapter weights).
  """
  name: str
  seam: str
  module: Callable[..., Any]
  num_params: Callable[[Any], int]
  axis_rules: AxisRules = ()
  factor_rules: Mapping[str, str] = dataclasses.field(default_factory=dict)
  validate: Callable[[Any], None] = _no_checks
  exported_prompts: Optional[Callable[[Any], Optional[ExportedPrompts]]] = None
  runtime_fields: Tuple[str, ...] = ()
  is_active: Callable[[Any], bool] = _always
  packing_refusal: Optional[str] = None
  decode_cache: bool = True


_METHODS: Dict[str, Method] = {}


def register(method: Method) -> Method:
  """Adds `method` to the registry (its name must be new); returns it."""
  if method.name == NONE or method.name in _METHODS:
    raise errors.ConfigError(f"conditioning method {method.name!r} is already registered.")
  if method.seam not in SEAM_NAMES:
    raise errors.ConfigError(f"method {method.name!r}: seam must be one of {SEAM_NAMES}, "
                             f"got {method.seam!r}.")
  rules = dict(axis_rules())
  for axis, mesh_axis in method.axis_rules:
    if rules.get(axis, mesh_axis) != mesh_axis:
      raise errors.ConfigError(f"method {method.name!r} maps axis {axis!r} to {mesh_axis!r}, "
                               f"another method to {rules[axis]!r}.")
  known = factor_rules()
  for axis, factor in method.factor_rules.items():
    if factor not in FACTORS or known.get(axis, factor) != factor:
      raise errors.ConfigError(f"method {method.name!r}: factor rule {axis!r}: {factor!r} is "
                               f"not one of {FACTORS} or disagrees with {known.get(axis)!r}.")
  missing = {a for a, _ in method.axis_rules} ^ set(method.factor_rules)
  if missing:
    raise errors.ConfigError(f"method {method.name!r}: axes {sorted(missing)} need both an "
                             "axis rule and a factor rule.")
  _METHODS[method.name] = method
  return method


def unregister(name: str) -> None:
  """Removes a registered method (for tests that register their own)."""
  _METHODS.pop(name, None)


def get(name: str) -> Method:
  if name not in _METHODS:
    raise errors.ConfigError(f"T5Config.conditioning must be one of {names()}, got {name!r}.")
  return _METHODS[name]


def names() -> Tuple[str, ...]:
  """Every valid `T5Config.conditioning` value: 'none' and the registered methods."""
  return (NONE,) + tuple(_METHODS)


def param_prefixes() -> Tuple[str, ...]:
  """Top-level parameter names of the conditioning modules (one per method)."""
  return tuple(_METHODS)


def param_patterns() -> Tuple[str, ...]:
  """Regexes of every conditioning parameter (`hyperprompt/.*`, ...)."""
  return tuple(rf"{prefix}/.*" for prefix in param_prefixes())


def axis_rules() -> List[Tuple[str, Optional[str]]]:
  """The logical-axis rules of every method's axes (each axis once)."""
  out: Dict[str, Optional[str]] = {}
  for method in _METHODS.values():
    for axis, mesh_axis in method.axis_rules:
      out.setdefault(axis, mesh_axis)
  return list(out.items())


def factor_rules() -> Dict[str, str]:
  """The Adafactor factor rules of every method's axes."""
  out: Dict[str, str] = {}
  for method in _METHODS.values():
    for axis, factor in method.factor_rules.items():
      out.setdefault(axis, factor)
  return out


def runtime_fields() -> Tuple[str, ...]:
  """T5Config fields of the methods that do not change a trained model (initialisers)."""
  out: Dict[str, None] = {}
  for method in _METHODS.values():
    out.update(dict.fromkeys(method.runtime_fields))
  return tuple(out)


def active_method(config: Any) -> str:
  """The method that actually conditions the network ('none' for vanilla T5)."""
  if config.conditioning == NONE or not get(config.conditioning).is_active(config):
    return NONE
  return config.conditioning


def active(config: Any) -> Optional[Method]:
  """The record of the method that conditions the network, or None for vanilla T5."""
  method = active_method(config)
  return None if method == NONE else _METHODS[method]


def validate_config(config: Any) -> None:
  """Raises ConfigError naming the first inconsistent conditioning field of `config`."""
  if config.conditioning != NONE:
    get(config.conditioning)  # an unknown method names the registered ones
  if config.conditioning != "hyperprompt" and config.hyperprompt_variant != "none":
    raise errors.ConfigError(
        f"T5Config.hyperprompt_variant={config.hyperprompt_variant!r} only applies with "
        f"conditioning='hyperprompt', but conditioning={config.conditioning!r}; set "
        f"hyperprompt_variant='none' (do not combine two conditioning gin files).")
  if config.conditioning != NONE:
    get(config.conditioning).validate(config)


def expected_num_params(config: Any) -> int:
  """Closed-form count of the parameters the active method adds to T5 (biases included)."""
  method = active(config)
  return 0 if method is None else method.num_params(config)


# ---------------------------------------------------------------------------
# The methods of this project.
# ---------------------------------------------------------------------------

_INIT_FIELDS = ("prompt_init_stddev", "task_embed_init_stddev")
_PROMPT_AXES = {"tasks": "batch", "prompt_length": "none", "prompt_embed": "row"}


def _rules(factors: Mapping[str, str]) -> Tuple[AxisRules, Dict[str, str]]:
  """Replicated axis rules (these axes are small) and the factor rules of `factors`."""
  return tuple((axis, None) for axis in factors), dict(factors)


def _register(name, seam, module, num_params, factors, **kwargs) -> Method:
  axes, factor = _rules(factors)
  return register(Method(name=name, seam=seam, module=module, num_params=num_params,
                         axis_rules=axes, factor_rules=factor, **kwargs))


_register("hyperprompt", "prefix", hyperprompt.HyperPrompt, hyperprompt.expected_num_params,
          {**_PROMPT_AXES, "prompt_bottleneck": "column", "task_embed": "batch",
           "task_mlp": "none"},
          validate=hyperprompt.validate_config, is_active=hyperprompt.is_active,
          exported_prompts=hyperprompt.exported_prompts, runtime_fields=_INIT_FIELDS)
_register("prefix_tuning", "prefix", prefix_tuning.PrefixTuning,
          prefix_tuning.expected_num_params, {**_PROMPT_AXES, "prefix_mlp": "column"},
          validate=prefix_tuning.validate_config,
          exported_prompts=prefix_tuning.exported_prompts, runtime_fields=_INIT_FIELDS)
_register("prompt_tuning", "input", prompt_tuning.PromptTuning,
          prompt_tuning.expected_num_params, {"tasks": "batch", "prompt_length": "none"},
          validate=prompt_tuning.validate_config, runtime_fields=_INIT_FIELDS,
          packing_refusal=prompt_tuning.PACKING_REFUSAL)
_register("adapters", "adapter", adapters.Adapters, adapters.expected_num_params,
          {"tasks": "batch", "adapter_bottleneck": "column"},
          validate=adapters.validate_config, runtime_fields=("adapter_init_stddev",),
          decode_cache=False)
_register("hyperformer", "adapter", hyperformer.HyperFormer, hyperformer.expected_num_params,
          {"tasks": "batch", "task_embed": "batch", "task_mlp": "none",
           "adapter_bottleneck": "column", "adapter_blocks": "batch"},
          validate=hyperformer.validate_config,
          runtime_fields=_INIT_FIELDS + ("adapter_init_stddev",))
