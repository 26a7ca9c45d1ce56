"""Prompt-Tuning baseline: task-specific soft prompts in front of the encoder input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperprompt_jax import models
from hyperprompt_jax.conditioning import prompt_tuning
from hyperprompt_jax.conditioning import seams

import conditioning_testlib as lib
import helpers


def _config(**kw):
  kw.setdefault("soft_prompt_length", 4)
  return helpers.tiny_config(hyperprompt_variant="none", conditioning="prompt_tuning", **kw)


def test_parameter_shapes_and_count_match_closed_form():
  cfg = _config()
  shapes = lib.assert_param_count_matches_closed_form(cfg)
  assert shapes == {"prompt_tuning/prompts": (cfg.num_tasks, 4, cfg.emb_dim)}


def test_encoder_output_has_prompt_rows_and_prompts_follow_the_task():
  cfg = _config()
  module, params = lib.random_model(cfg)
  batch = helpers.mixed_batch()
  encoded = lib.fast_jit(lambda p, x: module.apply({"params": p}, x, enable_dropout=False,
                                                   method=module.encode))(
                                                  params, batch["encoder_input_tokens"])
  assert encoded.shape == (4, 4 + 9, cfg.emb_dim)
  rows = prompt_tuning.PromptTuning(config=cfg).apply(
      {"params": params["prompt_tuning"]}, jnp.array([2, 0]))
  assert rows.shape == (2, 4, cfg.emb_dim)
  np.testing.assert_array_equal(rows[0], params["prompt_tuning"]["prompts"][2])
  np.testing.assert_array_equal(
      seams.extend_valid(jnp.array([[True, False]]), 2), [[True, True, True, False]])


def test_gradients_reach_every_parameter():
  lib.assert_gradients_reach_every_parameter(_config(), per_task_prefixes=("prompts",))


def test_cached_decoding_matches_full_forward():
  lib.assert_cached_decoding_matches_full_forward(_config())


def test_tasks_are_routed_to_their_prompts():
  lib.assert_tasks_are_routed(_config(), ["prompts"])
  lib.assert_mixed_batch_equals_single_rows(_config())


def test_masks_cover_prompt_rows_and_hide_padding():
  cfg = _config()
  module, params = lib.random_model(cfg)
  batch = helpers.mixed_batch()
  enc = batch["encoder_input_tokens"]
  encode = lib.fast_jit(lambda p, x: module.apply({"params": p}, x, enable_dropout=False,
                                             method=module.encode))
  decode = lib.fast_jit(lambda p, encoded, b: module.apply(
      {"params": p}, encoded, b["encoder_input_tokens"], b["decoder_input_tokens"],
      b["decoder_target_tokens"], enable_dropout=False, method=module.decode))
  encoded = encode(params, enc)
  # Extra padding changes nothing on the prompt and token rows (padding is masked, prompts
  # are not).
  padded = jnp.concatenate([enc, jnp.zeros((4, 3), enc.dtype)], axis=1)
  real = np.concatenate([np.ones((4, 4), bool), np.asarray(enc > 0)], axis=1)
  np.testing.assert_allclose(np.asarray(encode(params, padded))[:, :4 + 9][real],
                             np.asarray(encoded)[real], atol=1e-5)
  # The decoder's cross-attention sees the prompt rows of the encoder output ...
  logits = decode(params, encoded, batch)
  moved = encoded.at[:, :4].add(1.0)
  assert not np.allclose(decode(params, moved, batch), logits, atol=1e-4)
  # ... and not the padded token rows.
  pad = np.asarray(enc == 0)
  pad_rows = jnp.asarray(np.concatenate([np.zeros((4, 4), bool), pad], axis=1))
  hidden = encoded + 3.0 * pad_rows[..., None]
  valid = np.asarray(batch["decoder_target_tokens"] > 0)  # padded targets see nothing
  np.testing.assert_allclose(np.asarray(decode(params, hidden, batch))[valid],
                             np.asarray(logits)[valid], atol=1e-5)


def test_packed_inputs_are_rejected_with_a_clear_error():
  cfg = _config()
  module, params = lib.random_model(cfg)
  batch = helpers.mixed_batch(task_of_row=(0, 1), enc_len=8, dec_len=8)
  batch["encoder_segment_ids"] = jnp.array([[1] * 4 + [2] * 4, [1] * 8])
  batch["decoder_segment_ids"] = jnp.array([[1] * 4 + [2] * 4, [1] * 8])
  with pytest.raises(ValueError, match="prompt_tuning' does not support packed inputs"):
    models.EncoderDecoderModel(module).loss_fn(params, batch, None)
