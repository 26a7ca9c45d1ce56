"""Prompt export: HyperPrompt (hypernetworks) -> constant key/value prefixes, same logits."""
import itertools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperprompt_jax import conditioning
from hyperprompt_jax import export
from hyperprompt_jax.formats import restore as restore_lib
from hyperprompt_jax.formats import scan as scan_lib
from hyperprompt_jax.formats import t5x as t5x_lib
from hyperprompt_jax.formats import tree as tree_lib
from hyperprompt_jax import network

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "conditioning"))
import conditioning_testlib as lib  # pylint: disable=g-import-not-at-top
import helpers  # pylint: disable=g-import-not-at-top

VARIANTS = ("share", "sep", "global")
PLACEMENTS = ("encoder", "decoder", "both")


def _config(variant="global", placement="both", **kw):
  # Uneven stacks (2 encoder, 1 decoder layer) catch layer-order mistakes in the export.
  kw.setdefault("num_decoder_layers", 1)
  return helpers.tiny_config(hyperprompt_variant=variant, hyperprompt_placement=placement,
                             **kw)


def _prompted(cfg):
  return {"encoder": 2, "decoder": 1, "both": 3}[cfg.hyperprompt_placement]


@pytest.mark.parametrize("variant,placement", list(itertools.product(VARIANTS, PLACEMENTS)))
def test_exported_prompts_give_identical_logits(variant, placement):
  cfg = _config(variant, placement)
  module, params = lib.random_model(cfg)
  batch = helpers.mixed_batch(task_of_row=(2, 0, 1, 2))
  new_cfg, new_params = export.export_prompts(cfg, params)
  assert (new_cfg.conditioning, new_cfg.prefix_reparam, new_cfg.hyperprompt_variant) == (
      "prefix_tuning", False, "none")
  assert (new_cfg.prefix_length, new_cfg.prefix_placement) == (cfg.prompt_length, placement)
  # The hypernetworks are gone; the backbone is passed through untouched.
  assert "hyperprompt" not in new_params
  assert set(new_params) == (set(params) - {"hyperprompt"}) | {"prefix_tuning"}
  for name in set(params) - {"hyperprompt"}:
    for a, b in zip(jax.tree_util.tree_leaves(new_params[name]),
                    jax.tree_util.tree_leaves(params[name])):
      assert a is b, name
  shape = (cfg.num_tasks, _prompted(cfg), cfg.prompt_length, cfg.num_heads * cfg.head_dim)
  assert {k: v.shape for k, v in new_params["prefix_tuning"].items()} == {
      "key_prefix": shape, "value_prefix": shape}
  # A smaller tree for these shapes, with the closed-form size.
  exported = lib.count(new_params["prefix_tuning"])
  assert exported == export.expected_num_params(cfg) == 2 * int(np.prod(shape))
  assert exported < lib.count(params["hyperprompt"]) == conditioning.expected_num_params(cfg)
  # Same logits (the exported model is an ordinary Prefix-Tuning network).
  want = lib.forward_fn(module)(params, batch)
  got = lib.forward_fn(network.Transformer(config=new_cfg))(new_params, batch)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_exported_model_decodes_with_the_cache():
  cfg = _config("global", "both")
  module, params = lib.random_model(cfg)
  new_cfg, new_params = export.export_prompts(cfg, params)
  batch = helpers.mixed_batch()
  want = lib.forward_fn(module)(params, batch)
  cached, _ = lib.cached_decode_logits(network.Transformer(config=new_cfg), new_params, batch)
  valid = np.asarray(batch["decoder_target_tokens"] > 0)
  np.testing.assert_allclose(np.asarray(cached)[valid], np.asarray(want)[valid], atol=1e-5)


