"""Adapters baseline: per-task Houlsby bottlenecks after self-attention and feed-forward."""
import jax.numpy as jnp
import numpy as np
import pytest

from hyperprompt_jax import network
from hyperprompt_jax.conditioning import adapters

import conditioning_testlib as lib
import helpers


def _config(**kw):
  kw.setdefault("adapter_bottleneck_dim", 5)
  return helpers.tiny_config(hyperprompt_variant="none", conditioning="adapters", **kw)


@pytest.mark.parametrize("blocks", [("attention", "mlp"), ("mlp",)])
def test_parameter_shapes_and_count_match_closed_form(blocks):
  cfg = _config(adapter_blocks=blocks)
  shapes = lib.assert_param_count_matches_closed_form(cfg)
  t, e, b = cfg.num_tasks, cfg.emb_dim, 5
  expected = {}
  for stack, m in (("encoder", cfg.num_encoder_layers), ("decoder", cfg.num_decoder_layers)):
    for block in blocks:
      p = f"adapters/{stack}_{block}/"
      expected.update({p + "down/kernel": (t, m, e, b), p + "down/bias": (t, m, b),
                       p + "up/kernel": (t, m, b, e), p + "up/bias": (t, m, e)})
  assert shapes == expected


def test_adapter_weights_per_example_shapes_and_apply():
  cfg = _config()
  _, params = lib.random_model(cfg)
  weights = adapters.Adapters(config=cfg).apply({"params": params["adapters"]},
                                                jnp.array([1, 0, 1]), "decoder")
  assert set(weights) == {"attention", "mlp"}
  w = weights["mlp"]
  assert w["down_kernel"].shape == (3, cfg.num_decoder_layers, cfg.emb_dim, 5)
  assert w["up_bias"].shape == (3, cfg.num_decoder_layers, cfg.emb_dim)
  np.testing.assert_array_equal(w["down_kernel"][0], w["down_kernel"][2])
  # apply_adapter is x + U act(D x + d) + u, per example.
  layer = {k: v[:, 1] for k, v in w.items()}
  x = jnp.asarray(np.random.RandomState(0).randn(3, 7, cfg.emb_dim), jnp.float32)
  y = adapters.apply_adapter(x, layer, activation="relu")
  ref = x + np.einsum("blf,bfe->ble", np.maximum(
      np.einsum("ble,bef->blf", x, layer["down_kernel"]) + layer["down_bias"][:, None], 0),
                      layer["up_kernel"]) + layer["up_bias"][:, None]
  np.testing.assert_allclose(y, ref, atol=1e-5)


def test_zero_up_projection_is_exactly_vanilla_t5():
  """The seam is a pure residual: with U = 0, u = 0 the model is the vanilla backbone."""
  lib.assert_zeroed_leaves_give_vanilla(_config(), "adapters", lambda k: "/up/" in k)


def test_gradients_reach_every_parameter():
  lib.assert_gradients_reach_every_parameter(_config(), per_task_prefixes=("",))


def test_cached_decoding_matches_full_forward():
  lib.assert_cached_decoding_matches_full_forward(_config())


def test_tasks_are_routed_to_their_adapters():
  cfg = _config()
  leaves = [k for k in lib.flat(lib.abstract_variables(cfg)["params"]["adapters"])]
  lib.assert_tasks_are_routed(cfg, leaves)


def test_unknown_activation_and_blocks_are_rejected():
  with pytest.raises(ValueError, match="adapter_activation"):
    network.validate_config(_config(adapter_activation="gelu_new"))
  with pytest.raises(ValueError, match="adapter_blocks"):
    network.validate_config(_config(adapter_blocks=("cross_attention",)))
