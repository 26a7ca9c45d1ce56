"""A conditioning method registered from outside the package trains and decodes unchanged.

The method below (a learned key/value prefix per task and layer) lives in this test
file only: one module and one `conditioning.register` call. Nothing under
`hyperprompt_jax/` names it, yet the network builds it, the partitioner places its
parameters, the trainer trains them, the cached decoder uses them, and the checkpoint
restore, the 'conditioning' trainable preset and the MODEL_DIR check know them.
"""
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax.linen import partitioning as nn_partitioning

from hyperprompt_jax import conditioning
from hyperprompt_jax import errors
from hyperprompt_jax import network
from hyperprompt_jax import optimizers
from hyperprompt_jax import partitioning
from hyperprompt_jax import preflight
from hyperprompt_jax import trainer as trainer_lib
from hyperprompt_jax.conditioning import seams
from hyperprompt_jax.formats import tree as tree_lib

import helpers
import launcher_testlib as tl

NAME = "test_task_kv"
ROWS = "test_kv_rows"  # a logical axis no method of the package uses


class TaskKV(nn.Module):
  """Per-task, per-layer key/value prefixes `[T, M, l, H*D]` (l = prefix_length)."""
  config: Any

  @nn.compact
  def __call__(self, task_ids, stack):
    cfg = self.config
    shape = (cfg.num_tasks, cfg.num_encoder_layers + cfg.num_decoder_layers, cfg.prefix_length,
             cfg.num_heads * cfg.head_dim)
    axes = ("tasks", "layers", ROWS, "prompt_embed")
    init = nn.initializers.normal(stddev=cfg.prompt_init_stddev)
    keys = nn_partitioning.param_with_axes("keys", init, shape, jnp.float32, axes=axes)
    values = nn_partitioning.param_with_axes("values", init, shape, jnp.float32, axes=axes)
    layers = seams.stack_layers(stack, cfg.num_encoder_layers, cfg.num_decoder_layers)
    return seams.gather_prefixes(keys[:, layers], values[:, layers], task_ids, cfg.num_heads,
                                 cfg.head_dim)


def _num_params(cfg):
  layers = cfg.num_encoder_layers + cfg.num_decoder_layers
  return 2 * cfg.num_tasks * layers * cfg.prefix_length * cfg.num_heads * cfg.head_dim


@pytest.fixture
def method():
  record = conditioning.register(conditioning.Method(
      name=NAME, seam="prefix", module=TaskKV, num_params=_num_params,
      axis_rules=((ROWS, None),), factor_rules={ROWS: "none"},
      validate=lambda cfg: errors.check_positive(cfg, "prefix_length"),
      runtime_fields=("prompt_init_stddev",)))
  yield record
  conditioning.unregister(NAME)


def test_an_outside_method_trains_two_steps_and_decodes_with_the_cache(method):
  model = tl.tiny_model(conditioning=NAME, hyperprompt_variant="none", prefix_length=3,
                        learning_rate=0.1)
  cfg = model.module.config
  assert conditioning.active(cfg) is method
  assert (ROWS, None) in partitioning.standard_logical_axis_rules()
  assert partitioning.factor_rules()[ROWS] == "none"

  partitioner = tl.partitioner((2, 1))
  trainer = trainer_lib.Trainer(model, model.optimizer_def, partitioner,
                                trainer_lib.batch_shapes(tl.BATCH, {"inputs": tl.LE,
                                                                    "targets": tl.LD}))
  state = trainer.init_state(jax.random.PRNGKey(0))
  before = jax.device_get(state.params)
  assert sum(x.size for x in jax.tree_util.tree_leaves(before[NAME])) == _num_params(cfg)
  assert conditioning.expected_num_params(cfg) == _num_params(cfg)
  for batch in tl.random_batches(2, seed=3):
    state, metrics = trainer.train_step(state, partitioner.shard_batch(batch, tl.BATCH))
    assert np.isfinite(float(metrics["loss"]))
  params = jax.device_get(state.params)
  assert int(jax.device_get(state.step)) == 2
  assert not np.allclose(params[NAME]["keys"], before[NAME]["keys"])  # trained

  # Cached step-by-step decoding sees the same prefixes as the teacher-forced pass.
  batch = {k: jnp.asarray(v) for k, v in tl.random_batches(1, seed=4)[0].items()}
  module = model.module
  full = helpers.forward(module, params, batch)
  cached, _ = helpers.cached_decode_logits(module, params, batch)
  np.testing.assert_allclose(np.asarray(cached), np.asarray(full), rtol=2e-4, atol=2e-4)
  vanilla = network.Transformer(config=cfg.replace(conditioning="none"))
  backbone = {k: v for k, v in params.items() if k != NAME}
  assert not np.allclose(np.asarray(helpers.forward(vanilla, backbone, batch)),
                         np.asarray(full), atol=1e-3)  # the prefixes condition the output
  tokens, _ = jax.device_get(trainer.predict_batch(
      state.params, partitioner.shard_batch(tl.random_batches(1, seed=4)[0], tl.BATCH)))
  assert tokens.shape == (tl.BATCH, tl.LD)

  # The rest of the library reads the record too.
  assert tree_lib.is_conditioning_param(f"{NAME}/keys")  # restored fresh from a backbone
  assert f"{NAME}/.*" in optimizers.resolve_trainable("conditioning")
  assert "prompt_init_stddev" in preflight.runtime_fields()
  with pytest.raises(errors.ConfigError, match="prefix_length must be >= 1"):
    network.validate_config(cfg.replace(prefix_length=0))


def test_a_method_needs_a_known_seam_and_rules_for_its_axes():
  with pytest.raises(errors.ConfigError, match="seam must be one of"):
    conditioning.register(conditioning.Method(name=NAME, seam="middle", module=TaskKV,
                                              num_params=_num_params))
  with pytest.raises(errors.ConfigError, match="need both an axis rule and a factor rule"):
    conditioning.register(conditioning.Method(name=NAME, seam="prefix", module=TaskKV,
                                              num_params=_num_params,
                                              axis_rules=((ROWS, None),)))
  with pytest.raises(errors.ConfigError, match="already registered"):
    conditioning.register(conditioning.Method(name="hyperprompt", seam="prefix", module=TaskKV,
                                              num_params=_num_params))
  assert NAME not in conditioning.names()
