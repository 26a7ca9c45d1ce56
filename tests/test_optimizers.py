"""Optimizers: freezing by regex, schedules, clipping over trainable gradients only."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import launcher_testlib as tl
from hyperprompt_jax import optimizers
from hyperprompt_jax import trainer as trainer_lib


def _changed_after_one_step(trainable, base_optimizer=optimizers.adafactor):
  model = tl.tiny_model(trainable=trainable, base_optimizer=base_optimizer)
  partitioner = tl.partitioner((1, 1))
  trainer = trainer_lib.Trainer(model, model.optimizer_def, partitioner,
                                trainer_lib.batch_shapes(tl.BATCH,
                                                         {"inputs": tl.LE, "targets": tl.LD}))
  state = trainer.state_from_params(tl.initial_params(), jax.random.PRNGKey(0))
  before = jax.device_get(state.params)
  state, _ = trainer.train_step(state, partitioner.shard_batch(tl.random_batches(1)[0], tl.BATCH))
  return trainer_lib.params_changed(before, jax.device_get(state.params)), state


@pytest.mark.parametrize("trainable,expected,base_optimizer", [
    ("conditioning", r"hyperprompt/.*", optimizers.adafactor),
    ("task_embeddings", r"hyperprompt/task_embedding", optimizers.adafactor),
    ([r"decoder/layers_0/.*", r"token_embedder/.*"], r"(decoder/layers_0/.*|token_embedder/.*)",
     optimizers.adamw),
])
def test_freezing_changes_exactly_the_selected_parameters(trainable, expected, base_optimizer):
  changed, state = _changed_after_one_step(trainable, base_optimizer)
  selected = {k for k in changed if re.fullmatch(expected, k)}
  assert selected  # the regex selects something
  assert {k for k, c in changed.items() if c} == selected
  # Frozen parameters carry no optimizer state (memory stays with the trainable ones).
  leaves = jax.tree_util.tree_leaves(state.opt_state)
  stats = sum(x.size for x in leaves if x.ndim)
  assert stats < sum(x.size for x in jax.tree_util.tree_leaves(state.params))


def test_frozen_parameters_are_not_differentiated():
  """Freezing the backbone drops its gradient computation from the train step (fewer
  FLOPs) and gives the same update as differentiating everything and zeroing it."""
  model = tl.tiny_model(trainable="conditioning")
  partitioner = tl.partitioner((1, 1))
  shapes = trainer_lib.batch_shapes(tl.BATCH, {"inputs": tl.LE, "targets": tl.LD})
  batch = partitioner.shard_batch(tl.random_batches(1)[0], tl.BATCH)
  frozen_only = trainer_lib.Trainer(model, model.optimizer_def, partitioner, shapes)
  assert frozen_only.frozen_paths and not any(
      p.startswith("hyperprompt/") for p in frozen_only.frozen_paths)
  everything = trainer_lib.Trainer(model, model.optimizer_def, partitioner, shapes)
  everything.frozen_paths = frozenset()  # before the first trace: the full-gradient step
  results, flops = [], []
  for trainer in (frozen_only, everything):
    state = trainer.state_from_params(tl.initial_params(), jax.random.PRNGKey(0))
    cost = trainer._train_jit.lower(state, batch).compile().cost_analysis()  # pylint: disable=protected-access
    flops.append((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])
    state, metrics = trainer.train_step(state, batch)
    results.append((jax.device_get(state.params), jax.device_get(metrics)))
  assert flops[0] < 0.9 * flops[1], flops
  (params_a, metrics_a), (params_b, metrics_b) = results
  np.testing.assert_allclose(metrics_a["loss"], metrics_b["loss"], rtol=1e-6)
  # The reported norm is that of the trainable gradients (the ones clipping sees).
  assert 0 < metrics_a["grad_norm"] < metrics_b["grad_norm"]
  for a, b in zip(jax.tree_util.tree_leaves(params_a), jax.tree_util.tree_leaves(params_b)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_trainable_errors():
  with pytest.raises(ValueError, match="unknown trainable preset"):
    optimizers.create_optimizer(trainable="backbone")
  with pytest.raises(ValueError, match="does not compile"):
    optimizers.create_optimizer(trainable=["hyperprompt/("])
  params = {"encoder": {"kernel": jnp.ones((2, 2))}}
  with pytest.raises(ValueError, match="match no parameter"):
    optimizers.param_labels(params, ("hyperprompt/.*",))


def test_schedules_from_optax():
  warm = optimizers.learning_rate_schedule(1.0, warmup_steps=10, decay="linear",
                                           decay_steps=20, end_learning_rate=0.0)
  np.testing.assert_allclose([float(warm(s)) for s in (0, 5, 10, 20, 30, 40)],
                             [0.0, 0.5, 1.0, 0.5, 0.0, 0.0], atol=1e-6)
  cosine = optimizers.learning_rate_schedule(2.0, decay="cosine", decay_steps=100,
                                             end_learning_rate=0.2)
  np.testing.assert_allclose(float(cosine(50)), 0.2 + (2.0 - 0.2) * 0.5, rtol=1e-5)
  rsqrt = optimizers.learning_rate_schedule(0.01, decay="rsqrt", decay_steps=10_000)
  # t5x's pre-training schedule 1 / sqrt(max(step, 10_000)).
  for step in (0, 5_000, 10_000, 40_000):
    np.testing.assert_allclose(float(rsqrt(step)), 1 / np.sqrt(max(step, 10_000)), rtol=1e-5)
  with pytest.raises(ValueError, match="needs decay_steps"):
    optimizers.learning_rate_schedule(1.0, decay="linear")
  with pytest.raises(ValueError, match="unknown decay"):
    optimizers.learning_rate_schedule(1.0, decay="exp")


def test_gradient_clipping_sees_only_trainable_gradients():
  params = {"hyperprompt": {"w": jnp.zeros((2,))}, "encoder": {"w": jnp.zeros((2,))}}
  grads = {"hyperprompt": {"w": jnp.array([3.0, 4.0])},
           "encoder": {"w": jnp.array([300.0, 400.0])}}
  opt = optimizers.create_optimizer(base_optimizer=lambda learning_rate: optax.sgd(
      learning_rate), learning_rate=1.0, grad_clip_norm=1.0, trainable="conditioning")
  updates, _ = opt.tx.update(grads, opt.tx.init(params), params)
  # Norm 5 clipped to 1 (the frozen encoder's huge gradient does not shrink it further).
  np.testing.assert_allclose(np.asarray(updates["hyperprompt"]["w"]), [-0.6, -0.8], rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(updates["encoder"]["w"]), [0.0, 0.0])
