"""The parameter report: gin -> config -> eval_shape counts."""
import gin
import numpy as np

from hyperprompt_jax import params
from hyperprompt_jax.conditioning import hyperprompt as hyperprompt_lib


def _t5_1_1_backbone_count(cfg):
  e, hd, f, v, h = cfg.emb_dim, cfg.num_heads * cfg.head_dim, cfg.mlp_dim, cfg.vocab_size, cfg.num_heads
  buckets = cfg.relative_attention_num_buckets
  enc_layer = 4 * e * hd + 3 * e * f + 2 * e
  dec_layer = 8 * e * hd + 3 * e * f + 3 * e
  return (2 * v * e + cfg.num_encoder_layers * enc_layer + cfg.num_decoder_layers * dec_layer
          + 2 * e + 2 * h * buckets)


def test_report_counts_small_global_from_gin(capsys):
  cfg = params.config_from_gin(["models/t5_1_1/small.gin",
                                "conditioning/hyperprompt_global.gin"], ["NUM_TASKS = 5"])
  assert (cfg.emb_dim, cfg.num_encoder_layers, cfg.hyperprompt_variant, cfg.num_tasks) == (
      512, 8, "global", 5)
  base, added = params.count(cfg)
  assert base == _t5_1_1_backbone_count(cfg)
  assert added == hyperprompt_lib.expected_num_params(cfg)
  assert params.main(["--gin_file=models/t5_1_1/small.gin",
                      "--gin_file=conditioning/hyperprompt_share.gin", "--gin.NUM_TASKS=5"]) == 0
  out = capsys.readouterr().out
  share = cfg.replace(hyperprompt_variant="share")
  assert f"{base:,}" in out and f"{hyperprompt_lib.expected_num_params(share):,}" in out


def test_reading_a_config_leaves_gin_unlocked():
  """`config_from_gin` does not finalize gin: a configurable registered afterwards in the
  same process (a later test, a task module imported late) still can be."""
  params.config_from_gin(["models/t5_1_1/tiny.gin"])
  assert not gin.config_is_locked()

  @gin.configurable("test_params_registered_after_a_config_read")
  def registered(x=1):
    return x

  assert registered() == 1


def test_report_xxl_costs_no_memory():
  cfg = params.config_from_gin(["models/t5_1_1/xxl.gin", "conditioning/hyperprompt_sep.gin"])
  base, added = params.count(cfg)
  assert base == _t5_1_1_backbone_count(cfg) > 10**10
  assert added == hyperprompt_lib.expected_num_params(cfg)


def test_report_rejects_bad_gin(capsys):
  assert params.main(["--gin_file=models/t5_1_1/small.gin", "--gin.NOT_A_MACRO_OR_BINDING.x=3"]) == 2
  assert "Bad gin configuration" in capsys.readouterr().err
