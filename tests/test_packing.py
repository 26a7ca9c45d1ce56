"""Packed multi-task rows: every segment conditioned on its own task (network.py, "Packed rows").

Six examples of three tasks (`helpers.mixed_batch`) are packed three, two and one
per row (`helpers.pack_batch`, seqio's layout), so rows mix tasks, end in padding
and one row holds a single segment. Each check runs one jitted
`(params, batch) -> (per-token loss, logits, gradients of the summed loss)` per
configuration and batch shape.
"""
import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperprompt_jax import data
from hyperprompt_jax import errors
from hyperprompt_jax import models
from hyperprompt_jax import network
from hyperprompt_jax import task_ids

import helpers
from conditioning import conditioning_testlib as testlib

TASKS = (2, 0, 1, 2, 0, 1)
ROWS = ((0, 1, 2), (3, 4), (5,))

_HYPERPROMPT = [dict(hyperprompt_variant=v, hyperprompt_placement=p)
                for v in ("share", "sep", "global") for p in ("encoder", "decoder", "both")]
_BASELINES = [dict(conditioning="prefix_tuning", prefix_reparam=True),
              dict(conditioning="prefix_tuning", prefix_reparam=False),
              dict(conditioning="adapters"), dict(conditioning="hyperformer")]
# One layer per stack keeps compiles short; Global under nn.scan runs two.
SUPPORTED = _HYPERPROMPT + _BASELINES + [
    dict(hyperprompt_variant="none"),
    dict(scan_layers=True, num_encoder_layers=2, num_decoder_layers=2)]


def _config(overrides, **more):
  kwargs = dict(overrides, **more)
  if kwargs.get("conditioning", "hyperprompt") != "hyperprompt":
    kwargs.setdefault("hyperprompt_variant", "none")
  kwargs.setdefault("num_encoder_layers", 1)
  kwargs.setdefault("num_decoder_layers", 1)
  return helpers.tiny_config(prefix_length=2, prefix_reparam_hidden_dim=6, **kwargs)


def _name(overrides):
  return "-".join(f"{v}" for v in overrides.values())


@functools.lru_cache(maxsize=None)
def _runner(config, grads=True):
  """(params, jitted `(params, batch) -> (token losses, logits, grads or None)`) of `config`."""
  module, params = testlib.random_model(config)
  model = models.EncoderDecoderModel(module)

  def run(p, batch):
    def summed(q):
      logits = model._compute_logits(q, batch)  # pylint: disable=protected-access
      losses = models.cross_entropy_with_logits(logits, batch["decoder_target_tokens"])[0]
      losses = losses * batch["decoder_loss_weights"]
      return jnp.sum(losses), (losses, logits)

    if not grads:
      return summed(p)[1] + (None,)
    (_, (losses, logits)), g = jax.value_and_grad(summed, has_aux=True)(p)
    return losses, logits, g

  return params, helpers.fast_jit(run)


def _with_grads(overrides):
  """Gradients for every method with both stacks conditioned; the one-stack placements
  check losses and logits (their backward pass is the same code; it keeps compiles few)."""
  return overrides.get("hyperprompt_placement", "both") == "both"


def _run(overrides, **more):
  return _runner(_config(overrides, **more), _with_grads(overrides))


def _batches(tasks=TASKS):
  unpacked = helpers.mixed_batch(task_of_row=tasks, seed=3)
  packed, where = helpers.pack_batch(unpacked, ROWS)
  return unpacked, packed, where


def _segment(values, where, example):
  row, _, dec = where[example]
  return np.asarray(values)[row, dec]


def test_packed_task_ids_read_each_segments_sentinel():
  s = helpers.SENTINEL
  tokens = jnp.array([[s - 2, 5, s - 1, 7, 8, s, 0, 0], [s - 1, 4, 4, 4, 4, 4, 4, 4]])
  segments = jnp.array([[1, 1, 2, 2, 2, 3, 0, 0], [1] * 8])
  enc = task_ids.packed_task_ids(tokens, segments, task_sentinel_id=s, num_tasks=3)
  np.testing.assert_array_equal(enc[0, :6], [2, 2, 1, 1, 1, 0])
  np.testing.assert_array_equal(enc[1], [1] * 8)  # one segment: the row's task everywhere
  dec = task_ids.decoder_task_ids(enc, segments, jnp.array([[1, 2, 2, 3, 3, 0], [1] * 6]))
  np.testing.assert_array_equal(dec[0, :5], [2, 1, 1, 0, 0])
  np.testing.assert_array_equal(dec[1], [1] * 6)


@pytest.mark.parametrize("overrides", SUPPORTED, ids=_name)
def test_packed_rows_give_each_example_its_unpacked_loss_and_gradients(overrides):
  with_grads = _with_grads(overrides)
  params, run = _run(overrides)
  unpacked, packed, where = _batches()
  losses_u, logits_u, grads_u = run(params, unpacked)
  losses_p, logits_p, grads_p = run(params, packed)
  for i in range(len(TASKS)):
    n = where[i][2].stop - where[i][2].start
    # Each target token's loss to 1e-5; the example's summed loss (~20 nats with random
    # weights) to 1e-5 relative (a few float32 ulps).
    np.testing.assert_allclose(_segment(losses_p, where, i), np.asarray(losses_u)[i, :n],
                               atol=1e-5, rtol=0)
    np.testing.assert_allclose(_segment(losses_p, where, i).sum(),
                               np.asarray(losses_u)[i, :n].sum(), atol=0, rtol=1e-5)
    np.testing.assert_allclose(_segment(logits_p, where, i), np.asarray(logits_u)[i, :n],
                               atol=1e-5, rtol=1e-5)
  if not with_grads:
    return
  flat_u, flat_p = helpers.flat(grads_u), helpers.flat(grads_p)
  assert flat_u.keys() == flat_p.keys()
  for name, g in flat_u.items():
    # float32 rounding of sums over the batch: 5e-5 of the leaf's largest gradient (a
    # leaking mask or a wrong task moves gradients by far more).
    np.testing.assert_allclose(flat_p[name], g, atol=5e-5 * max(1.0, np.abs(g).max()), rtol=0,
                               err_msg=name)


