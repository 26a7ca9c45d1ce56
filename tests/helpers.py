"""Tiny models and batches shared by the tests."""
import jax
import jax.numpy as jnp
import numpy as np

from hyperprompt_jax import network

VOCAB = 64
SENTINEL = VOCAB - 1  # <extra_id_0>; task k is VOCAB - 1 - k.


def tiny_config(**overrides) -> network.T5Config:
  kwargs = dict(vocab_size=VOCAB, emb_dim=16, num_heads=2, head_dim=4, num_encoder_layers=2,
                num_decoder_layers=2, mlp_dim=32, mlp_activations=("gelu", "linear"),
                dropout_rate=0.0, num_tasks=3, task_sentinel_id=SENTINEL, prompt_length=3,
                prompt_bottleneck_dim=5, task_embed_dim=6, layer_task_dim=7,
                task_hidden_dim=8, hyperprompt_variant="global")
  kwargs.update(overrides)
  return network.T5Config(**kwargs)


def init_params(config, seed=0, enc_len=9, dec_len=6):
  module = network.Transformer(config=config)
  variables = module.init(jax.random.PRNGKey(seed), jnp.ones((2, enc_len), jnp.float32),
                          jnp.ones((2, dec_len), jnp.float32), jnp.ones((2, dec_len), jnp.float32),
                          enable_dropout=False)
  return module, variables


def mixed_batch(task_of_row=(0, 1, 2, 1), enc_len=9, dec_len=6, seed=1):
  """Encoder inputs start with the task sentinel; rows have different padding."""
  rng = np.random.RandomState(seed)
  b = len(task_of_row)
  enc = rng.randint(3, SENTINEL - 5, size=(b, enc_len))
  dec = rng.randint(3, SENTINEL - 5, size=(b, dec_len))
  for i, t in enumerate(task_of_row):
    enc[i, 0] = SENTINEL - t
    enc[i, enc_len - 1 - (i % 3):] = 0  # padding of 0..2 tokens
    dec[i, dec_len - 1 - (i % 2):] = 0
    dec[i, dec_len - 2 - (i % 2)] = 1  # EOS
  dec_in = np.concatenate([np.zeros((b, 1), int), dec[:, :-1]], axis=1)
  return {
      "encoder_input_tokens": jnp.asarray(enc, jnp.int32),
      "decoder_input_tokens": jnp.asarray(dec_in, jnp.int32),
      "decoder_target_tokens": jnp.asarray(dec, jnp.int32),
      "decoder_loss_weights": jnp.asarray(dec > 0, jnp.float32),
  }


def forward(module, params, batch, **kwargs):
  return module.apply({"params": params}, batch["encoder_input_tokens"],
                      batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                      enable_dropout=False, **kwargs)
