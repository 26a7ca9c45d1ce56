"""Tiny models and batches shared by the tests."""
import flax
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


def pack_batch(batch, rows, enc_len=None, dec_len=None):
  """Packs the examples of an unpacked `batch` into rows, as seqio's packing does.

  `rows` lists the example indices of each packed row, e.g. `((0, 1), (2, 3))`.
  Every example's non-padding tokens become one segment (ids 1, 2, ...; 0 is
  padding) with positions from 0; the decoder inputs are the targets shifted
  right inside each segment. Lengths default to the longest packed row.
  Returns the packed batch (with segment ids and positions) and, per example,
  `(row, encoder slice, decoder slice)` of its tokens.
  """
  enc_all, dec_all = np.asarray(batch["encoder_input_tokens"]), np.asarray(
      batch["decoder_target_tokens"])
  enc_of = [e[e > 0] for e in enc_all]
  dec_of = [d[d > 0] for d in dec_all]
  enc_len = enc_len or max(sum(len(enc_of[i]) for i in r) for r in rows)
  dec_len = dec_len or max(sum(len(dec_of[i]) for i in r) for r in rows)
  out = {k: np.zeros((len(rows), n), np.int32) for k, n in (
      ("encoder_input_tokens", enc_len), ("encoder_segment_ids", enc_len),
      ("encoder_positions", enc_len), ("decoder_input_tokens", dec_len),
      ("decoder_target_tokens", dec_len), ("decoder_segment_ids", dec_len),
      ("decoder_positions", dec_len))}
  where = {}
  for r, examples in enumerate(rows):
    e0 = d0 = 0
    for seg, i in enumerate(examples, start=1):
      enc, dec = enc_of[i], dec_of[i]
      es, ds = slice(e0, e0 + len(enc)), slice(d0, d0 + len(dec))
      out["encoder_input_tokens"][r, es] = enc
      out["encoder_segment_ids"][r, es] = seg
      out["encoder_positions"][r, es] = np.arange(len(enc))
      out["decoder_target_tokens"][r, ds] = dec
      out["decoder_input_tokens"][r, ds] = np.concatenate([[0], dec[:-1]])
      out["decoder_segment_ids"][r, ds] = seg
      out["decoder_positions"][r, ds] = np.arange(len(dec))
      where[i] = (r, es, ds)
      e0, d0 = e0 + len(enc), d0 + len(dec)
  packed = {k: jnp.asarray(v) for k, v in out.items()}
  packed["decoder_loss_weights"] = jnp.asarray(out["decoder_target_tokens"] > 0, jnp.float32)
  return packed, where


def forward(module, params, batch, **kwargs):
  return module.apply({"params": params}, batch["encoder_input_tokens"],
                      batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                      enable_dropout=False, **kwargs)


def flat(tree):
  """{'encoder/layers_0/...': leaf} of a (frozen or plain) nested dict."""
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")


# Tiny models compile ~2x faster without XLA's expensive CPU passes; results are the same
# up to float rounding (the tests compare at 1e-5).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0,
                    "xla_llvm_disable_expensive_passes": True}


