"""Pod-scale options of the network: `remat_policy` and `scan_layers` (issue 14)."""
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hyperprompt_jax import errors
from hyperprompt_jax import models
from hyperprompt_jax import network
from hyperprompt_jax import optimizers
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


# (remat_policy, scan_layers) compared with ('none', unrolled): every combination for
# HyperPrompt-Global (the prefix seam); for a method of each other seam (input, adapter:
# the methods differ only in what they feed their seam) the one that wraps the seam's
# per-layer inputs in both. Compiles dominate the test's time.
REMAT_VARIANTS = {
    "hyperprompt_global": (("minimal", False), ("full", False), ("none", True),
                           ("minimal", True), ("full", True)),
    "prompt_tuning": (("full", True),),
    "adapters": (("full", True),),
    "hyperformer": (("minimal", True),),
}


@pytest.mark.parametrize("method", list(REMAT_VARIANTS))
def test_remat_policies_and_scan_give_the_same_loss_and_gradients(method):
  config = _config(method)
  _, params = lib.random_model(config)
  batch = helpers.mixed_batch()
  variants = REMAT_VARIANTS[method]
  configs = [config] + [config.replace(remat_policy=p, scan_layers=s) for p, s in variants]
  inputs = [params if not c.scan_layers else scan_lib.stack_layers(params, axis=1)
            for c in configs]
  grad_fns = []
  for c, p in zip(configs, inputs):
    # Rematerialisation leaves the parameter tree as it is.
    assert helpers.flat(lib.abstract_variables(c)["params"]).keys() == helpers.flat(p).keys()
    model = models.EncoderDecoderModel(network.Transformer(config=c))
    grad_fns.append(jax.value_and_grad(functools.partial(
        lambda m, p: m.loss_fn(p, batch, None)[0], model)))
    # One checkpointed layer per layer (unrolled) or per scanned stack.
    jaxpr = str(jax.make_jaxpr(grad_fns[-1])(p))
    want = 0 if c.remat_policy == "none" else (
        2 if c.scan_layers else config.num_encoder_layers + config.num_decoder_layers)
    assert jaxpr.count("remat") == want, (c.remat_policy, c.scan_layers)
  results = helpers.fast_jit(lambda ps: [f(p) for f, p in zip(grad_fns, ps)])(inputs)
  loss, grads = results[0]
  for (policy, scanned), (other_loss, other_grads) in zip(variants, results[1:]):
    np.testing.assert_allclose(other_loss, loss, rtol=1e-6, err_msg=f"{policy} {scanned}")
    if scanned:
      other_grads = scan_lib.unstack_layers(other_grads, axis=1)
    _assert_trees_close(other_grads, grads, atol=1e-5)


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


# Every method, HyperPrompt variant and placement (small baseline widths: one compile each).
_SMALL = dict(prefix_length=3, prefix_reparam_hidden_dim=8, soft_prompt_length=2,
              adapter_bottleneck_dim=4)
DECODING_CASES = {
    "vanilla": dict(hyperprompt_variant="none"),
    **{f"hyperprompt_{v}_{p}": dict(hyperprompt_variant=v, hyperprompt_placement=p)
       for v in ("share", "sep", "global") for p in ("encoder", "decoder", "both")},
    **{f"prefix_tuning_{p}": dict(_SMALL, conditioning="prefix_tuning", hyperprompt_variant="none",
                                  prefix_placement=p, prefix_reparam=p != "both")
       for p in ("encoder", "decoder", "both")},
    "prompt_tuning": dict(_SMALL, conditioning="prompt_tuning", hyperprompt_variant="none"),
    "adapters": dict(_SMALL, conditioning="adapters", hyperprompt_variant="none"),
    "adapters_mlp": dict(_SMALL, conditioning="adapters", hyperprompt_variant="none",
                         adapter_blocks=("mlp",)),
    "hyperformer": dict(_SMALL, conditioning="hyperformer", hyperprompt_variant="none"),
}


