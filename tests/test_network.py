"""The Transformer's t5x contract, HyperPrompt wiring and decoding."""
import functools
import itertools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperprompt_jax import models
from hyperprompt_jax import network
from hyperprompt_jax.conditioning import hyperprompt as hyperprompt_lib

import helpers
from conditioning import conditioning_testlib as lib

VARIANTS = ("none", "share", "sep", "global")
PLACEMENTS = ("encoder", "decoder", "both")


@pytest.mark.parametrize("variant,placement",
                         [("none", "both")] + list(itertools.product(VARIANTS[1:], PLACEMENTS)))
def test_cached_decoding_matches_full_forward(variant, placement):
  cfg = helpers.tiny_config(hyperprompt_variant=variant, hyperprompt_placement=placement)
  module, variables = helpers.init_params(cfg)
  batch = helpers.mixed_batch()
  full = helpers.forward(module, variables["params"], batch)
  cached, cache = helpers.cached_decode_logits(module, variables["params"], batch)
  valid = np.asarray(batch["decoder_target_tokens"] > 0)
  np.testing.assert_allclose(np.asarray(cached)[valid], np.asarray(full)[valid], atol=1e-5,
                             rtol=0)
  # The prompts sit in P columns in front of the decode positions of the self-attention
  # cache (exactly those of the conditioning cache).
  helpers.assert_decode_cache_layout(cache, batch["decoder_input_tokens"].shape[1],
                                     batch["encoder_input_tokens"].shape[1])
  if variant != "none" and placement != "encoder":
    assert helpers.flat(cache)[f"{network.DECODE_CACHE}/prefix_key"].shape[2] == cfg.prompt_length


def test_variant_none_is_vanilla_t5():
  vanilla = helpers.tiny_config(hyperprompt_variant="none")
  # HyperPrompt settings are inert when the variant is 'none'.
  disabled = helpers.tiny_config(hyperprompt_variant="none", prompt_length=9, num_tasks=2,
                                 prompt_bottleneck_dim=11)
  m1, v1 = helpers.init_params(vanilla)
  m2, v2 = helpers.init_params(disabled)
  f1, f2 = helpers.flat(v1["params"]), helpers.flat(v2["params"])
  assert f1.keys() == f2.keys()
  for k in f1:
    np.testing.assert_array_equal(f1[k], f2[k])
  batch = helpers.mixed_batch()
  np.testing.assert_array_equal(helpers.forward(m1, v1["params"], batch),
                                helpers.forward(m2, v2["params"], batch))
  # A HyperPrompt model holds the same backbone tree plus `hyperprompt/...`.
  _, v3 = helpers.init_params(helpers.tiny_config(hyperprompt_variant="global"))
  backbone = {k for k in helpers.flat(v3["params"]) if not k.startswith("hyperprompt/")}
  assert backbone == set(f1.keys())


def test_parameter_tree_uses_t5x_names():
  cfg = helpers.tiny_config(hyperprompt_variant="none")
  _, variables = helpers.init_params(cfg)
  shapes = {k: v.shape for k, v in helpers.flat(variables["params"]).items()}
  e, hd, f, v = cfg.emb_dim, cfg.num_heads * cfg.head_dim, cfg.mlp_dim, cfg.vocab_size
  expected = {
      "token_embedder/embedding": (v, e),
      "encoder/relpos_bias/rel_embedding": (cfg.num_heads, 32),
      "decoder/relpos_bias/rel_embedding": (cfg.num_heads, 32),
      "encoder/encoder_norm/scale": (e,),
      "decoder/decoder_norm/scale": (e,),
      "decoder/logits_dense/kernel": (e, v),
  }
  for i in range(cfg.num_encoder_layers):
    p = f"encoder/layers_{i}/"
    expected.update({
        p + "pre_attention_layer_norm/scale": (e,), p + "pre_mlp_layer_norm/scale": (e,),
        p + "attention/query/kernel": (e, hd), p + "attention/key/kernel": (e, hd),
        p + "attention/value/kernel": (e, hd), p + "attention/out/kernel": (hd, e),
        p + "mlp/wi_0/kernel": (e, f), p + "mlp/wi_1/kernel": (e, f), p + "mlp/wo/kernel": (f, e)})
  for i in range(cfg.num_decoder_layers):
    p = f"decoder/layers_{i}/"
    for norm in ("pre_self_attention", "pre_cross_attention", "pre_mlp"):
      expected[p + f"{norm}_layer_norm/scale"] = (e,)
    for att in ("self_attention", "encoder_decoder_attention"):
      for proj in ("query", "key", "value"):
        expected[p + f"{att}/{proj}/kernel"] = (e, hd)
      expected[p + f"{att}/out/kernel"] = (hd, e)
    expected.update({p + "mlp/wi_0/kernel": (e, f), p + "mlp/wi_1/kernel": (e, f),
                     p + "mlp/wo/kernel": (f, e)})
  assert shapes == expected


