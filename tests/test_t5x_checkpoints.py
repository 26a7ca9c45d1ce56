"""t5x checkpoint layouts (Orbax and legacy msgpack + zarr) and restoring into the network."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath
from flax import serialization

from hyperprompt_jax import network
from hyperprompt_jax.formats import restore as restore_lib
from hyperprompt_jax.formats import t5x as t5x_lib
from hyperprompt_jax.formats import tree as tree_lib

import helpers


def _vanilla(**overrides):
  return helpers.tiny_config(hyperprompt_variant="none", **overrides)


def _params(config, seed=0):
  return helpers.init_params(config, seed=seed)[1]["params"]


def _assert_trees_equal(actual, expected):
  a, e = tree_lib.flatten(actual), tree_lib.flatten(expected)
  assert set(a) == set(e)
  for key in e:
    assert np.asarray(a[key]).dtype == np.asarray(e[key]).dtype, key
    np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(e[key]), err_msg=key)


def _error(fn, *args, **kwargs):
  with pytest.raises(tree_lib.CheckpointError) as info:
    fn(*args, **kwargs)
  return str(info.value)


def test_orbax_layout_round_trip_and_t5x_style_restore(tmp_path):
  config = _vanilla()
  p1, p3 = _params(config, 1), _params(config, 3)
  model_dir = str(tmp_path / "model")
  t5x_lib.save_orbax_checkpoint(model_dir, p1, step=1)
  path3 = t5x_lib.save_orbax_checkpoint(model_dir, p3, step=3)
  assert path3 == os.path.join(model_dir, "checkpoint_3")
  assert os.path.isfile(os.path.join(path3, "state", "_METADATA"))
  assert not os.path.exists(os.path.join(path3, "checkpoint"))

  _assert_trees_equal(restore_lib.load_params(path3), p3)
  _assert_trees_equal(restore_lib.load_params(model_dir), p3)  # latest step
  _assert_trees_equal(restore_lib.load_params(os.path.join(model_dir, "checkpoint_1", "state")), p1)
  assert restore_lib.open_checkpoint(path3).kind == "orbax"

  # Restore the way t5x's OrbaxCheckpointManagerInterface does: a CheckpointManager
  # with step prefix 'checkpoint' and a PyTreeCheckpointHandler(use_ocdbt=True) item 'state'.
  manager = ocp.CheckpointManager(
      model_dir, item_handlers={"state": ocp.PyTreeCheckpointHandler(use_ocdbt=True)},
      options=ocp.CheckpointManagerOptions(step_prefix="checkpoint"))
  assert list(manager.all_steps()) == [1, 3]
  item = {"target": jax.tree_util.tree_map(np.zeros_like, p3), "state": {"step": np.int32(0)}}
  restored = manager.restore(3, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(item)))
  manager.close()
  assert int(restored["state"]["state"]["step"]) == 3
  _assert_trees_equal(jax.tree_util.tree_map(np.asarray, restored["state"]["target"]), p3)


def test_relative_checkpoint_paths_are_taken_from_the_working_directory(tmp_path, monkeypatch):
  """Orbax refuses relative paths ("Checkpoint path should be absolute"): we resolve them."""
  config = _vanilla()
  params = _params(config, 4)
  t5x_lib.save_orbax_checkpoint(str(tmp_path / "orbax"), params, step=4)
  t5x_lib.save_legacy_checkpoint(str(tmp_path / "legacy"), params, step=4)
  monkeypatch.chdir(tmp_path)
  for rel in ("orbax/checkpoint_4", "orbax", os.path.join("orbax", "checkpoint_4", "state"),
              "legacy/checkpoint_4", "./legacy"):
    kind, location = restore_lib.resolve_checkpoint(rel)
    assert os.path.isabs(location) and location.startswith(str(tmp_path)), (rel, location)
    _assert_trees_equal(restore_lib.load_params(rel), params)


def test_legacy_layout_round_trip(tmp_path):
  config = _vanilla()
  params = _params(config, 2)
  path = t5x_lib.save_legacy_checkpoint(str(tmp_path), params, step=2, max_chunk_elements=64)
  assert path == str(tmp_path / "checkpoint_2")
  contents = serialization.msgpack_restore((tmp_path / "checkpoint_2" / "checkpoint").read_bytes())
  assert contents["version"] == 3 and int(contents["optimizer"]["state"]["step"]) == 2
  target = contents["optimizer"]["target"]
  spec = target["encoder"]["layers_0"]["attention"]["query"]["kernel"]
  assert spec["driver"] == "zarr"
  assert spec["kvstore"] == {"driver": "file",
                             "path": "target.encoder.layers_0.attention.query.kernel"}
  folder = tmp_path / "checkpoint_2" / "target.encoder.layers_0.attention.query.kernel"
  assert (folder / ".zarray").is_file() and len(os.listdir(folder)) > 2  # several chunks
  # Small leaves are stored inline, as t5x does for unpartitioned ones.
  np.testing.assert_array_equal(target["encoder"]["encoder_norm"]["scale"],
                                params["encoder"]["encoder_norm"]["scale"])
  assert restore_lib.open_checkpoint(path).kind == "legacy"
  _assert_trees_equal(restore_lib.load_params(path), params)
  _assert_trees_equal(restore_lib.load_params(str(tmp_path)), params)

  # Spec variants found in published t5x checkpoints: 'gfile' kvstore (prompt-tuning's
  # test_t5_1_1_tiny) and a gcs spec with the relative path at top level.
  for variant in ("gfile", "gcs"):
    def rewrite(x, variant=variant):
      if isinstance(x, dict) and "driver" in x and "kvstore" in x:
        name = x["kvstore"]["path"]
        if variant == "gfile":
          return dict(x, kvstore={"driver": "gfile", "path": name})
        return dict(x, kvstore={"driver": "gcs", "bucket": "t5x-dummy-bucket"}, path=name)
      if isinstance(x, dict):
        return {k: rewrite(v) for k, v in x.items()}
      return x
    changed = dict(contents, optimizer=dict(contents["optimizer"], target=rewrite(target)))
    (tmp_path / "checkpoint_2" / "checkpoint").write_bytes(serialization.msgpack_serialize(changed))
    _assert_trees_equal(restore_lib.load_params(path), params)


def test_restore_initialises_only_the_conditioning_params_fresh(tmp_path):
  backbone = _params(_vanilla(), 4)
  path = t5x_lib.save_orbax_checkpoint(str(tmp_path), backbone)
  config = helpers.tiny_config(hyperprompt_variant="share")
  rng = jax.random.PRNGKey(7)
  restored = restore_lib.restore_params(path, config, rng=rng)
  full_init = tree_lib.flatten(
      tree_lib._init_params(config, rng))  # pylint: disable=protected-access
  flat, ckpt = tree_lib.flatten(restored), tree_lib.flatten(backbone)
  fresh = sorted(k for k in flat if k not in ckpt)
  assert fresh and all(k.startswith("hyperprompt/") for k in fresh)
  for key in flat:
    if key in ckpt:
      np.testing.assert_array_equal(flat[key], np.asarray(ckpt[key]), err_msg=key)
    else:  # The same initialiser and rng (jit vs eager may differ in the last bit).
      np.testing.assert_allclose(flat[key], np.asarray(full_init[key]), rtol=1e-6, atol=1e-7,
                                 err_msg=key)

  # A concrete template supplies the fresh values itself (variables dict accepted too).
  template = {"params": jax.tree_util.tree_map(lambda x: x + 1.0, restored)}
  out = restore_lib.restore_params(path, template)
  assert set(out) == {"params"}
  for key, value in tree_lib.flatten(out["params"]).items():
    want = ckpt[key] if key in ckpt else tree_lib.flatten(template["params"])[key]
    np.testing.assert_array_equal(value, np.asarray(want), err_msg=key)

  # The restored tree runs in the network.
  module = network.Transformer(config=config)
  logits = jax.jit(lambda p: helpers.forward(module, p, helpers.mixed_batch()))(restored)
  assert np.isfinite(np.asarray(logits)).all()

  # Without the fallback the same restore is an error naming a HyperPrompt parameter.
  msg = _error(restore_lib.restore_params, path, config, fallback_to_scratch=())
  assert "in the model but not the checkpoint" in msg and fresh[0] in msg


def test_restore_errors_name_the_parameter_and_both_shapes(tmp_path):
  config = _vanilla()
  params = _params(config)
  path = t5x_lib.save_legacy_checkpoint(str(tmp_path / "legacy"), params)

  msg = _error(restore_lib.restore_params, path, _vanilla(mlp_dim=40))
  assert "encoder/layers_0/mlp/wi_0/kernel (16, 32) vs (16, 40)" in msg

  msg = _error(restore_lib.restore_params, path, _vanilla(logits_via_embedding=True))
  assert "in the checkpoint but not the model" in msg and "decoder/logits_dense/kernel" in msg

  msg = _error(restore_lib.restore_params, path, _vanilla(mlp_activations=("relu",)))
  assert "encoder/layers_0/mlp/wi/kernel" in msg and "encoder/layers_0/mlp/wi_0/kernel" in msg

  # A T5Config saved next to the checkpoint catches what shapes cannot.
  tree_lib.write_config(str(tmp_path / "legacy" / tree_lib.CONFIG_FILENAME), config)
  msg = _error(restore_lib.restore_params, path, _vanilla(layer_norm_epsilon=1e-5))
  assert "layer_norm_epsilon: 1e-06 vs 1e-05" in msg
  _assert_trees_equal(restore_lib.restore_params(path, config), params)


def test_missing_truncated_and_corrupt_checkpoints(tmp_path):
  config = _vanilla()
  params = _params(config)
  assert "does not exist" in _error(restore_lib.load_params, str(tmp_path / "nope"))
  (tmp_path / "empty").mkdir()
  assert "is not a checkpoint" in _error(restore_lib.load_params, str(tmp_path / "empty"))

  legacy = t5x_lib.save_legacy_checkpoint(str(tmp_path / "legacy"), params,
                                           max_chunk_elements=64)
  msgpack_file = os.path.join(legacy, "checkpoint")
  raw = open(msgpack_file, "rb").read()
  with open(msgpack_file, "wb") as f:
    f.write(raw[:len(raw) // 2])
  assert "not a readable t5x msgpack" in _error(restore_lib.load_params, legacy)
  with open(msgpack_file, "wb") as f:
    f.write(np.random.RandomState(0).bytes(200))
  assert "checkpoint" in _error(restore_lib.load_params, legacy)
  with open(msgpack_file, "wb") as f:
    f.write(raw)
  folder = os.path.join(legacy, "target.decoder.layers_1.mlp.wo.kernel")
  os.remove(os.path.join(folder, sorted(os.listdir(folder))[-1]))
  msg = _error(restore_lib.load_params, legacy)
  assert "decoder/layers_1/mlp/wo/kernel" in msg and "missing" in msg

  # Orbax: a truncated tree metadata file, and an OCDBT store without its manifest.
  # (Truncated data files also give a CheckpointError, but orbax then leaves reads in
  # flight that later complain about its closed event loop, so they are not tested here.)
  orbax_path = t5x_lib.save_orbax_checkpoint(str(tmp_path / "orbax"), params)
  metadata = os.path.join(orbax_path, "state", "_METADATA")
  raw = open(metadata, "rb").read()
  with open(metadata, "wb") as f:
    f.write(raw[:len(raw) // 2])
  msg = _error(restore_lib.load_params, orbax_path)
  assert "cannot read the Orbax checkpoint metadata" in msg and orbax_path in msg
  orbax_path = t5x_lib.save_orbax_checkpoint(str(tmp_path / "orbax2"), params)
  os.remove(os.path.join(orbax_path, "state", "manifest.ocdbt"))
  assert "no manifest.ocdbt" in _error(restore_lib.load_params, orbax_path)


def test_infer_config_from_shapes(tmp_path):
  for overrides in (dict(), dict(mlp_activations=("relu",), logits_via_embedding=True,
                                 num_decoder_layers=3, relative_attention_num_buckets=8)):
    config = _vanilla(**overrides)
    shapes = {k: tuple(v.shape) for k, v in
              tree_lib.flatten(tree_lib.abstract_params(config)).items()}
    inferred, notes = tree_lib.infer_config(shapes)
    assert tree_lib.architecture_mismatches(inferred, config) == []
    assert any("relative_attention_max_distance" in n for n in notes)
  msg = _error(tree_lib.infer_config, {"encoder/relpos_bias/rel_embedding": (2, 32)})
  assert "token_embedder/embedding" in msg
