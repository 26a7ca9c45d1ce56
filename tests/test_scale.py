"""Pod-scale options of the network: `remat_policy` and `scan_layers` (issue 14)."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperprompt_jax import errors
from hyperprompt_jax import models
from hyperprompt_jax import network
from hyperprompt_jax import partitioning
from hyperprompt_jax.formats import hf as hf_lib
from hyperprompt_jax.formats import restore as restore_lib
from hyperprompt_jax.formats import scan as scan_lib
from hyperprompt_jax.formats import t5x as t5x_lib

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


def _scanned_twin(config, axis=1):
  """(scanned module, params): `config`'s random unrolled params stacked on the layer axis."""
  _, params = lib.random_model(config)
  scanned = config.replace(scan_layers=True, param_scan_axis=axis)
  return network.Transformer(config=scanned), scan_lib.stack_layers(params, axis=axis)


@pytest.mark.parametrize("axis", [0, 1])
def test_scanned_tree_is_the_stacked_unrolled_tree_with_a_layers_axis(axis):
  for method in METHODS:
    config = _config(method)
    unrolled = lib.abstract_variables(config)["params"]
    scanned = lib.abstract_variables(config.replace(scan_layers=True, param_scan_axis=axis))
    expected = helpers.flat(scan_lib.stack_layers(unrolled, axis=axis))
    got = helpers.flat(scanned["params"])
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in expected.items()}
    assert not scan_lib.is_unrolled(list(got)) and scan_lib.is_scanned(list(got))
    for name, names in helpers.flat(scanned["params_axes"]).items():
      name = name[:-len("_axes")]
      stacked = name.split("/")[1] == "layers" and name.split("/")[0] in scan_lib.STACKS
      if stacked:
        assert names.names[axis] == "layers", (method, name, names.names)
      elif name.split("/")[0] in scan_lib.STACKS:
        assert "layers" not in names.names, (method, name, names.names)
  rules = dict(partitioning.standard_logical_axis_rules())
  assert rules["layers"] is None and partitioning.factor_rules()["layers"] == "batch"


@pytest.mark.parametrize("method", list(METHODS))
def test_scanned_cached_decoding_matches_the_unrolled_full_forward(method):
  config = _config(method)
  module, params = lib.random_model(config)
  batch = helpers.mixed_batch()
  full = np.asarray(lib.forward_fn(module)(params, batch))
  scanned, scanned_params = _scanned_twin(config)
  cached, cache = helpers.cached_decode_logits(scanned, scanned_params, batch)
  valid = np.asarray(batch["decoder_target_tokens"] > 0)
  np.testing.assert_allclose(np.asarray(cached)[valid], full[valid], atol=1e-5, rtol=0)
  # The cache is stacked on a leading layer axis; only decoded tokens are cached.
  for path, value in helpers.flat(cache).items():
    assert path.startswith(("decoder/layers/", network.DECODE_CACHE + "/")), path
    assert value.shape[0] == config.num_decoder_layers, path
    if path.endswith("cached_key"):
      assert value.shape[1:] == (4, config.num_heads, config.head_dim, 6), path


