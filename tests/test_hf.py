"""Hugging Face T5 import/export against `transformers` itself (CPU, tiny models)."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

from hyperprompt_jax.formats import hf
from hyperprompt_jax.formats import restore as restore_lib
from hyperprompt_jax.formats import tree as tree_lib
from hyperprompt_jax import models
from hyperprompt_jax import network

import helpers

ENC_LEN, DEC_LEN = 13, 11


def _batch(seed=0):
  """Rows with 13, 9 and 4 encoder tokens (0-padded) and padded decoder targets."""
  rng = np.random.RandomState(seed)
  enc = rng.randint(2, helpers.HF_VOCAB, size=(3, ENC_LEN))
  for row, valid in enumerate((13, 9, 4)):
    enc[row, valid:] = 0
  tgt = rng.randint(2, helpers.HF_VOCAB, size=(3, DEC_LEN))
  for row, valid in enumerate((11, 7, 3)):
    tgt[row, valid - 1] = 1  # EOS
    tgt[row, valid:] = 0
  dec_in = np.concatenate([np.zeros((3, 1), int), tgt[:, :-1]], axis=1)
  return enc, dec_in, tgt


def _hf_logits(model, enc, dec_in):
  with torch.no_grad():
    out = model(input_ids=torch.tensor(enc), attention_mask=torch.tensor(enc > 0),
                decoder_input_ids=torch.tensor(dec_in))
  return out.logits.numpy()


@pytest.mark.parametrize("style,torch_bin", [("t5_1_0", False), ("t5_1_1", True)])
def test_logits_and_greedy_decoding_match_transformers(tmp_path, style, torch_bin):
  hf_model = helpers.hf_t5(str(tmp_path), style, torch_bin=torch_bin)
  assert os.path.isfile(tmp_path / ("pytorch_model.bin" if torch_bin else "model.safetensors"))
  config, params = hf.load_hf_checkpoint(str(tmp_path))

  want = helpers.HF_STYLES[style]
  assert config.emb_dim == 32 and config.head_dim == want["d_kv"]
  assert config.num_heads == want["num_heads"] and config.mlp_dim == want["d_ff"]
  assert config.mlp_activations == (("relu",) if style == "t5_1_0" else ("gelu", "linear"))
  assert config.logits_via_embedding == (style == "t5_1_0")
  assert config.relative_attention_num_buckets == 8
  assert config.relative_attention_max_distance == 20
  assert config.layer_norm_epsilon == want["layer_norm_epsilon"]

  enc, dec_in, tgt = _batch()
  module = network.Transformer(config=config)
  ours = np.asarray(module.apply({"params": params}, jnp.asarray(enc), jnp.asarray(dec_in),
                                 jnp.asarray(tgt), enable_dropout=False))
  theirs = _hf_logits(hf_model, enc, dec_in)
  valid = tgt > 0
  diff = np.abs(ours[valid] - theirs[valid]).max()
  print(f"{style}: max |logit diff| vs transformers = {diff:.3g}")
  assert diff < 1e-4
  # The comparison is sensitive: the logits are far from constant.
  assert np.abs(theirs[valid]).max() > 0.5

  model = models.EncoderDecoderModel(module)
  tokens, _ = model.predict_batch_with_aux(
      params, {"encoder_input_tokens": jnp.asarray(enc),
               "decoder_input_tokens": jnp.zeros((3, DEC_LEN), jnp.int32)})
  tokens = np.asarray(tokens)
  with torch.no_grad():
    generated = hf_model.generate(input_ids=torch.tensor(enc),
                                  attention_mask=torch.tensor(enc > 0), do_sample=False,
                                  num_beams=1, max_new_tokens=DEC_LEN).numpy()[:, 1:]
  n = generated.shape[1]
  np.testing.assert_array_equal(tokens[:, :n], generated)
  assert not tokens[:, n:].any()
  assert len(set(tokens[:, 0].tolist()) | set(tokens[:, 1].tolist())) > 1


@pytest.mark.parametrize("style", ["t5_1_0", "t5_1_1"])
def test_hf_to_ours_to_hf_reproduces_every_tensor(tmp_path, style):
  original = helpers.hf_t5(str(tmp_path / "in"), style, seed=3)
  config, params = hf.load_hf_checkpoint(str(tmp_path / "in"))
  dropped = hf.save_hf_checkpoint(str(tmp_path / "out"), params, config)
  assert dropped == []
  reloaded = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path / "out"))
  a, b = original.state_dict(), reloaded.state_dict()
  assert set(a) == set(b)
  for key in a:
    assert a[key].dtype == b[key].dtype, key
    assert torch.equal(a[key], b[key]), key
  for field in ("d_model", "d_kv", "d_ff", "num_heads", "num_layers", "num_decoder_layers",
                "relative_attention_num_buckets", "relative_attention_max_distance",
                "layer_norm_epsilon", "feed_forward_proj", "vocab_size"):
    assert getattr(reloaded.config, field) == getattr(original.config, field), field
  enc, dec_in, _ = _batch(1)
  np.testing.assert_array_equal(_hf_logits(original, enc, dec_in),
                                _hf_logits(reloaded, enc, dec_in))


def test_export_drops_task_conditioning_and_bfloat16_round_trips(tmp_path):
  config = helpers.tiny_config(vocab_size=helpers.HF_VOCAB, task_sentinel_id=helpers.HF_VOCAB - 1,
                               hyperprompt_variant="share")
  _, variables = helpers.init_params(config)
  dropped = hf.save_hf_checkpoint(str(tmp_path / "bf16"), variables["params"], config,
                                  dtype="bfloat16")
  assert dropped and all(k.startswith("hyperprompt/") for k in dropped)
  tensors = hf.read_safetensors(str(tmp_path / "bf16" / "model.safetensors"))
  assert tensors["shared.weight"].dtype.name == "bfloat16"
  back_config, back = hf.load_hf_checkpoint(str(tmp_path / "bf16"))
  assert not tree_lib.architecture_mismatches(back_config, config)
  flat = tree_lib.flatten(variables["params"])
  for key, value in tree_lib.flatten(back).items():
    expected = np.asarray(flat[key]).astype(jnp.bfloat16).astype(np.float32)
    np.testing.assert_array_equal(value, expected, err_msg=key)


def _error(fn, *args):
  with pytest.raises(tree_lib.CheckpointError) as info:
    fn(*args)
  return str(info.value)


def test_bad_inputs_give_one_clear_error(tmp_path):
  good = tmp_path / "good"
  helpers.hf_t5(str(good), "t5_1_1")
  load = hf.load_hf_checkpoint

  assert "does not exist" in _error(load, str(tmp_path / "nope"))

  (tmp_path / "noconfig").mkdir()
  assert "config.json" in _error(load, str(tmp_path / "noconfig"))

  cfg = json.loads((good / "config.json").read_text())
  bart = tmp_path / "bart"
  bart.mkdir()
  (bart / "config.json").write_text(json.dumps(
      dict(cfg, model_type="bart", architectures=["BartForConditionalGeneration"])))
  msg = _error(load, str(bart))
  assert "bart" in msg and "BartForConditionalGeneration" in msg

  noweights = tmp_path / "noweights"
  noweights.mkdir()
  (noweights / "config.json").write_text(json.dumps(cfg))
  assert "model.safetensors" in _error(load, str(noweights))

  raw = (good / "model.safetensors").read_bytes()
  for name, data in (("truncated", raw[:len(raw) // 2]), ("header", raw[:8] + b"{not json" + raw[17:])):
    bad = tmp_path / name
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "model.safetensors").write_bytes(data)
    msg = _error(load, str(bad))
    assert "model.safetensors" in msg and ("truncated" in msg or "corrupt" in msg), msg

  truncated_bin = tmp_path / "truncated_bin"
  helpers.hf_t5(str(truncated_bin), "t5_1_0", torch_bin=True)
  blob = (truncated_bin / "pytorch_model.bin").read_bytes()
  (truncated_bin / "pytorch_model.bin").write_bytes(blob[:len(blob) // 3])
  assert "pytorch_model.bin" in _error(load, str(truncated_bin))

  wrong = tmp_path / "wrong_shape"
  wrong.mkdir()
  (wrong / "model.safetensors").write_bytes(raw)
  (wrong / "config.json").write_text(json.dumps(dict(cfg, d_ff=40)))
  msg = _error(load, str(wrong))
  assert "DenseReluDense.wi_0.weight" in msg and "(32, 48)" in msg and "(32, 40)" in msg

  erf = tmp_path / "erf_gelu"
  erf.mkdir()
  (erf / "model.safetensors").write_bytes(raw)
  (erf / "config.json").write_text(json.dumps(dict(cfg, feed_forward_proj="gelu")))
  assert "feed_forward_proj='gelu'" in _error(load, str(erf))

  extra = hf.read_safetensors(str(good / "model.safetensors"))
  extra["encoder.block.7.layer.0.SelfAttention.q.weight"] = np.zeros((24, 32), np.float32)
  unknown = tmp_path / "unknown"
  unknown.mkdir()
  (unknown / "config.json").write_text(json.dumps(cfg))
  hf.write_safetensors(str(unknown / "model.safetensors"), extra)
  assert "encoder.block.7.layer.0.SelfAttention.q.weight" in _error(load, str(unknown))


def test_restore_params_initialises_hyperprompt_from_an_hf_folder(tmp_path):
  helpers.hf_t5(str(tmp_path), "t5_1_1")
  hf_config, hf_params = hf.load_hf_checkpoint(str(tmp_path))
  config = hf_config.replace(hyperprompt_variant="share", num_tasks=2,
                             task_sentinel_id=helpers.HF_VOCAB - 1, prompt_length=2,
                             prompt_bottleneck_dim=4)
  params = restore_lib.restore_params(str(tmp_path), config)
  flat, want = tree_lib.flatten(params), tree_lib.flatten(hf_params)
  assert any(k.startswith("hyperprompt/") for k in flat)
  for key, value in want.items():
    np.testing.assert_array_equal(flat[key], value, err_msg=key)
  # A config whose activation differs (same shapes) is refused, naming the field.
  silu = config.replace(mlp_activations=("silu", "linear"))
  msg = _error(lambda: restore_lib.restore_params(str(tmp_path), silu))
  assert "mlp_activations" in msg