def test_t5_1_0_options_relu_and_tied_logits():
  cfg = helpers.tiny_config(mlp_activations=("relu",), logits_via_embedding=True)
  module, variables = helpers.init_params(cfg)
  flat = helpers.flat(variables["params"])
  assert "decoder/logits_dense/kernel" not in flat
  assert "encoder/layers_0/mlp/wi/kernel" in flat
  logits = helpers.forward(module, variables["params"], helpers.mixed_batch())
  assert logits.shape == (4, 6, cfg.vocab_size)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_has_logical_axes(variant):
  from hyperprompt_jax import partitioning
  _, variables = helpers.init_params(helpers.tiny_config(hyperprompt_variant=variant))
  params = helpers.flat(variables["params"])
  axes = {k[:-len("_axes")]: v.names for k, v in helpers.flat(variables["params_axes"]).items()}
  assert set(params) == set(axes)
  known = {name for name, _ in partitioning.standard_logical_axis_rules()}
  for name, names in axes.items():
    assert len(names) == params[name].ndim, name
    assert set(names) <= known, (name, names)
    assert set(names) <= set(partitioning.factor_rules()), (name, names)


@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_gradients_reach_every_hyperprompt_parameter(variant):
  cfg = helpers.tiny_config(hyperprompt_variant=variant)
  module, variables = helpers.init_params(cfg)
  model = models.EncoderDecoderModel(module)
  batch = helpers.mixed_batch(task_of_row=(0, 1, 2, 0))
  grads = jax.grad(lambda p: model.loss_fn(p, batch, None)[0])(variables["params"])
  flat = helpers.flat(grads["hyperprompt"])
  assert flat
  for name, g in flat.items():
    assert np.all(np.isfinite(g)), name
    if variant == "sep" or name.endswith(("task_embedding", "global_prompts")):
      # Per-task parameters: every task's slice gets gradient from its rows.
      for t in range(cfg.num_tasks):
        assert np.abs(np.asarray(g)[t]).sum() > 0, (name, t)
    else:
      assert np.abs(np.asarray(g)).sum() > 0, name


@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_tasks_get_different_prompts(variant):
  cfg = helpers.tiny_config(hyperprompt_variant=variant)
  module, variables = helpers.init_params(cfg)
  hp = hyperprompt_lib.HyperPrompt(config=cfg)
  keys, values = hp.apply({"params": variables["params"]["hyperprompt"]},
                          jnp.array([0, 1, 2, 0]), "encoder")
  assert keys.shape == (4, cfg.num_encoder_layers, cfg.prompt_length, cfg.num_heads,
                        cfg.head_dim)
  assert values.shape == keys.shape
  assert not np.allclose(keys[0], keys[1]) and not np.allclose(values[1], values[2])
  np.testing.assert_array_equal(keys[0], keys[3])
  # Layers differ too.
  assert not np.allclose(keys[0, 0], keys[0, 1])


def test_mixed_task_batch_equals_per_example_runs():
  cfg = helpers.tiny_config(hyperprompt_variant="global")
  module, variables = helpers.init_params(cfg)
  batch = helpers.mixed_batch(task_of_row=(2, 0, 1, 2))
  together = helpers.forward(module, variables["params"], batch)
  for i in range(4):
    alone = helpers.forward(module, variables["params"],
                            {k: v[i:i + 1] for k, v in batch.items()})
    np.testing.assert_allclose(together[i:i + 1], alone, atol=1e-5)
  # Changing only the task sentinel changes the output.
  swapped = dict(batch)
  swapped["encoder_input_tokens"] = batch["encoder_input_tokens"].at[:, 0].set(helpers.SENTINEL)
  assert not np.allclose(helpers.forward(module, variables["params"], swapped)[1:],
                         together[1:])


