"""Adding a task to a trained HyperPrompt-Global model (task_extension.py).

A tiny 6-task model's checkpoint (with the task table of `hyperprompt_offline_v1`) is
restored by the launcher into a 7-task model with `train(extend_tasks=True)` and
trained with `trainable='task_embeddings'` on `hyperprompt_offline_v1_new_task`: only
row 6 of `hyperprompt/task_embedding` may change; every other parameter and row is
bit-identical to the checkpoint (or, for the new rows, to a fresh model's init).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import launcher_testlib
from hyperprompt_jax import checkpoints
from hyperprompt_jax import data as data_lib
from hyperprompt_jax import models
from hyperprompt_jax import network
from hyperprompt_jax import optimizers
from hyperprompt_jax.formats import scan as scan_lib
from hyperprompt_jax.formats import t5x as t5x_lib
from hyperprompt_jax.formats import tree as tree_lib
from hyperprompt_jax import task_extension
from hyperprompt_jax import train as train_lib

import hyperprompt_tasks
from hyperprompt_tasks import offline
from hyperprompt_tasks import vocabularies

VOCAB = vocabularies.byte_vocabulary()  # task k's sentinel: 358 - k
SEED = 3
LENGTHS = dict(offline.FEATURE_LENGTHS)
EMB, NEW = "hyperprompt/task_embedding", "hyperprompt/global_prompts"


def _model(num_tasks, trainable="all", learning_rate=1e-2, num_layers=1, scan_layers=False):
  config = network.T5Config(
      vocab_size=384, emb_dim=16, num_heads=2, head_dim=4, num_encoder_layers=num_layers,
      num_decoder_layers=num_layers, mlp_dim=32, mlp_activations=("gelu", "linear"),
      dropout_rate=0.0, num_tasks=num_tasks, task_sentinel_id=VOCAB.vocab_size - 1,
      hyperprompt_variant="global", prompt_length=2, prompt_bottleneck_dim=4, task_embed_dim=4,
      layer_task_dim=4, task_hidden_dim=8, scan_layers=scan_layers)
  opt = optimizers.create_optimizer(learning_rate=learning_rate, trainable=trainable)
  return models.EncoderDecoderModel(network.Transformer(config=config), input_vocabulary=VOCAB,
                                    output_vocabulary=VOCAB, optimizer_def=opt)


def _train(model_dir, model, mixture, total_steps, **kwargs):
  cfg = data_lib.DatasetConfig(mixture_or_task_name=mixture, task_feature_lengths=LENGTHS,
                               split="train", batch_size=8, shuffle=True,
                               module="hyperprompt_tasks")
  return train_lib.train(
      model=model, train_dataset_cfg=cfg, model_dir=str(model_dir), total_steps=total_steps,
      partitioner=launcher_testlib.partitioner(), random_seed=SEED, log_period=100,
      checkpoint_cfg=checkpoints.CheckpointConfig(period=100, async_save=False), **kwargs)


def _flat(params):
  return {k: np.asarray(v) for k, v in tree_lib.flatten(jax.device_get(params)).items()}


SHAPES = {"encoder_input_tokens": (8, LENGTHS["inputs"]),
          "decoder_input_tokens": (8, LENGTHS["targets"])}


def _init(model, seed):
  init = jax.jit(lambda key: model.get_initial_variables(key, SHAPES)["params"])  # eager: slow
  return _flat(init(jax.random.PRNGKey(seed)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A 6-task model saved as a checkpoint with its task table; the 7-task model restored
  from it with extend_tasks=True and trained 3 steps on the new task only."""
  root = tmp_path_factory.mktemp("task_extension")
  base = _init(_model(6), seed=SEED + 1)  # not what a fresh model (seed SEED) starts with
  base_dir = str(root / "base")
  ckpt = t5x_lib.save_orbax_checkpoint(base_dir, tree_lib.unflatten(base), step=2)
  hyperprompt_tasks.save_task_table(base_dir, data_lib.task_table(offline.OFFLINE_MIXTURE))
  adapted = _train(root / "adapted", _model(7, trainable="task_embeddings", learning_rate=0.5),
                   offline.OFFLINE_NEW_TASK_MIXTURE, 5, initial_checkpoint_path=ckpt,
                   extend_tasks=True)
  return dict(base=base, fresh=_init(_model(7), seed=SEED), adapted=_flat(adapted.state.params),
              ckpt=ckpt, root=root, step=adapted.step)


