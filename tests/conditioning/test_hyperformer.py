"""HyperFormer++ baseline: adapters generated from task, layer and block-type embeddings."""
import jax.numpy as jnp
import numpy as np

from hyperprompt_jax.conditioning import hyperformer


import conditioning_testlib as lib
import helpers


def _config(**kw):
  kw.setdefault("adapter_bottleneck_dim", 5)
  return helpers.tiny_config(hyperprompt_variant="none", conditioning="hyperformer", **kw)


def test_parameter_shapes_and_count_match_closed_form():
  cfg = _config()
  shapes = lib.assert_param_count_matches_closed_form(cfg)
  tp, h, t, e, b = cfg.task_embed_dim, cfg.task_hidden_dim, cfg.layer_task_dim, cfg.emb_dim, 5
  assert shapes["hyperformer/task_embedding"] == (cfg.num_tasks, tp)
  for stack, m in (("encoder", cfg.num_encoder_layers), ("decoder", cfg.num_decoder_layers)):
    p = f"hyperformer/{stack}/"
    assert shapes[p + "layer_embedding"] == (m, tp)
    assert shapes[p + "block_embedding"] == (2, tp)
    assert shapes[p + "task_mlp_0/kernel"] == (3 * tp, h)
    assert shapes[p + "task_mlp_1/kernel"] == (h, t)
    assert shapes[p + "down_kernel_generator/kernel"] == (t, e, b)
    assert shapes[p + "up_kernel_generator/kernel"] == (t, b, e)
    assert shapes[p + "norm_scale_generator/bias"] == (e,)


def test_generated_weights_differ_by_task_layer_and_block():
  cfg = _config()
  _, params = lib.random_model(cfg)
  module = hyperformer.HyperFormer(config=cfg)
  variables = {"params": params["hyperformer"]}
  # Batch >= T (generate per task, gather) and batch < T (generate per example) agree.
  weights = lib.fast_jit(lambda v, ids: module.apply(v, ids, "encoder"))
  many = weights(variables, jnp.array([2, 0, 1, 2]))
  few = weights(variables, jnp.array([2, 0]))
  for block in ("attention", "mlp"):
    for name, value in many[block].items():
      np.testing.assert_allclose(value[:2], few[block][name], atol=1e-6)
  w = many["mlp"]["down_kernel"]  # [B, M, E, b]
  assert w.shape == (4, cfg.num_encoder_layers, cfg.emb_dim, 5)
  np.testing.assert_array_equal(w[0], w[3])
  assert not np.allclose(w[0], w[1])  # tasks
  assert not np.allclose(w[0, 0], w[0, 1])  # layers
  assert not np.allclose(w[0], many["attention"]["down_kernel"][0])  # block types
  assert set(many["attention"]) == {"down_kernel", "down_bias", "up_kernel", "up_bias",
                                    "norm_scale", "norm_bias"}


def test_zero_output_norm_is_exactly_vanilla_t5():
  """With the generated output layer norm at zero the adapters are identities."""
  lib.assert_zeroed_leaves_give_vanilla(_config(), "hyperformer", lambda k: "/norm_" in k)


def test_gradients_reach_every_parameter():
  lib.assert_gradients_reach_every_parameter(_config(), per_task_prefixes=("task_embedding",))


def test_cached_decoding_matches_full_forward():
  lib.assert_cached_decoding_matches_full_forward(_config())


def test_tasks_are_routed_and_both_generation_paths_agree():
  lib.assert_tasks_are_routed(_config(), ["task_embedding"])
  # Single rows (batch 1 < T) take the per-example path, the batch of 4 the per-task path.
  lib.assert_mixed_batch_equals_single_rows(_config())