@pytest.mark.parametrize("variant,placement",
                         list(itertools.product(VARIANTS, PLACEMENTS)))
def test_parameter_count_matches_closed_form(variant, placement):
  cfg = helpers.tiny_config(hyperprompt_variant=variant, hyperprompt_placement=placement)
  _, with_hp = helpers.init_params(cfg)
  _, vanilla = helpers.init_params(helpers.tiny_config(hyperprompt_variant="none"))
  count = lambda t: sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(t))
  added = count(with_hp["params"]) - count(vanilla["params"])
  assert added == hyperprompt_lib.expected_num_params(cfg)
  no_bias = helpers.tiny_config(hyperprompt_variant=variant, hyperprompt_placement=placement,
                                hyperprompt_use_bias=False)
  _, nb = helpers.init_params(no_bias)
  assert count(nb["params"]) - count(vanilla["params"]) == hyperprompt_lib.expected_num_params(
      no_bias)


def test_bfloat16_batch_runs():
  cfg = helpers.tiny_config(dtype=jnp.bfloat16)
  module, variables = helpers.init_params(cfg)
  logits = helpers.forward(module, variables["params"], helpers.mixed_batch())
  assert np.all(np.isfinite(np.asarray(logits, np.float32)))
  encoded = module.apply(variables, helpers.mixed_batch()["encoder_input_tokens"],
                         enable_dropout=False, method=module.encode)
  assert encoded.dtype == jnp.bfloat16
  # Parameters stay float32.
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(variables["params"]))


def test_all_padding_example_is_finite():
  cfg = helpers.tiny_config()
  module, variables = helpers.init_params(cfg)
  batch = helpers.mixed_batch()
  batch = {k: v.at[1].set(0) for k, v in batch.items()}
  logits = helpers.forward(module, variables["params"], batch)
  assert np.all(np.isfinite(logits))
  model = models.EncoderDecoderModel(module)
  loss, _ = model.loss_fn(variables["params"], batch, None)
  assert np.isfinite(loss)


def test_init_with_float_ones_and_packed_inputs():
  """t5x initialises with float all-ones inputs, with packing features when packing is on."""
  cfg = helpers.tiny_config()
  module = network.Transformer(config=cfg)
  model = models.EncoderDecoderModel(module)
  shapes = {k: (2, 8) for k in ("encoder_input_tokens", "decoder_input_tokens",
                                "encoder_segment_ids", "decoder_segment_ids",
                                "encoder_positions", "decoder_positions")}
  variables = model.get_initial_variables(jax.random.PRNGKey(0), shapes)
  assert "hyperprompt" in variables["params"]
  batch = helpers.mixed_batch(task_of_row=(0, 1), enc_len=8, dec_len=8)
  batch["encoder_segment_ids"] = jnp.array([[1] * 4 + [2] * 4, [1] * 8])
  batch["decoder_segment_ids"] = jnp.array([[1] * 4 + [2] * 4, [1] * 8])
  loss, _ = model.loss_fn(variables["params"], batch, None)
  assert np.isfinite(loss)


def test_dropout_changes_outputs_with_rng():
  cfg = helpers.tiny_config(dropout_rate=0.3)
  module, variables = helpers.init_params(cfg)
  batch = helpers.mixed_batch()
  run = lambda seed: module.apply(variables, batch["encoder_input_tokens"],
                                  batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                                  enable_dropout=True, rngs={"dropout": jax.random.PRNGKey(seed)})
  assert not np.allclose(run(0), run(1))
  np.testing.assert_array_equal(run(2), run(2))