def _decode_step_flops(cfg, batch_size=4, length=6, enc_len=9):
  """XLA's FLOP count of one cached decoding step (shapes only: nothing is compiled)."""
  module = network.Transformer(config=cfg)
  params = lib.abstract_variables(cfg)["params"]
  enc = jax.ShapeDtypeStruct((batch_size, enc_len), jnp.int32)
  dec = jnp.ones((batch_size, length), jnp.int32)
  cache = jax.eval_shape(lambda p, e: module.apply(
      {"params": p}, jnp.ones(e.shape, e.dtype), dec, dec, decode=True, enable_dropout=False,
      mutable=["cache"])[1], params, enc)
  encoded = jax.ShapeDtypeStruct((batch_size, enc_len, cfg.emb_dim), jnp.float32)
  tok = jax.ShapeDtypeStruct((batch_size, 1), jnp.int32)

  def step(params, cache, encoded, enc, tok):
    return module.apply({"params": params, **cache}, encoded, enc, tok, tok,
                        enable_dropout=False, decode=True, max_decode_length=length,
                        mutable=["cache"], method=module.decode)

  cost = jax.jit(step).lower(params, cache, encoded, enc, tok).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def test_decode_step_costs_vanilla_plus_prompt_keys():
  """Exported prompts: a decoding step costs vanilla T5 plus attention over `l` more keys
  per prompted layer (linear in `l`). With the hypernetworks the step program still holds
  them, in the `lax.cond` that runs them only when the cached task ids differ (XLA counts
  its FLOPs; at run time no step after the cache initialisation takes that branch)."""
  b, extra = 4, {}
  for l in (5, 10):
    cfg = _config("global", "decoder", prompt_length=l)
    vanilla = _decode_step_flops(cfg.replace(hyperprompt_variant="none"))
    exported = _decode_step_flops(export.exported_config(cfg))
    extra[l] = exported - vanilla
    h, d, m = cfg.num_heads, cfg.head_dim, cfg.num_decoder_layers
    # QK^T and AV on l more keys, plus a few elementwise ops per extra logit (mask, softmax).
    assert m * 4 * b * h * l * d <= extra[l] <= m * b * h * l * (4 * d + 20), (l, extra[l])
    assert _decode_step_flops(cfg) > exported + extra[l]
  per_key = (extra[10] - extra[5]) / 5
  assert m * 4 * b * h * d <= per_key <= m * b * h * (4 * d + 20)


def test_export_of_a_task_range_keeps_the_sentinels():
  cfg = _config("share", "both")
  module, params = lib.random_model(cfg)
  new_cfg, new_params = export.export_prompts(cfg, params, tasks=(1, 2))
  assert (new_cfg.num_tasks, new_cfg.task_sentinel_id) == (2, cfg.task_sentinel_id - 1)
  assert new_params["prefix_tuning"]["key_prefix"].shape[0] == 2
  assert lib.count(new_params["prefix_tuning"]) == export.expected_num_params(cfg, num_tasks=2)
  batch = helpers.mixed_batch(task_of_row=(2, 1, 1, 2))  # same sentinel tokens as before
  want = lib.forward_fn(module)(params, batch)
  got = lib.forward_fn(network.Transformer(config=new_cfg))(new_params, batch)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_export_folds_prefix_tuning_reparametrisation():
  cfg = helpers.tiny_config(hyperprompt_variant="none", conditioning="prefix_tuning",
                            prefix_reparam=True, prefix_length=3, prefix_reparam_hidden_dim=10,
                            prefix_placement="encoder")
  module, params = lib.random_model(cfg)
  new_cfg, new_params = export.export_prompts(cfg, params)
  assert not new_cfg.prefix_reparam and set(new_params["prefix_tuning"]) == {
      "key_prefix", "value_prefix"}
  batch = helpers.mixed_batch()
  np.testing.assert_allclose(
      lib.forward_fn(network.Transformer(config=new_cfg))(new_params, batch),
      lib.forward_fn(module)(params, batch), atol=1e-5, rtol=0)


def test_export_rejects_what_it_cannot_export():
  cfg = _config("global", "both")
  _, params = lib.random_model(cfg)
  for bad in (cfg.replace(hyperprompt_variant="none"),
              cfg.replace(hyperprompt_variant="none", conditioning="adapters"),
              cfg.replace(hyperprompt_variant="none", conditioning="prefix_tuning",
                          prefix_reparam=False)):
    with pytest.raises(ValueError, match="export_prompts needs a model whose prompts"):
      export.export_prompts(bad, params)
  with pytest.raises(ValueError, match="no 'hyperprompt' subtree"):
    export.export_prompts(cfg, {k: v for k, v in params.items() if k != "hyperprompt"})
  with pytest.raises(ValueError, match="contiguous"):
    export.export_prompts(cfg, params, tasks=(0, 2))
  with pytest.raises(ValueError, match="outside"):
    export.export_prompts(cfg, params, tasks=(2, 3))
  # The variables dict ({'params': ...}) is accepted too.
  new_cfg, _ = export.export_prompts(cfg, {"params": params})
  assert new_cfg.conditioning == "prefix_tuning"


