"""HyperPrompt module and the prefix path of attention, against numpy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperprompt_jax import layers
from hyperprompt_jax.conditioning import hyperprompt as hyperprompt_lib

import helpers


def _numpy_attention(q, k, v, mask, bias):
  """Reference: softmax(q k^T + bias, masked) v, per head. q [Lq,H,D], k/v [Lk,H,D]."""
  logits = np.einsum("qhd,khd->hqk", q, k) + bias
  logits = np.where(mask[None] > 0, logits, -1e10)
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w = w / w.sum(-1, keepdims=True)
  return np.einsum("hqk,khd->qhd", w, v)


def test_prefix_is_never_masked_and_has_zero_bias():
  rng = np.random.RandomState(0)
  b, lq, e, h, d, p = 2, 5, 8, 2, 4, 3
  x = rng.randn(b, lq, e).astype(np.float32)
  kp = rng.randn(b, p, h, d).astype(np.float32)
  vp = rng.randn(b, p, h, d).astype(np.float32)
  # Causal mask plus padding of the last two positions of row 1.
  tokens = np.array([[5, 5, 5, 5, 5], [5, 5, 5, 0, 0]])
  mask = layers.make_decoder_mask(jnp.asarray(tokens), jnp.float32)
  bias = rng.randn(1, h, lq, lq).astype(np.float32)
  att = layers.MultiHeadDotProductAttention(num_heads=h, head_dim=d)
  variables = att.init(jax.random.PRNGKey(0), x, x, mask, bias, key_prefix=kp, value_prefix=vp,
                       deterministic=True)
  out = att.apply(variables, x, x, mask, bias, key_prefix=kp, value_prefix=vp, deterministic=True)
  assert out.shape == (b, lq, e)  # queries (and output length) unchanged
  prm = variables["params"]
  for i in range(b):
    q = (x[i] @ prm["query"]["kernel"]).reshape(lq, h, d)
    k = (x[i] @ prm["key"]["kernel"]).reshape(lq, h, d)
    v = (x[i] @ prm["value"]["kernel"]).reshape(lq, h, d)
    k_all, v_all = np.concatenate([kp[i], k]), np.concatenate([vp[i], v])
    m = np.concatenate([np.ones((lq, p)), np.asarray(mask[i, 0])], axis=-1)
    bi = np.concatenate([np.zeros((h, lq, p)), bias[0]], axis=-1)
    ref = _numpy_attention(q, k_all, v_all, m, bi).reshape(lq, h * d) @ prm["out"]["kernel"]
    np.testing.assert_allclose(out[i], ref, atol=2e-5, rtol=1e-5)
  # A fully masked query row still attends to the prompts (finite, prompt-dependent).
  zero_mask = jnp.zeros_like(mask)
  out0 = att.apply(variables, x, x, zero_mask, None, key_prefix=kp, value_prefix=vp,
                   deterministic=True)
  out1 = att.apply(variables, x, x, zero_mask, None, key_prefix=kp, value_prefix=2 * vp,
                   deterministic=True)
  assert np.all(np.isfinite(out0)) and not np.allclose(out0, out1)


def test_prefix_requires_both_keys_and_values():
  x = jnp.ones((1, 2, 8))
  att = layers.MultiHeadDotProductAttention(num_heads=2, head_dim=4)
  with pytest.raises(ValueError, match="together"):
    att.init(jax.random.PRNGKey(0), x, x, key_prefix=jnp.ones((1, 1, 2, 4)))


@pytest.mark.parametrize("variant", ["share", "sep", "global"])
def test_generated_prompts_start_on_the_scale_of_keys(variant):
  cfg = helpers.tiny_config(hyperprompt_variant=variant, emb_dim=64, num_heads=4, head_dim=16,
                            prompt_length=8, prompt_bottleneck_dim=32, task_embed_dim=32,
                            layer_task_dim=32, task_hidden_dim=64)
  module, variables = helpers.init_params(cfg)
  hp = hyperprompt_lib.HyperPrompt(config=cfg)
  keys, values = hp.apply({"params": variables["params"]["hyperprompt"]}, jnp.arange(3),
                          "encoder")
  # Projected keys of a unit-RMS (layer-normed) input have RMS ~ 1 at init.
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 10, cfg.emb_dim))
  kernel = variables["params"]["encoder"]["layers_0"]["attention"]["key"]["kernel"]
  key_rms = float(jnp.sqrt(jnp.mean(jnp.square(x @ kernel))))
  for prompts in (keys, values):
    rms = float(jnp.sqrt(jnp.mean(jnp.square(prompts))))
    assert 0.3 * key_rms < rms < 3.0 * key_rms, (rms, key_rms)


def test_prompts_depend_only_on_task_and_layer():
  cfg = helpers.tiny_config(hyperprompt_variant="global", hyperprompt_placement="decoder")
  module, variables = helpers.init_params(cfg)
  hp = hyperprompt_lib.HyperPrompt(config=cfg)
  apply = lambda ids, stack: hp.apply({"params": variables["params"]["hyperprompt"]}, ids, stack)
  assert apply(jnp.array([0, 1]), "encoder") is None  # encoder not prompted
  dec_k, _ = apply(jnp.array([2, 0, 2]), "decoder")
  assert dec_k.shape[1] == cfg.num_decoder_layers
  np.testing.assert_array_equal(dec_k[0], dec_k[2])