def test_config_validation_names_the_field():
  with pytest.raises(ValueError, match="hyperprompt_variant"):
    network.validate_config(helpers.tiny_config(hyperprompt_variant="shared"))
  with pytest.raises(ValueError, match="hyperprompt_placement"):
    network.validate_config(helpers.tiny_config(hyperprompt_placement="cross"))
  with pytest.raises(ValueError, match="vocabulary"):
    network.validate_config(helpers.tiny_config(num_tasks=helpers.VOCAB + 5))


def test_greedy_decoding_matches_argmax_of_full_forward():
  cfg = helpers.tiny_config()
  module, variables = helpers.init_params(cfg)
  model = models.EncoderDecoderModel(module)
  batch = helpers.mixed_batch()
  tokens, aux = jax.jit(lambda p, b: model.predict_batch_with_aux(p, b))(variables["params"],
                                                                          batch)
  # Teacher-force the decoded tokens: each was the argmax given the previous ones.
  dec_in = jnp.concatenate([jnp.zeros((4, 1), jnp.int32), tokens[:, :-1]], axis=1)
  logits = helpers.forward(module, variables["params"],
                           dict(batch, decoder_input_tokens=dec_in,
                                decoder_target_tokens=jnp.ones_like(tokens)))
  argmax = np.asarray(jnp.argmax(logits, -1))
  tokens = np.asarray(tokens)
  for i in range(tokens.shape[0]):
    for j in range(tokens.shape[1]):
      if 1 in tokens[i, :j]:  # after EOS the decoder emits padding
        assert tokens[i, j] == 0
      else:
        assert tokens[i, j] == argmax[i, j], (i, j)
  assert aux["scores"].shape == (4,)


def test_one_hot_and_gathered_embeddings_agree():
  """`one_hot_embedding` changes the computation only: same tree, logits and gradients."""
  batch = helpers.mixed_batch()
  results = []
  for one_hot in (True, False):
    cfg = helpers.tiny_config(one_hot_embedding=one_hot)
    module, variables = helpers.init_params(cfg)
    model = models.EncoderDecoderModel(module)
    (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
        variables["params"], batch, None)
    results.append((helpers.forward(module, variables["params"], batch), loss,
                    helpers.flat(grads)))
  (logits_a, loss_a, grads_a), (logits_b, loss_b, grads_b) = results
  np.testing.assert_allclose(logits_a, logits_b, atol=1e-5, rtol=0)
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
  assert grads_a.keys() == grads_b.keys()
  for name in grads_a:
    np.testing.assert_allclose(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-5,
                               err_msg=name)


# Methods whose decoder conditioning is computed from parameters (hypernetworks, the
# reparametrisation MLP, gathered prefixes), cached once per decode call.
DECODE_CACHED = {
    "hyperprompt_share": dict(hyperprompt_variant="share"),
    "hyperprompt_sep": dict(hyperprompt_variant="sep"),
    "hyperprompt_global": dict(hyperprompt_variant="global"),
    "prefix_tuning": dict(conditioning="prefix_tuning", hyperprompt_variant="none",
                          prefix_length=3, prefix_reparam_hidden_dim=8),
    "hyperformer": dict(conditioning="hyperformer", hyperprompt_variant="none",
                        adapter_bottleneck_dim=3),
}


def _decode_with_step_params(module, init_params, cache_tokens, first_params, rest_params,
                             enc, dec_in):
  """Cached decoding: the cache initialised with `init_params`, the first step run with
  `first_params` and every later step with `rest_params`. `cache_tokens` None: the cache
  is made from `enc` by `init_decode_cache` (as `models.EncoderDecoderModel` does), else
  t5x's way from `cache_tokens` (`__call__` with `decode=True`)."""
  b, length = dec_in.shape
  ones = jnp.ones((b, length), jnp.int32)
  if cache_tokens is None:
    _, variables = module.apply({"params": init_params}, enc, ones, mutable=["cache"],
                                method=module.init_decode_cache)
  else:
    _, variables = module.apply({"params": init_params}, cache_tokens, ones, ones, decode=True,
                                enable_dropout=False, mutable=["cache"])
  encoded = module.apply({"params": init_params}, enc, enable_dropout=False, method=module.encode)

  def step(params, cache, tok):
    logits, new = module.apply({"params": params, "cache": cache}, encoded, enc, tok[:, None],
                               tok[:, None], enable_dropout=False, decode=True,
                               max_decode_length=length, mutable=["cache"],
                               method=module.decode)
    return new["cache"], logits[:, 0]

  cache, first = step(first_params, variables["cache"], dec_in[:, 0])
  _, rest = jax.lax.scan(lambda c, t: step(rest_params, c, t), cache, jnp.transpose(dec_in[:, 1:]))
  return jnp.concatenate([first[:, None], jnp.moveaxis(rest, 0, 1)], axis=1)