@pytest.mark.parametrize("case", list(DECODING_CASES))
def test_scanned_cached_decoding_matches_the_unrolled_full_forward(case):
  config = helpers.tiny_config(**DECODING_CASES[case])
  module, params = lib.random_model(config)
  scanned, scanned_params = _scanned_twin(config)
  batch = helpers.mixed_batch()
  decode = helpers.cached_decode_fn(scanned)

  def both(params, scanned_params, batch):  # one program: one compile per case
    return helpers.forward(module, params, batch), decode(
        scanned_params, batch["encoder_input_tokens"], batch["decoder_input_tokens"])

  full, (cached, cache) = helpers.fast_jit(both)(params, scanned_params, batch)
  valid = np.asarray(batch["decoder_target_tokens"] > 0)
  np.testing.assert_allclose(np.asarray(cached)[valid], np.asarray(full)[valid], atol=1e-5,
                             rtol=0)
  # The cache is stacked on a leading layer axis.
  assert helpers.flat(cache)
  for path, value in helpers.flat(cache).items():
    assert path.startswith(("decoder/layers/", network.DECODE_CACHE + "/")), path
    assert value.shape[0] == config.num_decoder_layers, path
    if path.endswith("cached_key"):
      assert value.shape[1:4] == (4, config.num_heads, config.head_dim), path
  helpers.assert_decode_cache_layout(
      cache, batch["decoder_input_tokens"].shape[1],
      helpers.encoded_length(config, batch["encoder_input_tokens"].shape[1]), layer_axis=True)


def test_transformer_tells_t5x_it_is_scanned():
  """t5x's models decode with `cache_offset=1` when `module.scan_layers` is true."""
  assert network.Transformer(config=_config("vanilla", scan_layers=True)).scan_layers
  assert not network.Transformer(config=_config("vanilla")).scan_layers


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


def test_adafactor_updates_stacked_layers_as_the_unrolled_ones():
  """One Adafactor step of a scanned model = the unrolled model's step, stacked: second
  moments are factored, parameters scaled and updates clipped per layer (t5x's
  `'layers': FactorDim.BATCH`), for either `param_scan_axis`."""
  config = _config("vanilla")
  _, params = lib.random_model(config)
  _, grads = _loss_and_grads(config, params, helpers.mixed_batch())
  grads = jax.tree_util.tree_map(lambda g: 10.0 * g, grads)  # so that clipping acts
  # Factor every leaf with two axes >= 4 (T5's 128 leaves the tiny model unfactored).
  kwargs = dict(learning_rate=0.1, min_dim_size_to_factor=4)
  plain = optax.adafactor(learning_rate=0.1, decay_rate=0.8, min_dim_size_to_factor=4)
  txs = {axis: optimizers.adafactor(layers_axis=axis, **kwargs) for axis in (0, 1)}

  def steps(grads, params):  # one program
    out = {"ours": txs[1].update(grads, txs[1].init(params), params)[0],
           "optax": plain.update(grads, plain.init(params), params)[0]}
    for axis, tx in txs.items():
      g, p = scan_lib.stack_layers(grads, axis=axis), scan_lib.stack_layers(params, axis=axis)
      out[f"stacked_{axis}"] = tx.update(g, tx.init(p), p)[0]
      out[f"optax_stacked_{axis}"] = plain.update(g, plain.init(p), p)[0]
    return out

  out = helpers.fast_jit(steps)(grads, params)
  # Unrolled: exactly optax's Adafactor (state and update).
  state = txs[1].init(params)
  assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(plain.init(params))
  assert [v for v in jax.tree_util.tree_leaves(state) if np.ndim(v) == 1 and v.size > 1]
  _assert_trees_close(out["ours"], out["optax"], atol=0)
  kernel = ("encoder", "layers_0", "mlp", "wi_0", "kernel")
  for axis in (0, 1):
    _assert_trees_close(scan_lib.unstack_layers(out[f"stacked_{axis}"], axis=axis), out["ours"],
                        atol=1e-6)
    # optax's Adafactor alone scales and clips over the whole stack: another step.
    whole = scan_lib.unstack_layers(out[f"optax_stacked_{axis}"], axis=axis)
    assert not np.allclose(np.asarray(functools.reduce(lambda t, k: t[k], kernel, whole)),
                           np.asarray(functools.reduce(lambda t, k: t[k], kernel, out["ours"])),
                           atol=1e-6)
  # The wrong axis is refused by name.
  with pytest.raises(errors.ConfigError, match="layers_axis"):
    jax.eval_shape(txs[0].init, scan_lib.stack_layers(params, axis=1))


def test_adafactor_state_of_stacked_layers_keeps_the_layers_axis_where_the_params_do():
  """Full-size statistics are shaped like their stacked parameter and factored ones drop
  one of its axes, so the partitioner shards them like the parameter."""
  params = scan_lib.stack_layers(lib.random_model(_config("vanilla"))[1], axis=1)
  tx = optimizers.adafactor(learning_rate=0.1, min_dim_size_to_factor=4, momentum=0.9)
  state = jax.eval_shape(tx.init, params)
  kernel = params["encoder"]["layers"]["mlp"]["wi_0"]["kernel"].shape  # [E, layers, F]
  shapes = {tuple(x.shape) for x in jax.tree_util.tree_leaves(state["encoder/layers"])}
  assert kernel in shapes  # the momentum
  assert kernel[:2] in shapes  # v_row: [E, layers]