ROUTED = [dict(hyperprompt_variant="global", hyperprompt_placement="both"),
          dict(hyperprompt_variant="share", hyperprompt_placement="decoder"),
          dict(conditioning="prefix_tuning", prefix_reparam=False),
          dict(conditioning="adapters"), dict(conditioning="hyperformer")]


@pytest.mark.parametrize("overrides", ROUTED, ids=_name)
def test_changing_one_segments_task_changes_only_that_segment(overrides):
  params, run = _run(overrides)
  _, packed, where = _batches()
  _, before, _ = run(params, packed)
  row, enc, _ = where[1]  # the middle segment of the first row (task 0 -> 2)
  tokens = packed["encoder_input_tokens"].at[row, enc.start].set(helpers.SENTINEL - 2)
  _, after, _ = run(params, dict(packed, encoder_input_tokens=tokens))
  for i in range(len(TASKS)):
    a, b = _segment(after, where, i), _segment(before, where, i)
    if i == 1:
      assert not np.allclose(a, b, atol=1e-3)
    else:
      np.testing.assert_allclose(a, b, atol=1e-6, rtol=0, err_msg=str(i))


@pytest.mark.parametrize("overrides", ROUTED, ids=_name)
def test_single_task_packed_rows_equal_the_single_task_batch(overrides):
  params, run = _run(overrides)
  unpacked, packed, where = _batches(tasks=(1,) * len(TASKS))
  _, logits_u, _ = run(params, unpacked)
  _, logits_p, _ = run(params, packed)
  for i in range(len(TASKS)):
    n = where[i][2].stop - where[i][2].start
    np.testing.assert_allclose(_segment(logits_p, where, i), np.asarray(logits_u)[i, :n],
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", [ROUTED[0], ROUTED[2], ROUTED[4]], ids=_name)
def test_packed_rows_run_in_bfloat16(overrides):
  config = _config(overrides, dtype=jnp.bfloat16)
  module, params = testlib.random_model(config)
  unpacked, packed, where = _batches()
  fwd = helpers.fast_jit(lambda p, b: models.EncoderDecoderModel(module)._compute_logits(p, b))  # pylint: disable=protected-access
  logits_u, logits_p = np.asarray(fwd(params, unpacked)), np.asarray(fwd(params, packed))
  assert np.all(np.isfinite(logits_p))
  scale = np.abs(logits_u).max()
  for i in range(len(TASKS)):
    n = where[i][2].stop - where[i][2].start
    # bfloat16 keeps 8 bits: packed and unpacked agree to its rounding, not exactly.
    np.testing.assert_allclose(_segment(logits_p, where, i), logits_u[i, :n],
                               atol=0.05 * scale, rtol=0)


def test_prompt_tuning_refuses_pack_at_configuration_time():
  config = helpers.tiny_config(conditioning="prompt_tuning", hyperprompt_variant="none")
  model = types.SimpleNamespace(module=network.Transformer(config=config))
  cfg = data.DatasetConfig("any_mixture", {"inputs": 8, "targets": 4}, "train", 8, True,
                           pack=True)
  with pytest.raises(errors.ConfigError) as raised:
    data.check_model_and_tasks(cfg, model, ())
  message = str(raised.value)
  assert "\n" not in message and "conditioning='prompt_tuning'" in message
  assert "pack = False" in message


def test_packed_offline_mixture_rows_mix_tasks_and_a_packed_run_trains(tmp_path):
  """seqio's EncDecFeatureConverter(pack=True) on the task-indexed offline mixture, then the
  launcher's tiny offline run with PACK=True (HyperPrompt-Global)."""
  import reliability_testlib as rl  # pylint: disable=g-import-not-at-top
  from hyperprompt_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  cfg = data.DatasetConfig("hyperprompt_offline_v1", {"inputs": 64, "targets": 16}, "train", 4,
                           shuffle=False, seed=0, pack=True, module="hyperprompt_tasks")
  batch = next(data.DatasetIterator(data.get_dataset(cfg, 0, 1, seqio.EncDecFeatureConverter)))
  tokens, segments = batch["encoder_input_tokens"], batch["encoder_segment_ids"]
  assert segments.max() > 1 and "decoder_segment_ids" in batch
  tasks = np.asarray(task_ids.packed_task_ids(tokens, segments, task_sentinel_id=358,
                                              num_tasks=6))
  starts = (segments > 0) & (np.diff(segments, prepend=0, axis=1) != 0)
  assert (358 - tokens[starts] == tasks[starts]).all()  # every segment starts with a sentinel
  assert any(len(set(tasks[r][starts[r]])) > 1 for r in range(len(tasks)))  # rows mix tasks

  model_dir = tmp_path / "packed"
  assert train_lib.main(rl.gin_args(model_dir, "PACK=True", steps=2)) == 0
  assert (model_dir / "checkpoint_2").exists()
