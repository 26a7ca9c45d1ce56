"""Acceptance checks shared by the task-conditioning baselines' tests.

Everything runs jitted with XLA's cheapest CPU compile settings (the tiny test
models spend far longer compiling than running), and `init` is cached per config.
"""
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np

from hyperprompt_jax import conditioning
from hyperprompt_jax import models
from hyperprompt_jax import network

import helpers
from helpers import cached_decode_logits  # pylint: disable=unused-import
from helpers import fast_jit
from helpers import flat


def count(tree) -> int:
  return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(tree)))


def abstract_variables(config, enc_len=9, dec_len=6):
  """`module.init` shapes without computing anything."""
  module = network.Transformer(config=config)
  ones_e, ones_d = jnp.ones((2, enc_len), jnp.float32), jnp.ones((2, dec_len), jnp.float32)
  return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), ones_e, ones_d, ones_d,
                                            enable_dropout=False))


@functools.lru_cache(maxsize=None)
def random_model(config, seed=0):
  """(module, params) with random params of the init tree's shapes, drawn in numpy.

  Cached per config (treat the params as read-only). Kernels are normal with
  stddev 1/sqrt(fan-in), layer-norm scales near one and every other vector
  (biases included) small but non-zero, so equality tests also exercise the
  biases. Compiling the real initialisers costs seconds per config; `init` does
  that for the tests that need the real initialisation.
  """
  rng = np.random.RandomState(seed)
  leaves = flat(abstract_variables(config)["params"])
  params = {}
  for name, leaf in sorted(leaves.items()):
    shape = leaf.shape
    if len(shape) >= 2:
      value = rng.randn(*shape) / np.sqrt(shape[-2])
    elif name.endswith("scale"):
      value = 1.0 + 0.1 * rng.randn(*shape)
    else:
      value = 0.1 * rng.randn(*shape)
    params[name] = jnp.asarray(value, jnp.float32)
  return network.Transformer(config=config), flax.traverse_util.unflatten_dict(params, sep="/")


@functools.lru_cache(maxsize=None)
def init(config, seed=0):
  """(module, params) from the real initialisers, under jit (cached per config)."""
  module = network.Transformer(config=config)
  ones_e, ones_d = jnp.ones((2, 9), jnp.float32), jnp.ones((2, 6), jnp.float32)
  params = fast_jit(lambda rng: module.init(rng, ones_e, ones_d, ones_d,
                                            enable_dropout=False)["params"])(
                                                jax.random.PRNGKey(seed))
  return module, params


@functools.lru_cache(maxsize=None)
def forward_fn(module):
  """Jitted full forward `(params, batch) -> logits [B, Ld, V]` (cached per module)."""
  return fast_jit(lambda p, b: helpers.forward(module, p, b))


def assert_cached_decoding_matches_full_forward(config):
  module, params = random_model(config)
  batch = helpers.mixed_batch()
  full = forward_fn(module)(params, batch)
  cached, cache = cached_decode_logits(module, params, batch)
  valid = np.asarray(batch["decoder_target_tokens"] > 0)
  np.testing.assert_allclose(np.asarray(cached)[valid], np.asarray(full)[valid], atol=1e-5,
                             rtol=0)
  # The decoder's prefix, if any, sits in front of the decoded tokens in the cache.
  helpers.assert_decode_cache_layout(
      cache, batch["decoder_input_tokens"].shape[1],
      helpers.encoded_length(config, batch["encoder_input_tokens"].shape[1]))


def conditioning_grads(config, task_of_row=(0, 1, 2, 0)):
  """Gradients of the loss on a mixed-task batch w.r.t. the method's parameters (flat)."""
  method = conditioning.active_method(config)
  module, params = init(config)
  model = models.EncoderDecoderModel(module)
  batch = helpers.mixed_batch(task_of_row=task_of_row)
  grads = fast_jit(jax.grad(lambda p: model.loss_fn(p, batch, None)[0]))(params)
  return flat(grads[method])


