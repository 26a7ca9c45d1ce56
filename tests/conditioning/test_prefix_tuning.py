"""Prefix-Tuning baseline: per-task, per-layer key/value prefixes (with/without MLP reparam)."""
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from hyperprompt_jax.conditioning import prefix_tuning

import conditioning_testlib as lib
import helpers

PLACEMENTS = ("encoder", "decoder", "both")


def _config(**kw):
  kw.setdefault("prefix_length", 3)
  kw.setdefault("prefix_reparam_hidden_dim", 10)
  return helpers.tiny_config(hyperprompt_variant="none", conditioning="prefix_tuning", **kw)


@pytest.mark.parametrize("reparam,placement", list(itertools.product((False, True), PLACEMENTS)))
def test_parameter_shapes_and_count_match_closed_form(reparam, placement):
  cfg = _config(prefix_reparam=reparam, prefix_placement=placement)
  shapes = lib.assert_param_count_matches_closed_form(cfg)
  t, l, d, e, h = cfg.num_tasks, cfg.prefix_length, 8, cfg.emb_dim, cfg.prefix_reparam_hidden_dim
  m = {"encoder": 2, "decoder": 2, "both": 4}[placement]
  if reparam:
    assert shapes == {
        "prefix_tuning/prefix_embedding": (t, l, e),
        "prefix_tuning/mlp_0/kernel": (e, h), "prefix_tuning/mlp_0/bias": (h,),
        "prefix_tuning/key_up/kernel": (m, h, d), "prefix_tuning/key_up/bias": (m, d),
        "prefix_tuning/value_up/kernel": (m, h, d), "prefix_tuning/value_up/bias": (m, d)}
  else:
    assert shapes == {"prefix_tuning/key_prefix": (t, m, l, d),
                      "prefix_tuning/value_prefix": (t, m, l, d)}


@pytest.mark.parametrize("reparam", (False, True))
def test_prefixes_per_example_shapes(reparam):
  cfg = _config(prefix_reparam=reparam, prefix_placement="decoder")
  _, params = lib.random_model(cfg)
  module = prefix_tuning.PrefixTuning(config=cfg)
  variables = {"params": params["prefix_tuning"]}
  ids = jnp.array([0, 1, 2, 1, 0])
  assert lib.fast_jit(lambda v, i: module.apply(v, i, "encoder"))(variables, ids) is None
  keys, values = lib.fast_jit(lambda v, i: module.apply(v, i, "decoder"))(variables, ids)
  assert keys.shape == values.shape == (5, cfg.num_decoder_layers, 3, cfg.num_heads,
                                        cfg.head_dim)
  np.testing.assert_array_equal(keys[1], keys[3])
  assert not np.allclose(keys[0], keys[1]) and not np.allclose(keys[0, 0], keys[0, 1])


@pytest.mark.parametrize("reparam", (False, True))
def test_gradients_reach_every_parameter(reparam):
  cfg = _config(prefix_reparam=reparam)
  per_task = ("key_prefix", "value_prefix", "prefix_embedding")
  lib.assert_gradients_reach_every_parameter(cfg, per_task_prefixes=per_task)


@pytest.mark.parametrize("reparam,placement", [(True, "both"), (False, "decoder")])
def test_cached_decoding_matches_full_forward(reparam, placement):
  lib.assert_cached_decoding_matches_full_forward(
      _config(prefix_reparam=reparam, prefix_placement=placement))


def test_tasks_are_routed_to_their_prefixes():
  lib.assert_tasks_are_routed(_config(prefix_reparam=False), ["key_prefix", "value_prefix"])
  lib.assert_mixed_batch_equals_single_rows(_config(prefix_reparam=True))