def fast_jit(fn):
  """`jax.jit(fn)` compiled with COMPILER_OPTIONS (one executable per input signature)."""
  jitted = jax.jit(fn)
  compiled = {}

  def call(*args):
    signature = jax.tree_util.tree_structure(args), tuple(
        (np.shape(x), x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
        for x in jax.tree_util.tree_leaves(args))
    if signature not in compiled:
      compiled[signature] = jitted.lower(*args).compile(compiler_options=COMPILER_OPTIONS)
    return compiled[signature](*args)

  return call


def cached_decode_logits(module, params, batch):
  """Decoder run one token at a time through the cache (t5x's decoding path), jitted.

  The cache is initialised by a `decode=True` call on dummy inputs, as t5x's
  `EncoderDecoderModel` does; each step feeds one decoder input token.

  Returns (logits [B, Ld, V], cache).
  """
  return fast_jit(cached_decode_fn(module))(params, batch["encoder_input_tokens"],
                                            batch["decoder_input_tokens"])


def cached_decode_fn(module):
  """Un-jitted `(params, enc [B, Le], dec_in [B, Ld]) -> (logits, cache)` of
  `cached_decode_logits`, to compile together with other computations."""
  def run(params, enc, dec_in):
    b, length = dec_in.shape
    _, cache_vars = module.apply(
        {"params": params}, jnp.ones_like(enc), jnp.ones((b, length), jnp.int32),
        jnp.ones((b, length), jnp.int32), decode=True, enable_dropout=False, mutable=["cache"])
    encoded = module.apply({"params": params}, enc, enable_dropout=False, method=module.encode)

    def step(cache, tok):
      logits, new_vars = module.apply(
          {"params": params, "cache": cache}, encoded, enc, tok[:, None], tok[:, None],
          enable_dropout=False, decode=True, max_decode_length=length, mutable=["cache"],
          method=module.decode)
      return new_vars["cache"], logits[:, 0]

    cache, logits = jax.lax.scan(step, cache_vars["cache"], jnp.transpose(dec_in))
    return jnp.transpose(logits, (1, 0, 2)), cache

  return run


# Tiny Hugging Face T5s (transformers on the CPU), for checkpoint import/export tests.
HF_VOCAB = 100
HF_STYLES = {
    # T5.1.0: ReLU MLP, logits from the tied embedding scaled by d_model**-0.5.
    "t5_1_0": dict(d_kv=8, num_heads=4, d_ff=64, feed_forward_proj="relu",
                   tie_word_embeddings=True, layer_norm_epsilon=1e-6),
    # T5.1.1 / Flan: gated GELU, separate lm_head, d_kv * num_heads (24) != d_model (32).
    "t5_1_1": dict(d_kv=6, num_heads=4, d_ff=48, feed_forward_proj="gated-gelu",
                   tie_word_embeddings=False, layer_norm_epsilon=1e-5),
}



def encoded_length(config, enc_len):
  """Rows of `encode`'s output for `enc_len` tokens (input-seam prompts in front)."""
  return enc_len + (config.soft_prompt_length if config.conditioning == "prompt_tuning" else 0)


def assert_decode_cache_layout(cache, dec_len, encoded_len, layer_axis=False):
  """The attention columns of a decode cache. Each decoder self-attention cache holds
  the decoder's prefix (P columns: exactly the conditioning cache's `prefix_key`; P = 0
  without one) in front of the `dec_len` decode positions, `[.., B, H, D, P + dec_len]`;
  each cross-attention cache the encoded inputs' keys `[.., B, H, D, encoded_len]` and
  values `[.., B, H, encoded_len, D]`. `layer_axis`: every leaf is stacked on a leading
  layer axis (`scan_layers`)."""
  values = flat(cache)
  stored = values.get(f"{network.DECODE_CACHE}/prefix_key")  # [B, M, P, H, D] / [M, B, ..]
  prefix_len = 0 if stored is None else stored.shape[2]
  checked = 0
  for path, value in values.items():
    if path.endswith(("self_attention/cached_key", "self_attention/cached_value")):
      assert value.shape[-1] == prefix_len + dec_len, (path, value.shape)
      checked += 1
      if stored is not None and path.endswith("cached_key"):
        layers = range(value.shape[0]) if layer_axis else [int(path.split("/")[1][7:])]
        for lyr in layers:
          prompts = stored[lyr] if layer_axis else stored[:, lyr]  # [B, P, H, D]
          got = value[lyr] if layer_axis else value
          np.testing.assert_array_equal(got[..., :prefix_len], np.moveaxis(prompts, 1, -1))
    if path.endswith("encoder_decoder_attention/cached_key"):
      assert value.shape[-1] == encoded_len, (path, value.shape)
      checked += 1
    if path.endswith("encoder_decoder_attention/cached_value"):
      assert value.shape[-2] == encoded_len, (path, value.shape)
  assert checked, "no attention cache"

def hf_t5(folder, style, *, seed=0, torch_bin=False, **overrides):
  """Saves a random `T5ForConditionalGeneration` of `style` in `folder`; returns it (eval mode).

  Layer norms and relative-position biases are randomised too (HF initialises
  them to constants), so a mix-up of those parameters changes the outputs.
  `torch_bin=True` writes `pytorch_model.bin` (torch.save of the state dict)
  instead of `save_pretrained`'s safetensors.
  """
  import os
  import torch
  import transformers
  torch.manual_seed(seed)
  kwargs = dict(vocab_size=HF_VOCAB, d_model=32, num_layers=2, num_decoder_layers=2,
                relative_attention_num_buckets=8, relative_attention_max_distance=20,
                dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
  kwargs.update(HF_STYLES[style])
  kwargs.update(overrides)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(**kwargs)).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "layer_norm" in name:
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      elif "relative_attention_bias" in name:
        p.copy_(0.5 * torch.randn_like(p))
    if not kwargs["tie_word_embeddings"]:
      model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight) * 0.2)
  if torch_bin:
    os.makedirs(folder, exist_ok=True)
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), os.path.join(folder, "pytorch_model.bin"))
  else:
    model.save_pretrained(folder)
  return model
