"""Checkpoints: exact resume (params, optimizer, RNG, input position), atomicity, keep-N,
initial restore from a t5x checkpoint."""
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import launcher_testlib as tl
from hyperprompt_jax import checkpoints
from hyperprompt_jax import data as data_lib
from hyperprompt_jax import models
from hyperprompt_jax.formats import t5x as t5x_lib
from hyperprompt_jax.formats import tree as tree_lib
from hyperprompt_jax import train as train_lib
from hyperprompt_jax import trainer as trainer_lib


def _train(model_dir, total_steps, **kwargs):
  model = tl.tiny_model(dropout_rate=0.1)
  return train_lib.train(
      model=model, train_dataset_cfg=tl.dataset_cfg(batch_size=8), model_dir=str(model_dir),
      total_steps=total_steps, partitioner=tl.partitioner((2, 2)), log_period=5,
      checkpoint_cfg=checkpoints.CheckpointConfig(period=5, keep=None), **kwargs)


def _flat(params):
  return flax.traverse_util.flatten_dict(jax.device_get(params), sep="/")


def test_resume_equals_uninterrupted_run(tmp_path):
  full = _train(tmp_path / "full", 10, random_seed=3)
  half = _train(tmp_path / "split", 5, random_seed=3)
  assert half.step == 5
  # Restart in a new "process": everything is rebuilt from MODEL_DIR; the seed comes from
  # the checkpoint (RANDOM_SEED is not given).
  resumed = _train(tmp_path / "split", 10)
  assert resumed.step == 10
  a, b = _flat(full.state.params), _flat(resumed.state.params)
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  np.testing.assert_array_equal(
      np.asarray(jax.tree_util.tree_leaves(full.state.opt_state)[1]),
      np.asarray(jax.tree_util.tree_leaves(resumed.state.opt_state)[1]))
  # The input position was restored (10 batches consumed in both runs), not restarted.
  for name in ("full", "split"):
    manager = checkpoints.CheckpointManager(str(tmp_path / name))
    assert manager.read_metadata(10)["dataset_position"] == 10
    assert manager.read_metadata(10)["seed"] == 3
    manager.close()


def test_dataset_skip_fallback_matches_iterator_checkpoint(tmp_path):
  cfg = tl.dataset_cfg(batch_size=4)
  make = lambda: data_lib.DatasetIterator(
      data_lib.get_dataset(cfg, 0, 1, models.EncoderDecoderModel.FEATURE_CONVERTER_CLS,
                           seed=5))
  it = make()
  for _ in range(3):
    next(it)
  assert it.save(str(tmp_path / "ds"))
  expected = next(it)["encoder_input_tokens"]
  restored = make()
  restored.restore(str(tmp_path / "ds"), 3)
  skipped = make()
  skipped.restore_position(3)
  np.testing.assert_array_equal(next(restored)["encoder_input_tokens"], expected)
  np.testing.assert_array_equal(next(skipped)["encoder_input_tokens"], expected)
  assert restored.position == skipped.position == 4


def _state(value, step):
  return trainer_lib.TrainState(step=jnp.asarray(step, jnp.int32),
                                params={"w": jnp.full((4,), float(value))},
                                opt_state=(jnp.zeros((4,)),), rng=jnp.zeros((2,), jnp.uint32))


def test_keep_n_plus_best_steps_and_incomplete_saves_are_ignored(tmp_path):
  preserve = {2}
  manager = checkpoints.CheckpointManager(
      str(tmp_path), checkpoints.CheckpointConfig(period=2, keep=2, async_save=False),
      preserve_steps=preserve)
  for step in range(1, 9):
    manager.save(step, _state(step, step))
  manager.wait_until_finished()
  assert manager.all_steps() == [2, 6, 8]  # period 2, latest 2 kept + best step 2
  assert not manager.save(8, _state(0, 8), force=True)  # never overwrites a step
  manager.close()
  # A crash mid-save leaves only Orbax's temporary folder: restarts ignore it.
  partial = tmp_path / "checkpoint_10.orbax-checkpoint-tmp-1234567"
  (partial / "state").mkdir(parents=True)
  (partial / "state" / "garbage").write_text("truncated")
  manager = checkpoints.CheckpointManager(str(tmp_path))
  assert manager.latest_step() == 8
  abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(
      x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])),
                                    _state(0, 0))
  state, meta = manager.restore(8, abstract)
  np.testing.assert_array_equal(np.asarray(state.params["w"]), np.full((4,), 8.0))
  assert int(state.step) == 8 and meta["step"] == 8
  manager.close()


def test_initial_checkpoint_restores_backbone_and_initialises_hyperprompt(tmp_path):
  """INITIAL_CHECKPOINT_PATH: a t5x (Orbax) checkpoint of vanilla T5 -> HyperPrompt model."""
  vanilla = tl.tiny_config(hyperprompt_variant="none", num_encoder_layers=1,
                           num_decoder_layers=1)
  backbone = tree_lib.abstract_params(vanilla)
  rng = np.random.RandomState(0)
  values = jax.tree_util.tree_map(lambda x: rng.normal(size=x.shape).astype(np.float32),
                                  backbone)
  path = t5x_lib.save_orbax_checkpoint(str(tmp_path / "pretrained"), values,
                                               step=1000)
  result = _train(tmp_path / "run", 1000, random_seed=0, initial_checkpoint_path=path)
  assert result.step == 1000  # t5x semantics: TRAIN_STEPS counts the pretrained steps
  restored = _flat(result.state.params)
  expected = _flat(values)
  for key, value in expected.items():
    np.testing.assert_allclose(restored[key], value, err_msg=key)
  new = [k for k in restored if k.startswith("hyperprompt/")]
  assert new and all(np.abs(restored[k]).sum() > 0 for k in new if "bias" not in k)
  assert checkpoints.CheckpointManager(str(tmp_path / "run")).latest_step() == 1000


def test_initial_checkpoint_that_does_not_fit_is_one_clear_error(tmp_path):
  other = tl.tiny_config(hyperprompt_variant="none", num_encoder_layers=1,
                         num_decoder_layers=1, emb_dim=8)
  values = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, np.float32),
                                  tree_lib.abstract_params(other))
  path = t5x_lib.save_orbax_checkpoint(str(tmp_path / "other"), values)
  with pytest.raises(ValueError, match="shape mismatch") as info:
    _train(tmp_path / "run", 1, random_seed=0, initial_checkpoint_path=path)
  assert "\n" not in str(info.value)
  assert not os.path.exists(tmp_path / "run" / "checkpoint_0")
