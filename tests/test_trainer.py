"""Trainer: sharded predict / score / eval steps equal the unsharded model; abstract steps."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import launcher_testlib as tl
from hyperprompt_jax import trainer as trainer_lib


def test_sharded_predict_score_and_eval_match_the_model():
  model = tl.tiny_model()
  partitioner = tl.partitioner((2, 4))
  trainer = trainer_lib.Trainer(model, None, partitioner,
                                trainer_lib.batch_shapes(tl.BATCH, {"inputs": tl.LE,
                                                                    "targets": tl.LD}))
  state = trainer.init_state(jax.random.PRNGKey(1))
  batch = tl.random_batches(1, seed=4)[0]
  sharded = partitioner.shard_batch(batch, tl.BATCH)
  params = jax.device_get(state.params)
  host = {k: jnp.asarray(v) for k, v in batch.items()}

  tokens, scores = jax.device_get(trainer.predict_batch(state.params, sharded))
  want_tokens, want_aux = jax.jit(model.predict_batch_with_aux)(params, host)
  np.testing.assert_array_equal(tokens, np.asarray(want_tokens))
  np.testing.assert_allclose(scores, np.asarray(want_aux["scores"]), rtol=1e-5, atol=1e-5)
  assert tokens.shape == (tl.BATCH, tl.LD)

  np.testing.assert_allclose(jax.device_get(trainer.score_batch(state.params, sharded)),
                             np.asarray(jax.jit(model.score_batch)(params, host)),
                             rtol=1e-5, atol=1e-4)
  metrics = jax.device_get(trainer.eval_step(state.params, sharded))
  want = jax.jit(model.eval_fn)(params, host)[1]
  np.testing.assert_allclose(metrics["loss"], float(want["loss"]), rtol=1e-5)
  # An evaluation-only trainer has no optimizer: training is refused with a clear error.
  with pytest.raises(ValueError, match="optimizer_def"):
    trainer.train_step(state, sharded)


def test_abstract_train_step_and_state_layout():
  model = tl.tiny_model()
  trainer = trainer_lib.Trainer(model, model.optimizer_def, tl.partitioner((4, 2)),
                                trainer_lib.batch_shapes(16, {"inputs": 12, "targets": 4}))
  new_state, metrics = trainer.abstract_train_step()
  assert new_state.step.shape == () and new_state.rng.shape == (2,)
  assert {"loss", "accuracy", "grad_norm", "learning_rate", "weight_sum"} <= set(metrics)
  assert jax.tree_util.tree_structure(new_state.params) == jax.tree_util.tree_structure(
      trainer.abstract_state.params)
  kernel = trainer.abstract_state.params["encoder"]["layers_0"]["mlp"]["wo"]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec("model", None)
  with pytest.raises(ValueError, match="divisible by the 'data' mesh axis"):
    trainer.partitioner.get_data_layout(6)
