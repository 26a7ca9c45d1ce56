"""The attention analysis: prompt mass per layer, recorded without changing the network."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import launcher_testlib as tl
from hyperprompt_jax import attention_analysis as aa
from hyperprompt_jax import layers


def _batch():
  batch = {k: v for k, v in tl.random_batches(1)[0].items()}
  return batch


def test_records_every_prompted_self_attention_and_leaves_outputs_unchanged():
  model = tl.tiny_model()
  params = jax.tree_util.tree_map(jnp.asarray, tl.initial_params())
  batch = _batch()
  plain = model._compute_logits(params, batch)
  records = []
  with aa.record_prefix_mass(records):
    recorded = model._compute_logits(params, batch)
  np.testing.assert_allclose(np.asarray(recorded), np.asarray(plain), rtol=1e-5, atol=1e-5)
  assert layers.dot_product_attention.__name__ == "dot_product_attention"  # restored
  assert [r["path"][0] for r in records] == ["encoder", "decoder"]  # 1 + 1 layers
  assert [r["path"][-1] for r in records] == ["attention", "self_attention"]
  cfg = model.module.config
  for r in records:
    assert r["prefix_length"] == cfg.prompt_length
    assert r["mass"].shape[1] == cfg.num_heads
    assert np.all((r["mass"] > 0) & (r["mass"] <= 1 + 1e-6))  # 1: padded queries


class _Block(nn.Module):
  """One self-attention named like the encoder's, with a key/value prefix."""

  @nn.compact
  def __call__(self, x, key_prefix, value_prefix):
    return layers.MultiHeadDotProductAttention(num_heads=2, head_dim=4, name="attention")(
        x, x, key_prefix=key_prefix, value_prefix=value_prefix, deterministic=True)


def test_mass_is_the_softmax_share_of_the_prompt_columns():
  """Zero prompt keys: each prompt column has logit 0, so the mass is P / (P + sum exp(q.k))."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 8))
  prefix = jnp.zeros((2, 3, 2, 4))
  block = _Block()
  variables = block.init(jax.random.PRNGKey(1), x, prefix, prefix)
  records = []
  with aa.record_prefix_mass(records):
    block.apply(variables, x, prefix, prefix)
  assert len(records) == 1 and records[0]["prefix_length"] == 3
  p = variables["params"]["attention"]
  q = jnp.einsum("ble,ehd->blhd", x, p["query"]["kernel"].reshape(8, 2, 4))
  k = jnp.einsum("ble,ehd->blhd", x, p["key"]["kernel"].reshape(8, 2, 4))
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
  expected = 3.0 / (3.0 + jnp.exp(logits).sum(-1))
  np.testing.assert_allclose(records[0]["mass"], expected, rtol=1e-5)
  records.clear()
  layers.dot_product_attention(q, jnp.concatenate([jnp.zeros((2, 3, 2, 4)), k], 1),
                               jnp.concatenate([jnp.zeros((2, 3, 2, 4)), k], 1))
  assert records == []  # outside the context: nothing recorded


def test_prefix_mass_per_layer_and_outputs(tmp_path):
  model = tl.tiny_model()
  params = jax.tree_util.tree_map(jnp.asarray, tl.initial_params())
  result = aa.prefix_mass_per_layer(model, params, _batch())
  assert len(result["encoder"]) == 1 and len(result["decoder"]) == 1
  assert all(0 < v < 1 for v in result["encoder"] + result["decoder"])
  vanilla = tl.tiny_model(hyperprompt_variant="none")
  vparams = jax.tree_util.tree_map(jnp.asarray, tl.initial_params(hyperprompt_variant="none"))
  assert aa.prefix_mass_per_layer(vanilla, vparams, _batch()) == {"encoder": [], "decoder": []}
  out = str(tmp_path / "attention")
  aa.write({"tiny": result}, out, "test")
  with open(out + ".png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  text = open(out + ".md").read()
  assert "| tiny | encoder | " in text and f"{result['encoder'][0]:.3f}" in text
