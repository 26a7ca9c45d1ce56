# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Smallest end-to-end check: a tiny HyperPrompt-Global T5 fits a random mixed-task batch.

`python -m hyperprompt_jax.smoke` runs forward + backward + optax updates and
prints the loss; it exits non-zero if the loss does not fall.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hyperprompt_jax import models
from hyperprompt_jax import network


def main(steps: int = 60) -> int:
  vocab = 128
  cfg = network.T5Config(vocab_size=vocab, emb_dim=64, num_heads=4, head_dim=16,
                         num_encoder_layers=2, num_decoder_layers=2, mlp_dim=128,
                         mlp_activations=("gelu", "linear"), dropout_rate=0.0, num_tasks=4,
                         task_sentinel_id=vocab - 1, hyperprompt_variant="global",
                         prompt_length=4, prompt_bottleneck_dim=8)
  model = models.EncoderDecoderModel(network.Transformer(config=cfg))
  rng = np.random.RandomState(0)
  b, le, ld = 16, 12, 6
  enc = rng.randint(3, vocab - 8, size=(b, le))
  enc[:, 0] = vocab - 1 - np.arange(b) % cfg.num_tasks  # task sentinels, mixed tasks
  dec = rng.randint(3, vocab - 8, size=(b, ld))
  batch = {
      "encoder_input_tokens": jnp.asarray(enc), "decoder_target_tokens": jnp.asarray(dec),
      "decoder_input_tokens": jnp.asarray(np.concatenate([np.zeros((b, 1), int), dec[:, :-1]], 1)),
      "decoder_loss_weights": jnp.ones((b, ld), jnp.float32)}
  params = model.get_initial_variables(jax.random.PRNGKey(0), {
      "encoder_input_tokens": (b, le), "decoder_input_tokens": (b, ld)})["params"]
  opt = optax.adafactor(1e-2)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch, None)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  start = time.time()
  losses = []
  for i in range(steps):
    params, state, loss = step(params, state)
    losses.append(float(loss))
    if i % 10 == 0 or i == steps - 1:
      print(f"step {i:3d}  loss {losses[-1]:.3f}")
  print(f"{steps} steps in {time.time() - start:.1f}s; loss {losses[0]:.2f} -> {losses[-1]:.2f}")
  return 0 if losses[-1] < 0.5 * losses[0] else 1


if __name__ == "__main__":
  sys.exit(main())