def assert_gradients_reach_every_parameter(config, per_task_prefixes=("",)):
  """Every leaf gets a finite, non-zero gradient; leaves whose path starts with one of
  `per_task_prefixes` (and have a leading tasks axis) get one in every task's slice."""
  grads = conditioning_grads(config)
  assert grads
  for name, g in grads.items():
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), name
    assert np.abs(g).sum() > 0, name
    if any(name.startswith(p) for p in per_task_prefixes) and g.shape[0] == config.num_tasks:
      for t in range(config.num_tasks):
        assert np.abs(g[t]).sum() > 0, (name, t)
  return grads


def assert_param_count_matches_closed_form(config):
  """The init tree = the vanilla backbone tree + `expected_num_params` under `method/`."""
  method = conditioning.active_method(config)
  variables = abstract_variables(config)
  vanilla = abstract_variables(config.replace(conditioning="hyperprompt",
                                              hyperprompt_variant="none"))
  params, base = flat(variables["params"]), flat(vanilla["params"])
  added = {k: v for k, v in params.items() if k.startswith(method + "/")}
  # The backbone is untouched: same names and shapes as vanilla T5.
  assert {k: v.shape for k, v in params.items() if k not in added} == {
      k: v.shape for k, v in base.items()}
  assert count(added) == conditioning.expected_num_params(config) > 0
  assert count(variables["params"]) - count(vanilla["params"]) == count(added)
  return {k: tuple(v.shape) for k, v in added.items()}


def assert_mixed_batch_equals_single_rows(config):
  """Rows of a mixed-task batch are computed as if alone."""
  module, params = random_model(config)
  fwd = forward_fn(module)
  batch = helpers.mixed_batch(task_of_row=(2, 0, 1, 2))
  together = np.asarray(fwd(params, batch))
  for i in range(4):
    alone = fwd(params, {k: v[i:i + 1] for k, v in batch.items()})
    np.testing.assert_allclose(together[i:i + 1], alone, atol=1e-5)


def assert_tasks_are_routed(config, per_task_leaves, task=1):
  """Perturbing only task `task`'s slice of `per_task_leaves` (paths under the method)
  changes the logits of that task's rows and of no other row."""
  method = conditioning.active_method(config)
  module, params = random_model(config)
  fwd = forward_fn(module)
  task_of_row = (2, task, 0, task)
  batch = helpers.mixed_batch(task_of_row=task_of_row)
  before = np.asarray(fwd(params, batch))
  sub = flat(params[method])
  for name in per_task_leaves:
    assert sub[name].shape[0] == config.num_tasks, name
    sub[name] = sub[name].at[task].add(0.5)
  params = dict(params)
  params[method] = flax.traverse_util.unflatten_dict(sub, sep="/")
  after = np.asarray(fwd(params, batch))
  for i, t in enumerate(task_of_row):
    if t == task:
      assert not np.allclose(after[i], before[i], atol=1e-4), i
    else:
      np.testing.assert_allclose(after[i], before[i], atol=1e-6, rtol=0)


def assert_zeroed_leaves_give_vanilla(config, collection, zero_if):
  """Zeroing the leaves of `params[collection]` whose path satisfies `zero_if` gives
  exactly the vanilla backbone (the method's seam is a pure residual there)."""
  module, params = random_model(config)
  sub = {k: (jnp.zeros_like(v) if zero_if(k) else v) for k, v in flat(params[collection]).items()}
  params = dict(params, **{collection: flax.traverse_util.unflatten_dict(sub, sep="/")})
  vanilla = forward_fn(network.Transformer(config=config.replace(conditioning="hyperprompt")))
  backbone = {k: v for k, v in params.items() if k != collection}
  batch = helpers.mixed_batch()
  np.testing.assert_allclose(forward_fn(module)(params, batch), vanilla(backbone, batch),
                             atol=1e-6)
