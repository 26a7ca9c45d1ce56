"""Mixed precision (gin/precision/bf16.gin): bfloat16 activations, float32 parameters and
optimizer state. A tiny model trains to float32's loss curve; the decode cache and the
cached prompts are bfloat16."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hyperprompt_jax import models
from hyperprompt_jax import network

import helpers

STEPS = 40
# Largest relative gap allowed between the bfloat16 and float32 loss of any of the STEPS
# steps (measured: 0.09%, and the loss falls from 176 to 98).
LOSS_RTOL = 0.02


def _copy_batches(steps, batch=8, enc_len=9, dec_len=5, seed=0):
  """A learnable mixed-task task: the target is the input's first tokens shifted by the task."""
  rng = np.random.RandomState(seed)
  out = []
  for _ in range(steps):
    tasks = rng.randint(0, 3, size=batch)
    enc = rng.randint(3, 13, size=(batch, enc_len))
    enc[:, 0] = helpers.SENTINEL - tasks
    dec = enc[:, 1:dec_len + 1] + tasks[:, None]
    dec_in = np.concatenate([np.zeros((batch, 1), int), dec[:, :-1]], axis=1)
    out.append({"encoder_input_tokens": jnp.asarray(enc, jnp.int32),
                "decoder_input_tokens": jnp.asarray(dec_in, jnp.int32),
                "decoder_target_tokens": jnp.asarray(dec, jnp.int32),
                "decoder_loss_weights": jnp.ones((batch, dec_len), jnp.float32)})
  return out


def _train(config, params, batches):
  """Adafactor on `batches`; returns (per-step losses, final params, final optimizer state)."""
  model = models.EncoderDecoderModel(network.Transformer(config=config))
  opt = optax.adafactor(1e-2)

  @jax.jit
  def step(params, state, batch):
    (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, None)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  state = opt.init(params)
  losses = []
  for batch in batches:
    params, state, loss = step(params, state, batch)
    losses.append(float(loss))
  return np.asarray(losses), params, state


def _configs():
  f32 = helpers.tiny_config(dtype=jnp.float32, emb_dim=32, mlp_dim=64, num_heads=4, head_dim=8)
  return f32, dataclasses.replace(f32, dtype="bfloat16")  # what precision/bf16.gin sets


def test_bfloat16_trains_like_float32():
  f32, bf16 = _configs()
  _, variables = helpers.init_params(f32)
  batches = _copy_batches(STEPS)
  loss32, _, _ = _train(f32, variables["params"], batches)
  loss16, params16, state16 = _train(bf16, variables["params"], batches)
  # Both learn, and the curves agree step by step.
  assert loss32[-5:].mean() < 0.7 * loss32[:5].mean()  # 158 -> 99 (mean of 5 steps)
  np.testing.assert_allclose(loss16, loss32, rtol=LOSS_RTOL)
  # Not vacuous: the bfloat16 run did compute in bfloat16.
  assert not np.array_equal(loss16, loss32)
  # Parameters and optimizer state stay float32.
  for leaf in jax.tree_util.tree_leaves((params16, state16)):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32, leaf.dtype


@pytest.mark.parametrize("overrides", [dict(hyperprompt_variant="global"),
                                       dict(conditioning="prefix_tuning",
                                            hyperprompt_variant="none", prefix_length=3)])
def test_bfloat16_decode_cache_and_prompts(overrides):
  _, bf16 = _configs()
  cfg = dataclasses.replace(bf16, **overrides)
  module, variables = helpers.init_params(cfg)
  batch = helpers.mixed_batch()
  full = helpers.forward(module, variables["params"], batch)
  cached, cache = helpers.cached_decode_logits(module, variables["params"], batch)
  leaves = helpers.flat(cache)
  prompts = [k for k in leaves if k.startswith(network.DECODE_CACHE + "/prefix_")]
  assert len(prompts) == 2
  for path, value in leaves.items():
    if path.endswith(("cached_key", "cached_value")) or path in prompts:
      assert value.dtype == jnp.bfloat16, path
  valid = np.asarray(batch["decoder_target_tokens"] > 0)
  # Cached decoding equals the bfloat16 forward pass to bfloat16 precision.
  np.testing.assert_allclose(np.asarray(cached, np.float32)[valid],
                             np.asarray(full, np.float32)[valid], atol=5e-2, rtol=5e-2)
