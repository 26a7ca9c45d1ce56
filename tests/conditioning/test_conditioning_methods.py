"""The `T5Config.conditioning` switch: validation, gin files, logical axes, report prefixes."""
import jax.numpy as jnp
import numpy as np
import pytest

from hyperprompt_jax import conditioning
from hyperprompt_jax import network
from hyperprompt_jax import params as params_lib
from hyperprompt_jax import partitioning

import conditioning_testlib as lib
import helpers

BASELINES = ("prefix_tuning", "prompt_tuning", "adapters", "hyperformer")


def _config(method, **kw):
  return helpers.tiny_config(**{"hyperprompt_variant": "none", "conditioning": method, **kw})


@pytest.mark.parametrize("method", ("hyperprompt",) + BASELINES)
def test_every_parameter_has_logical_axes_with_rules(method):
  variables = lib.abstract_variables(
      _config(method, hyperprompt_variant="global" if method == "hyperprompt" else "none"))
  params = lib.flat(variables["params"])
  axes = {k[:-len("_axes")]: v.names for k, v in lib.flat(variables["params_axes"]).items()}
  assert set(params) == set(axes)
  known = {name for name, _ in partitioning.standard_logical_axis_rules()}
  assert any(k.startswith(method + "/") for k in params)
  for name, names in axes.items():
    assert len(names) == len(params[name].shape), name
    assert set(names) <= known, (name, names)
    assert set(names) <= set(partitioning.factor_rules()), (name, names)
    # The method's registry record carries the rules of every axis beyond t5x's.
    own = set(names) - set(partitioning.BACKBONE_FACTOR_RULES)
    record = conditioning.get(method)
    assert own <= {a for a, _ in record.axis_rules} == set(record.factor_rules), (name, own)


@pytest.mark.parametrize("method", BASELINES)
def test_gin_file_selects_the_method(method):
  cfg = params_lib.config_from_gin(["models/t5_1_1/tiny.gin", f"conditioning/{method}.gin"],
                                   ["NUM_TASKS = 3", "network.T5Config.vocab_size = 64",
                                    "TASK_SENTINEL_ID = 63"])
  assert cfg.conditioning == method and conditioning.active_method(cfg) == method
  network.validate_config(cfg)
  base, added = params_lib.count(cfg)
  assert added == conditioning.expected_num_params(cfg) > 0
  assert base == params_lib.count(cfg.replace(conditioning="none"))[0]


def test_vanilla_switches_agree():
  """conditioning='none' and hyperprompt_variant='none' are the same vanilla T5."""
  cfg = helpers.tiny_config(hyperprompt_variant="none")
  for other in (cfg.replace(conditioning="none"), cfg):
    assert conditioning.active_method(other) == "none"
    assert conditioning.expected_num_params(other) == 0
  a = lib.flat(lib.abstract_variables(cfg)["params"])
  b = lib.flat(lib.abstract_variables(cfg.replace(conditioning="none"))["params"])
  assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
  assert not any(k.startswith(conditioning.param_prefixes()) for k in a)


def test_the_registry_knows_every_method():
  assert conditioning.names() == ("none", "hyperprompt") + BASELINES
  assert conditioning.param_prefixes() == conditioning.names()[1:]
  assert [conditioning.get(m).seam for m in conditioning.param_prefixes()] == [
      "prefix", "prefix", "input", "adapter", "adapter"]
  with pytest.raises(ValueError, match="must be one of"):
    network.validate_config(_config("prefix_tunning"))


@pytest.mark.parametrize("overrides,field", [
    (dict(conditioning="lora"), "T5Config.conditioning must be one of"),
    (dict(conditioning="adapters", hyperprompt_variant="global"), "hyperprompt_variant"),
    (dict(conditioning="prefix_tuning", prefix_placement="cross"), "prefix_placement"),
    (dict(conditioning="prefix_tuning", prefix_length=0), "prefix_length"),
    (dict(conditioning="prompt_tuning", soft_prompt_length=0), "soft_prompt_length"),
    (dict(conditioning="hyperformer", adapter_bottleneck_dim=0), "adapter_bottleneck_dim"),
    (dict(conditioning="adapters", adapter_blocks=()), "adapter_blocks"),
    (dict(conditioning="adapters", num_tasks=helpers.VOCAB + 5), "vocabulary"),
])
def test_config_validation_names_the_field(overrides, field):
  overrides.setdefault("hyperprompt_variant", "none")
  cfg = helpers.tiny_config(**overrides)
  with pytest.raises(ValueError, match=field):
    network.validate_config(cfg)
  # The network refuses it too, before creating anything.
  with pytest.raises(ValueError, match=field):
    lib.abstract_variables(cfg)


def test_bfloat16_activations_run_through_the_adapter_and_input_seams():
  """(The prefix seam's bfloat16 path is covered by test_network's HyperPrompt test.)"""
  batch = helpers.mixed_batch()
  for method in ("adapters", "prompt_tuning"):
    cfg = _config(method, dtype=jnp.bfloat16)
    module = network.Transformer(config=cfg)
    _, params = lib.random_model(_config(method))  # float32 params, bfloat16 activations
    logits = lib.forward_fn(module)(params, batch)
    assert np.all(np.isfinite(np.asarray(logits, np.float32))), method