def _decode_case(module, params):
  """`(enc, dec_in, valid [B, Ld], full-forward logits, jitted _decode_with_step_params)`
  of the mixed batch."""
  batch = helpers.mixed_batch()
  valid = np.asarray(batch["decoder_target_tokens"] > 0)
  full = np.asarray(lib.forward_fn(module)(params, batch))
  run = helpers.fast_jit(functools.partial(_decode_with_step_params, module))
  return batch["encoder_input_tokens"], batch["decoder_input_tokens"], valid, full, run


@pytest.mark.parametrize("name", list(DECODE_CACHED))
def test_decode_steps_do_not_evaluate_the_conditioning(name):
  """The decoder's prompts / generated weights are computed once per decode call.

  Decode steps run with the method's parameters zeroed still give the full forward
  pass's logits when the cache was made from the real inputs (`init_decode_cache`, as
  `models.EncoderDecoderModel` does): no step evaluates the hypernetworks. With t5x's
  all-ones cache initialisation only the first step computes them.
  """
  cfg = helpers.tiny_config(**DECODE_CACHED[name])
  module, params = lib.random_model(cfg)
  method = cfg.conditioning
  zeroed = {**params, method: jax.tree_util.tree_map(jnp.zeros_like, params[method])}
  enc, dec_in, valid, full, run = _decode_case(module, params)
  ours = run(params, None, zeroed, zeroed, enc, dec_in)
  np.testing.assert_allclose(np.asarray(ours)[valid], full[valid], atol=1e-5, rtol=0)
  t5x_style = run(params, jnp.ones_like(enc), params, zeroed, enc, dec_in)
  np.testing.assert_allclose(np.asarray(t5x_style)[valid], full[valid], atol=1e-5, rtol=0)
  # Not vacuous: a step that has to compute them (the all-ones cache init holds another
  # task's) uses the zeroed parameters and gets other logits.
  recomputed = run(params, jnp.ones_like(enc), zeroed, zeroed, enc, dec_in)
  assert not np.allclose(np.asarray(recomputed)[valid], full[valid], atol=1e-3)


@pytest.mark.parametrize("variant", ["none", "global"])
def test_decode_steps_read_the_encoded_keys_and_values_from_the_cache(variant):
  """A cache made by `init_decode_cache` holds every decoder layer's cross-attention
  keys/values of the encoded inputs: steps run with those projections zeroed still give
  the full forward pass's logits. A cache made t5x's way holds none (its steps project
  the encoded inputs, so zeroing the projections changes the logits)."""
  cfg = helpers.tiny_config(hyperprompt_variant=variant)
  module, params = lib.random_model(cfg)
  flat = helpers.flat(params)
  zeroed = flax.traverse_util.unflatten_dict({
      tuple(k.split("/")): (jnp.zeros_like(v) if "encoder_decoder_attention/key/" in k or
                            "encoder_decoder_attention/value/" in k else v)
      for k, v in flat.items()})
  enc, dec_in, valid, full, run = _decode_case(module, params)
  ours = run(params, None, zeroed, zeroed, enc, dec_in)
  np.testing.assert_allclose(np.asarray(ours)[valid], full[valid], atol=1e-5, rtol=0)
  t5x_style = run(params, jnp.ones_like(enc), params, params, enc, dec_in)
  np.testing.assert_allclose(np.asarray(t5x_style)[valid], full[valid], atol=1e-5, rtol=0)
  t5x_zeroed = run(params, jnp.ones_like(enc), zeroed, zeroed, enc, dec_in)
  assert not np.allclose(np.asarray(t5x_zeroed)[valid], full[valid], atol=1e-3)