def test_adaptation_changes_only_the_new_task_embedding_row(runs):
  base, fresh, adapted = runs["base"], runs["fresh"], runs["adapted"]
  assert runs["step"] == 5 and set(base) == set(adapted)
  extended = sorted(k for k in base if base[k].shape != adapted[k].shape)
  assert extended == [NEW, EMB]  # the task-indexed params of HyperPrompt-Global
  for key in set(base) - set(extended):  # frozen: bit-identical to the checkpoint
    np.testing.assert_array_equal(adapted[key], base[key], err_msg=key)
  for key in extended:
    assert base[key].shape[0] == 6 and adapted[key].shape[0] == 7
    np.testing.assert_array_equal(adapted[key][:6], base[key])  # trained rows kept, unchanged
  # The new prompt row is the fresh 7-task model's (same key), untouched by training ...
  np.testing.assert_array_equal(adapted[NEW][6], fresh[NEW][6])
  assert np.abs(fresh[EMB][6]).sum() > 0
  # ... and the new task's embedding row is the only thing that was learned.
  assert not np.allclose(adapted[EMB][6], fresh[EMB][6])


def test_task_table_must_extend_the_checkpoints(runs):
  table = data_lib.task_table(offline.OFFLINE_NEW_TASK_MIXTURE)
  saved = task_extension.check_extended_task_table(runs["ckpt"], table)
  assert tuple(saved) == tuple(table[:6])
  reordered = (table[1], table[0]) + tuple(table[2:])
  with pytest.raises(ValueError, match="does not match"):
    task_extension.check_extended_task_table(runs["ckpt"], reordered)
  # The model dir of the adapted run saved the extended table.
  assert tuple(hyperprompt_tasks.load_task_table(str(runs["root"] / "adapted"))) == tuple(table)


def test_extension_plan_refuses_fewer_tasks_than_the_checkpoint():
  axes = {EMB: 0, "sep/kernel": 1}
  plan = task_extension.extension_plan({EMB: (6, 4), "sep/kernel": (3, 6, 5)},
                                       {EMB: (7, 4), "sep/kernel": (3, 8, 5)}, axes)
  assert plan == {EMB: (0, 6), "sep/kernel": (1, 6)}
  with pytest.raises(ValueError, match="more tasks than the model"):
    task_extension.extension_plan({EMB: (7, 4)}, {EMB: (6, 4)}, axes)
  # A difference along another axis is not an extension (the restore reports it).
  assert task_extension.extension_plan({EMB: (6, 4)}, {EMB: (6, 5)}, axes) == {}


def test_task_axes_of_every_conditioning_method():
  import helpers
  for overrides, expected in (
      (dict(hyperprompt_variant="global"), {EMB, NEW}),
      (dict(hyperprompt_variant="sep"), None),
      (dict(conditioning="prompt_tuning", hyperprompt_variant="none"), None)):
    module = network.Transformer(config=helpers.tiny_config(**overrides))
    variables = jax.eval_shape(lambda m=module: m.init(
        jax.random.PRNGKey(0), jnp.ones((1, 4)), jnp.ones((1, 3)), jnp.ones((1, 3)),
        enable_dropout=False))
    axes = task_extension.task_axes(variables["params_axes"])
    flat = tree_lib.flatten(variables["params"])
    assert axes and all(flat[k].shape[a] == 3 for k, a in axes.items())  # num_tasks = 3
    if expected is not None:
      assert set(axes) == expected


def test_extension_restores_an_unrolled_checkpoint_into_a_scanned_model(tmp_path):
  """A 2+2-layer unrolled 6-task checkpoint into the scanned 7-task model: the layers
  are stacked, the task-indexed parameters extended as for the unrolled model."""
  base = _init(_model(6, num_layers=2), seed=SEED + 1)
  ckpt = t5x_lib.save_orbax_checkpoint(str(tmp_path / "base"), tree_lib.unflatten(base), step=2)
  restored = {}
  for scan in (False, True):
    model = _model(7, num_layers=2, scan_layers=scan)
    variables = jax.eval_shape(lambda m=model: m.get_initial_variables(
        jax.random.PRNGKey(0), SHAPES))
    init_fn = jax.jit(lambda key, m=model: m.get_initial_variables(key, SHAPES)["params"])
    params = task_extension.restore_extending_tasks(
        ckpt, variables["params"], params_axes=variables["params_axes"],
        rng=jax.random.PRNGKey(SEED), init_fn=init_fn)
    restored[scan] = params
  assert "layers" in restored[True]["encoder"] and "layers_0" not in restored[True]["encoder"]
  unrolled, scanned = _flat(restored[False]), _flat(scan_lib.unstack_layers(restored[True]))
  assert set(scanned) == set(unrolled)
  for key in unrolled:
    np.testing.assert_array_equal(scanned[key], unrolled[key], err_msg=key)
  assert unrolled[EMB].shape[0] == 7
  np.testing.assert_array_equal(unrolled[EMB][:6], base[EMB])
