"""Pod-scale options of the network: `remat_policy` and `scan_layers` (issue 14)."""
import jax
import numpy as np
import pytest

from hyperprompt_jax import errors
from hyperprompt_jax import models
from hyperprompt_jax import network

import helpers
from conditioning import conditioning_testlib as lib

# (conditioning, hyperprompt_variant) of every seam: vanilla, the prefix seam
# (HyperPrompt-Global, Prefix-Tuning), the input seam and the adapter seam.
METHODS = {
    "vanilla": ("none", "none"),
    "hyperprompt_global": ("hyperprompt", "global"),
    "prefix_tuning": ("prefix_tuning", "none"),
    "prompt_tuning": ("prompt_tuning", "none"),
    "adapters": ("adapters", "none"),
    "hyperformer": ("hyperformer", "none"),
}


def _config(method, **overrides):
  conditioning, variant = METHODS[method]
  return helpers.tiny_config(conditioning=conditioning, hyperprompt_variant=variant,
                             **overrides)


def _loss_and_grads(config, params, batch):
  model = models.EncoderDecoderModel(network.Transformer(config=config))
  return helpers.fast_jit(jax.value_and_grad(lambda p: model.loss_fn(p, batch, None)[0]))(params)


def _assert_trees_close(a, b, atol):
  a, b = helpers.flat(a), helpers.flat(b)
  assert set(a) == set(b)
  for name in a:
    np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), atol=atol, rtol=1e-5,
                               err_msg=name)


@pytest.mark.parametrize("method", ["vanilla", "hyperprompt_global", "adapters"])
def test_remat_policies_give_the_same_loss_and_gradients(method):
  config = _config(method)
  _, params = lib.random_model(config)
  batch = helpers.mixed_batch()
  loss, grads = _loss_and_grads(config, params, batch)
  for policy in ("minimal", "full"):
    remat = config.replace(remat_policy=policy)
    # Rematerialisation leaves the parameter tree as it is.
    assert helpers.flat(lib.abstract_variables(remat)["params"]).keys() == helpers.flat(
        params).keys()
    model = models.EncoderDecoderModel(network.Transformer(config=remat))
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: model.loss_fn(p, batch, None)[0]))(params))
    assert jaxpr.count("remat") == config.num_encoder_layers + config.num_decoder_layers
    remat_loss, remat_grads = _loss_and_grads(remat, params, batch)
    np.testing.assert_allclose(remat_loss, loss, rtol=1e-6)
    _assert_trees_close(remat_grads, grads, atol=1e-5)


def test_bad_remat_policy_and_scan_axis_are_refused():
  for overrides, field in (({"remat_policy": "dots"}, "remat_policy"),
                           ({"param_scan_axis": 2}, "param_scan_axis")):
    module = network.Transformer(config=helpers.tiny_config(**overrides))
    with pytest.raises(errors.ConfigError, match=field):
      lib.abstract_variables(module.config)
