"""Meshes, shardings and per-host layout; sharded training equals single-device training."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import launcher_testlib as tl
from hyperprompt_jax import gin_utils
from hyperprompt_jax import models
from hyperprompt_jax import network
from hyperprompt_jax import optimizers
from hyperprompt_jax import partitioning
from hyperprompt_jax import trainer as trainer_lib

BATCH, LE, LD = tl.BATCH, tl.LE, tl.LD


def _run(mesh_shape, steps=5):
  """Loss after `steps` Adafactor steps (dropout on) and the final state."""
  partitioner = tl.partitioner(mesh_shape)
  model = tl.tiny_model(dropout_rate=0.1)
  trainer = trainer_lib.Trainer(model, model.optimizer_def, partitioner,
                                trainer_lib.batch_shapes(BATCH, {"inputs": LE, "targets": LD}))
  # The same initial parameters on every mesh (initialised once, on the host).
  state = trainer.state_from_params(tl.initial_params(), jax.random.PRNGKey(0))
  losses = []
  for batch in tl.random_batches(steps):
    state, metrics = trainer.train_step(state, partitioner.shard_batch(batch, BATCH))
    losses.append(float(metrics["loss"]))
  return losses, state, trainer


def test_sharded_meshes_match_single_device_and_shard_params_along_model():
  reference, ref_state, _ = _run((1, 1))
  assert reference[-1] < reference[0]  # it trains
  for shape in ((8, 1), (4, 2), (2, 4)):
    losses, state, trainer = _run(shape)
    np.testing.assert_allclose(losses, reference, rtol=1e-4, err_msg=str(shape))
    np.testing.assert_allclose(np.asarray(state.params["decoder"]["logits_dense"]["kernel"]),
                               np.asarray(ref_state.params["decoder"]["logits_dense"]["kernel"]),
                               rtol=2e-3, atol=2e-5)
    model_size = shape[1]
    emb = state.params["token_embedder"]["embedding"]  # (vocab, embed): vocab on 'model'
    wi = state.params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]  # (embed, mlp)
    assert "layers_1" not in state.params["encoder"]  # 1 + 1 layers: fast to compile
    query = state.params["encoder"]["layers_0"]["attention"]["query"]["kernel"]
    if model_size > 1:
      assert emb.sharding.spec == P("model", None)
      assert wi.sharding.spec == P(None, "model")
      assert query.sharding.spec == P(None, "model")
      assert emb.addressable_shards[0].data.shape == (tl.MODEL_VOCAB_SIZE // model_size, 16)
      assert wi.addressable_shards[0].data.shape == (16, 32 // model_size)
      # Optimizer state follows: Adafactor's factored row statistics of wi_0 (embed,)
      # are replicated, the full second moment of the (small) embedding follows it.
      assert len({d for d in emb.sharding.device_set}) == 8
    else:
      assert emb.addressable_shards[0].data.shape == emb.shape
    # HyperPrompt parameters are small: replicated everywhere.
    assert state.params["hyperprompt"]["task_embedding"].sharding.is_fully_replicated
    assert trainer.state_shardings.params["token_embedder"]["embedding"].spec == P("model", None)


def test_opt_state_shardings_follow_their_parameters():
  partitioner = partitioning.Partitioner(mesh_shape=(2, 4))
  params = {"w": jax.ShapeDtypeStruct((256, 512), jnp.float32),
            "b": jax.ShapeDtypeStruct((512,), jnp.float32)}
  shardings = {"w": jax.sharding.NamedSharding(partitioner.mesh, P(None, "model")),
               "b": jax.sharding.NamedSharding(partitioner.mesh, P("model"))}
  state = jax.eval_shape(optimizers.adafactor(1e-3).init, params)
  out = partitioner.opt_state_shardings(state, params, shardings)
  flat = {jax.tree_util.keystr(p): s.spec for p, s in
          jax.tree_util.tree_flatten_with_path(out)[0]}
  by_shape = {}
  for (path, leaf), (_, spec) in zip(jax.tree_util.tree_flatten_with_path(state)[0],
                                      jax.tree_util.tree_flatten_with_path(out)[0]):
    by_shape.setdefault(("['w']" in jax.tree_util.keystr(path), leaf.shape), spec.spec)
  assert by_shape[(True, (256,))] == P(None)  # v_row: the 'model' column reduced away
  assert by_shape[(True, (512,))] == P("model")  # v_col keeps the column split
  assert by_shape[(False, (512,))] == P("model")  # unfactored v of the bias
  assert any(s == P() for s in flat.values())  # the step count is replicated


def test_mesh_shapes_and_errors():
  assert partitioning.mesh_shape_for(8, num_partitions=2) == (4, 2)
  assert partitioning.mesh_shape_for(8, mesh_shape=(-1, 4)) == (2, 4)
  assert partitioning.mesh_shape_for(8) == (8, 1)
  with pytest.raises(ValueError, match="must divide"):
    partitioning.mesh_shape_for(8, num_partitions=3)
  with pytest.raises(ValueError, match="needs 16 devices"):
    partitioning.mesh_shape_for(8, mesh_shape=(4, 4))
  with pytest.raises(ValueError, match="needs 16 devices"):
    partitioning.create_mesh(mesh_shape=(4, 4))
  assert partitioning.create_mesh(mesh_shape=(1, 1)).devices.size == 1
  mesh = partitioning.create_mesh(num_partitions=4)
  assert mesh.axis_names == ("data", "model") and dict(mesh.shape) == {"data": 2, "model": 4}
  # A dimension the mesh axis does not divide is replicated, never split unevenly.
  assert partitioning.fit_spec(P("model", None), (2, 16), mesh) == P(None, None)
  assert partitioning.fit_spec(P("model", None), (8, 16), mesh) == P("model", None)


def test_data_layout_and_batch_sharding():
  partitioner = partitioning.Partitioner(mesh_shape=(4, 2))
  layout = partitioner.get_data_layout(16)
  assert layout == partitioning.DataLayout(16, 0, 1, True)  # one host reads everything
  with pytest.raises(ValueError, match="divisible by the 'data' mesh axis"):
    partitioner.get_data_layout(6)
  batch = partitioner.shard_batch({"x": np.arange(32).reshape(16, 2)}, 16)
  assert batch["x"].sharding.spec == P("data")
  assert batch["x"].addressable_shards[0].data.shape == (4, 2)


def _xxl_model():
  import gin
  gin.clear_config()
  gin_utils.parse_gin(["models/t5_1_1/xxl.gin", "conditioning/hyperprompt_global.gin"],
                      ["DROPOUT_RATE = 0.0", "NUM_TASKS = 16",
                       "models.EncoderDecoderModel.input_vocabulary = None",
                       "models.EncoderDecoderModel.output_vocabulary = None"])
  config = gin.get_bindings("network.T5Config")
  gin.clear_config()
  cfg = network.T5Config(**config)
  opt = optimizers.create_optimizer(learning_rate=1e-3)
  return models.EncoderDecoderModel(network.Transformer(config=cfg), optimizer_def=opt)


def test_xxl_train_step_eval_shape_on_abstract_16x16_mesh():
  """T5.1.1 XXL + HyperPrompt-Global on (data=16, model=16) without devices or memory."""
  partitioner = partitioning.Partitioner(mesh=partitioning.create_abstract_mesh((16, 16)))
  model = _xxl_model()
  trainer = trainer_lib.Trainer(model, model.optimizer_def, partitioner,
                                trainer_lib.batch_shapes(256, {"inputs": 512, "targets": 128}))
  new_state, metrics = trainer.abstract_train_step()
  assert new_state.params["token_embedder"]["embedding"].shape == (32128, 4096)
  assert metrics["loss"].shape == ()
  total = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(trainer.abstract_params))
  per_device = partitioning.per_device_bytes(trainer.abstract_params)
  opt_per_device = partitioning.per_device_bytes(trainer.abstract_state.opt_state)
  print(f"\nT5.1.1 XXL + HyperPrompt-Global: {total / 1e9:.2f}B parameters, "
        f"{total * 4 / 2**30:.1f} GiB float32; on a (data=16, model=16) mesh each device holds "
        f"{per_device / 2**30:.3f} GiB of parameters and {opt_per_device / 2**20:.1f} MiB of "
        "Adafactor state")
  assert total > 11e9
  # 1-D model parallelism splits (nearly) every big matrix 16 ways.
  assert per_device < total * 4 / 16 * 1.05
  assert per_device > total * 4 / 16 * 0.95
  emb = trainer.abstract_params["token_embedder"]["embedding"]
  assert emb.sharding.shard_shape(emb.shape) == (32128 // 16, 4096)