def test_command_line_exports_a_checkpoint(tmp_path, capsys):
  from hyperprompt_jax import params as params_lib
  cfg = _config("sep", "both")
  module, params = lib.random_model(cfg)
  model_dir = str(tmp_path / "model")
  t5x_lib.save_orbax_checkpoint(model_dir, params, step=7)
  tree_lib.write_config(os.path.join(model_dir, tree_lib.CONFIG_FILENAME), cfg)
  out = tmp_path / "exported"
  assert export.main([f"--checkpoint={model_dir}", f"--output_dir={out}"]) == 0
  assert "hyperprompt parameters dropped" in capsys.readouterr().out
  new_cfg = tree_lib.read_config(str(out / tree_lib.CONFIG_FILENAME))
  assert tree_lib.config_to_dict(new_cfg) == tree_lib.config_to_dict(
      export.exported_config(cfg))
  new_params = restore_lib.load_params(str(out))
  batch = helpers.mixed_batch()
  np.testing.assert_allclose(
      lib.forward_fn(network.Transformer(config=new_cfg))(new_params, batch),
      lib.forward_fn(module)(params, batch), atol=1e-5, rtol=0)
  # The gin file turns a model-size gin config into the exported model.
  from_gin = params_lib.config_from_gin(
      ["models/t5_1_1/tiny.gin", str(out / export.GIN_FILENAME)],
      ["network.T5Config.vocab_size = 64"])
  for field in ("conditioning", "hyperprompt_variant", "prefix_length", "prefix_placement",
                "prefix_reparam", "num_tasks", "task_sentinel_id"):
    assert getattr(from_gin, field) == getattr(new_cfg, field), field
  # A second export into the same folder is refused; nothing there is touched.
  before = sorted(p.name for p in out.iterdir())
  assert export.main([f"--checkpoint={model_dir}", f"--output_dir={out}"]) == 2
  assert "not empty" in capsys.readouterr().err
  assert sorted(p.name for p in out.iterdir()) == before
  # A vanilla model has nothing to export: one clear error, no output folder.
  assert export.main([f"--checkpoint={model_dir}", f"--output_dir={tmp_path / 'none'}",
                      "--gin_file=models/t5_1_1/tiny.gin", "--gin_file=conditioning/vanilla.gin"
                      ]) == 2
  assert "export_prompts needs" in capsys.readouterr().err
  assert not (tmp_path / "none").exists()


def test_export_of_a_scanned_model_gives_identical_logits():
  """The prompts of a scanned model export as for the unrolled one; the stacked layers
  pass through, and the exported model (still scanned) gives the same logits."""
  cfg = _config("global", "both", num_decoder_layers=2)
  _, params = lib.random_model(cfg)
  scanned_cfg = cfg.replace(scan_layers=True)
  stacked = scan_lib.stack_layers(params, axis=cfg.param_scan_axis)
  new_cfg, new_params = export.export_prompts(scanned_cfg, stacked)
  assert new_cfg.scan_layers and new_cfg.conditioning == "prefix_tuning"
  unrolled_cfg, unrolled_params = export.export_prompts(cfg, params)
  for key, value in tree_lib.flatten(unrolled_params["prefix_tuning"]).items():
    np.testing.assert_array_equal(np.asarray(tree_lib.flatten(new_params["prefix_tuning"])[key]),
                                  np.asarray(value), err_msg=key)
  batch = helpers.mixed_batch(task_of_row=(2, 0, 1, 2))
  np.testing.assert_allclose(
      lib.forward_fn(network.Transformer(config=new_cfg))(new_params, batch),
      lib.forward_fn(network.Transformer(config=cfg))(params, batch), atol=1e-5, rtol=0)