def test_t5x_beam_expansion_of_the_scanned_cache_at_cache_offset_1():
  """t5x's decoding, for a module with `scan_layers`, repeats every cache leaf but
  `cache_index` along axis `cache_offset=1` (`flat_batch_beam_expand`); decoding
  from that expanded cache gives every beam the unexpanded row's logits."""
  config = _config("hyperprompt_global")
  module, params = lib.random_model(config)
  batch = helpers.mixed_batch()
  full = np.asarray(lib.forward_fn(module)(params, batch))
  scanned, scanned_params = _scanned_twin(config)
  beams, cache_offset = 2, 1

  @helpers.fast_jit
  def run(params, enc, dec_in):
    b, length = dec_in.shape
    _, init = scanned.apply({"params": params}, jnp.ones_like(enc), jnp.ones((b, length), jnp.int32),
                            jnp.ones((b, length), jnp.int32), decode=True, enable_dropout=False,
                            mutable=["cache"])
    cache = flax.traverse_util.path_aware_map(
        lambda path, x: x if path[-1] == "cache_index" else jnp.repeat(x, beams, cache_offset),
        flax.core.unfreeze(init["cache"]))
    enc = jnp.repeat(enc, beams, 0)
    encoded = scanned.apply({"params": params}, enc, enable_dropout=False,
                            method=scanned.encode)

    def step(cache, tok):
      logits, new = scanned.apply({"params": params, "cache": cache}, encoded, enc, tok[:, None],
                                  tok[:, None], enable_dropout=False, decode=True,
                                  max_decode_length=length, mutable=["cache"],
                                  method=scanned.decode)
      return new["cache"], logits[:, 0]

    _, logits = jax.lax.scan(step, cache, jnp.transpose(jnp.repeat(dec_in, beams, 0)))
    return jnp.transpose(logits, (1, 0, 2))

  logits = np.asarray(run(scanned_params, batch["encoder_input_tokens"],
                          batch["decoder_input_tokens"]))
  valid = np.asarray(batch["decoder_target_tokens"] > 0)
  for beam in range(beams):
    np.testing.assert_allclose(logits[beam::beams][valid], full[valid], atol=1e-5, rtol=0)


def test_stack_then_unstack_is_the_identity():
  _, params = lib.random_model(_config("adapters"))
  for axis in (0, 1):
    back = helpers.flat(scan_lib.unstack_layers(scan_lib.stack_layers(params, axis=axis),
                                                axis=axis))
    want = helpers.flat(params)
    assert back.keys() == want.keys()
    for k in want:
      np.testing.assert_array_equal(np.asarray(back[k]), np.asarray(want[k]), err_msg=k)


def test_one_checkpoint_restores_scanned_and_unrolled_with_the_same_logits_and_gradients(
    tmp_path):
  config = _config("hyperprompt_global")
  _, params = lib.random_model(config)
  t5x_lib.save_orbax_checkpoint(str(tmp_path / "unrolled"), params)
  scanned_config = config.replace(scan_layers=True)
  scanned = restore_lib.restore_params(str(tmp_path / "unrolled"), scanned_config)
  assert scan_lib.is_scanned(list(helpers.flat(scanned)))
  # ... and a scanned checkpoint restores into the unrolled model.
  t5x_lib.save_orbax_checkpoint(str(tmp_path / "scanned"), scanned)
  unrolled = restore_lib.restore_params(str(tmp_path / "scanned"), config)
  _assert_trees_close(unrolled, params, atol=0)
  batch = helpers.mixed_batch()
  loss, grads = _loss_and_grads(config, params, batch)
  scanned_loss, scanned_grads = _loss_and_grads(scanned_config, scanned, batch)
  np.testing.assert_allclose(scanned_loss, loss, rtol=1e-6)
  _assert_trees_close(scan_lib.unstack_layers(scanned_grads, axis=1), grads, atol=1e-5)
  scanned_logits = lib.forward_fn(network.Transformer(config=scanned_config))(scanned, batch)
  np.testing.assert_allclose(scanned_logits, lib.forward_fn(network.Transformer(config=config))(
      params, batch), atol=1e-5, rtol=0)


def test_hugging_face_export_of_a_scanned_run_writes_the_unrolled_layers(tmp_path):
  config = _config("vanilla", vocab_size=helpers.VOCAB)
  _, params = lib.random_model(config)
  scanned_config = config.replace(scan_layers=True)
  hf_lib.save_hf_checkpoint(str(tmp_path), scan_lib.stack_layers(params, axis=1), scanned_config)
  loaded_config, loaded = hf_lib.load_hf_checkpoint(str(tmp_path))
  assert not loaded_config.scan_layers
  _assert_trees_close(loaded, params, atol=0)
