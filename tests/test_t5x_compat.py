"""Our Transformer under the stock t5x contract: beam-expanded caches, and t5x itself if present.

t5x is not a dependency (it is not on PyPI). The first tests emulate, without
t5x, what `t5x.decoding.beam_search` and `temperature_sample` do to the
decoder cache: every cache array with a batch dimension is beam-expanded in
place (`[b0, b1] -> [b0, b0, b1, b1]`, t5x's `flat_batch_beam_expand`), the
scalar `cache_index` is left alone, and after each step the beams of an
example are reordered along the batch axis (`gather_beams`). The encoded
inputs and the raw encoder tokens (which carry the task sentinel) are
beam-expanded the same way. Each cached step must equal the full forward pass
of the sequences the beams hold by then.

The remaining tests run when `t5x` imports: t5x's own `EncoderDecoderModel`,
`decoding.beam_search` / `temperature_sample`, `PjitPartitioner` and
`Adafactor` driving our network on a mixed-task batch.
"""
import functools
import os
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperprompt_jax import network
from hyperprompt_jax import partitioning as hp_partitioning

import helpers

# One configuration per conditioning seam that touches decoding (prefix, adapter, input),
# HyperPrompt's three variants with prompts in the decoder too.
BASELINE_FIELDS = dict(hyperprompt_variant="none", prefix_length=3, soft_prompt_length=2,
                       adapter_bottleneck_dim=4, prefix_reparam_hidden_dim=8)
CONFIGS = {
    "hyperprompt_share": dict(hyperprompt_variant="share", hyperprompt_placement="both"),
    "hyperprompt_sep": dict(hyperprompt_variant="sep", hyperprompt_placement="both"),
    "hyperprompt_global": dict(hyperprompt_variant="global", hyperprompt_placement="decoder"),
    "prefix_tuning": dict(BASELINE_FIELDS, conditioning="prefix_tuning"),
    "prompt_tuning": dict(BASELINE_FIELDS, conditioning="prompt_tuning"),
    "adapters": dict(BASELINE_FIELDS, conditioning="adapters"),
    "hyperformer": dict(BASELINE_FIELDS, conditioning="hyperformer"),
}
TASK_OF_ROW = (0, 2, 1)
BEAMS = 3
DEC_LEN = 5
REORDER_AT = 2  # beams are reordered after this many cached steps

# Tiny models spend far longer compiling than running.
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0,
                     "xla_llvm_disable_expensive_passes": True}


def _compile(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=_COMPILER_OPTIONS)(*args)


def _random_model(cfg, seed=0):
  """(module, params): the init tree's shapes (no compile) filled with numpy draws.

  Kernels ~ N(0, 1/fan_in), norm scales near one, every other vector small but
  non-zero, so biases of the conditioning modules take part in the comparison.
  """
  module = network.Transformer(config=cfg)
  ones_e, ones_d = jnp.ones((2, 9), jnp.float32), jnp.ones((2, DEC_LEN), jnp.float32)
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), ones_e, ones_d, ones_d,
                                              enable_dropout=False))["params"]
  rng = np.random.RandomState(seed)
  params = {}
  for path, leaf in sorted(helpers.flat(shapes).items()):
    if len(leaf.shape) >= 2:
      value = rng.randn(*leaf.shape) / np.sqrt(leaf.shape[-2])
    elif path.endswith("scale"):
      value = 1.0 + 0.1 * rng.randn(*leaf.shape)
    else:
      value = 0.1 * rng.randn(*leaf.shape)
    params[path] = jnp.asarray(value, jnp.float32)
  return module, flax.traverse_util.unflatten_dict(params, sep="/")


def beam_expand_cache(cache, beams):
  """t5x's `cache_map(flat_batch_beam_expand)`: repeat batch rows, keep `cache_index`."""
  def expand(path, x):
    if path[-1].key == "cache_index" or np.ndim(x) == 0:
      return x
    return jnp.repeat(x, beams, axis=0)
  return jax.tree_util.tree_map_with_path(expand, cache)


def gather_rows(cache, rows):
  """t5x's `gather_beams` on a flat cache: every batch-major array takes `rows`."""
  def gather(path, x):
    if path[-1].key == "cache_index" or np.ndim(x) == 0:
      return x
    return x[rows]
  return jax.tree_util.tree_map_with_path(gather, cache)


def _beam_sequences(batch_size, beams, length, seed=0):
  """Decoder inputs per beam (BOS first) and a within-example beam permutation."""
  rng = np.random.RandomState(seed)
  toks = rng.randint(2, helpers.SENTINEL - 5, size=(batch_size * beams, length))
  toks[:, 0] = 0
  perm = np.concatenate([b * beams + rng.permutation(beams) for b in range(batch_size)])
  inv = np.argsort(perm)
  return toks, perm, inv


def _cached_beam_logits(module, params, enc, toks_pre, toks_post, perm):
  """Cached decoding as t5x's beam search runs it; logits `[B * beams, L, V]`.

  Rows hold `toks_pre` until step REORDER_AT, where the cache rows are gathered
  by `perm` (t5x's `gather_beams`) and `toks_post` is fed from then on. The
  steps run in a `lax.scan`, as in t5x's `while_loop`.
  """
  b, beams = enc.shape[0], toks_pre.shape[0] // enc.shape[0]
  length = toks_pre.shape[1]
  # t5x `_compute_kv_cache`: initialise with all-ones inputs at the un-expanded batch.
  _, init = module.apply({"params": params}, jnp.ones_like(enc), jnp.ones((b, length), jnp.int32),
                         jnp.ones((b, length), jnp.int32), decode=True, enable_dropout=False,
                         mutable=["cache"])
  cache = beam_expand_cache(init["cache"], beams)
  encoded = module.apply({"params": params}, enc, enable_dropout=False, method=module.encode)
  encoded = jnp.repeat(encoded, beams, axis=0)
  raw = jnp.repeat(enc, beams, axis=0)
  steps = jnp.arange(length)
  tokens = jnp.where((steps < REORDER_AT)[None], toks_pre, toks_post).T[..., None]  # [L, Bk, 1]
  identity = jnp.arange(perm.shape[0])
  rows = jnp.where((steps == REORDER_AT)[:, None], perm[None], identity[None])  # [L, Bk]

  def step(cache, inputs):
    tok, gather = inputs
    cache = gather_rows(cache, gather)
    logits, new = module.apply({"params": params, "cache": cache}, encoded, raw, tok, tok,
                               enable_dropout=False, decode=True, max_decode_length=length,
                               mutable=["cache"], method=module.decode)
    return new["cache"], logits[:, 0]

  cache, logits = jax.lax.scan(step, cache, (tokens, rows))
  return jnp.moveaxis(logits, 0, 1), cache


def _beam_check(module, params, enc, toks_pre, toks_post, perm):
  """Cached beam decoding and the full forward passes it must match, in one program."""
  beams = toks_pre.shape[0] // enc.shape[0]
  cached, cache = _cached_beam_logits(module, params, enc, toks_pre, toks_post, perm)
  full = [module.apply({"params": params}, jnp.repeat(enc, beams, axis=0), dec_in,
                       jnp.ones_like(dec_in), enable_dropout=False)
          for dec_in in (toks_pre, toks_post)]
  return cached, cache, full


@pytest.mark.parametrize("name", list(CONFIGS))
def test_beam_expanded_cache_decoding_matches_full_forward(name):
  cfg = helpers.tiny_config(**CONFIGS[name])
  module, params = _random_model(cfg)
  enc = helpers.mixed_batch(task_of_row=TASK_OF_ROW)["encoder_input_tokens"]
  b = enc.shape[0]
  toks, perm, inv = _beam_sequences(b, BEAMS, DEC_LEN)
  # Before the reorder, row i holds the history that row inv[i] has after it.
  cached, cache, (full_pre, full_post) = _compile(
      functools.partial(_beam_check, module), params, enc, jnp.asarray(toks[inv]),
      jnp.asarray(toks), jnp.asarray(perm))
  cached = np.asarray(cached)
  np.testing.assert_allclose(cached[:, :REORDER_AT], np.asarray(full_pre)[:, :REORDER_AT],
                             atol=2e-5, rtol=0)
  np.testing.assert_allclose(cached[:, REORDER_AT:], np.asarray(full_post)[:, REORDER_AT:],
                             atol=2e-5, rtol=0)
  # Not vacuous: the reorder moved histories, so the rows' logits before and after differ.
  moved = perm != np.arange(b * BEAMS)
  assert moved.any()
  assert not np.allclose(np.asarray(full_pre)[moved, -1], np.asarray(full_post)[moved, -1],
                         atol=1e-4)
  for path, value in helpers.flat(cache).items():
    if path.endswith("cache_index"):
      assert np.ndim(value) == 0 and int(value) == DEC_LEN, path
    else:
      # One row per beam: the decoder's conditioning (computed once per decode call) and
      # the attention caches (t5x's [B * beams, H, D, L] with the prefix columns in front).
      assert value.shape[0] == b * BEAMS, (path, value.shape)
  helpers.assert_decode_cache_layout(cache, DEC_LEN, helpers.encoded_length(cfg, enc.shape[1]))


def test_beam_rows_follow_their_own_task():
  """Same decoder tokens in every row: beam rows differ only through their task sentinel."""
  cfg = helpers.tiny_config(**CONFIGS["hyperprompt_global"])
  module, params = _random_model(cfg)
  enc = helpers.mixed_batch(task_of_row=(0, 0, 2))["encoder_input_tokens"]
  enc = enc.at[1, 1:].set(enc[0, 1:]).at[2, 1:].set(enc[0, 1:])  # rows differ only in the task
  toks = np.tile(np.arange(DEC_LEN)[None] + 2, (3 * 2, 1))
  toks[:, 0] = 0
  cached, _ = _compile(functools.partial(_cached_beam_logits, module), params, enc,
                       jnp.asarray(toks), jnp.asarray(toks), jnp.arange(6))
  cached = np.asarray(cached)
  np.testing.assert_allclose(cached[0], cached[3], atol=1e-6)  # examples 0 and 1: task 0
  assert not np.allclose(cached[0], cached[4], atol=1e-4)  # example 2: task 2


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _t5x_commands(text, prefix):
  """The `python -m t5x.*` commands of `text` (after `prefix` on their first line), joined."""
  commands, current = [], None
  for line in text.splitlines():
    line = line.strip()
    if current is None and line.startswith(prefix + "python -m t5x."):
      current = line[len(prefix):]
    elif current is not None:
      current += " " + line
    if current is not None and not current.endswith("\\"):
      commands.append(" ".join(current.replace("\\", " ").split()))
      current = None
  return commands


def test_readme_t5x_commands_are_the_smoke_scripts():
  """scripts/t5x_smoke.sh runs exactly the README's t5x commands (and nothing else)."""
  with open(os.path.join(REPO, "README.md")) as f:
    readme = _t5x_commands(f.read(), "")
  with open(os.path.join(REPO, "scripts", "t5x_smoke.sh")) as f:
    script = [c for c in _t5x_commands(re.sub(r"^step \w+ ", "", f.read(), flags=re.M), "")]
  assert len(script) == 5 and [c.split()[2] for c in script] == [
      "t5x.train", "t5x.train", "t5x.eval", "t5x.infer", "t5x.train"]
  assert readme == script


# ---------------------------------------------------------------------------
# With t5x installed.
# ---------------------------------------------------------------------------

# The 14 configurations driven through t5x: HyperPrompt share/sep/global x placement
# encoder/decoder/both, vanilla T5 and the four baselines.
T5X_CONFIGS = {
    **{f"hyperprompt_{v}_{p}": dict(hyperprompt_variant=v, hyperprompt_placement=p)
       for v in ("share", "sep", "global") for p in ("encoder", "decoder", "both")},
    "vanilla": dict(hyperprompt_variant="none"),
    **{k: v for k, v in CONFIGS.items() if not k.startswith("hyperprompt")},
}
T5X_BEAMS = (2, 3, 4)
CONDITIONING_TOPS = ("hyperprompt", "prefix_tuning", "prompt_tuning", "adapters", "hyperformer")


def _t5x():
  """The t5x modules these tests use, or a skip when t5x (or a dependency) is missing."""
  pytest.importorskip("t5x.models", reason="t5x is not installed (it is not on PyPI)")
  from t5x import adafactor, decoding, models, partitioning, train_state  # pylint: disable=g-import-not-at-top
  return adafactor, decoding, models, partitioning, train_state


def _t5x_model(cfg, decode_fn, factor_rules=None):
  adafactor, _, models, _, _ = _t5x()
  import seqio  # pylint: disable=g-import-not-at-top
  vocab = seqio.PassThroughVocabulary(size=cfg.vocab_size, eos_id=1)
  optimizer = (adafactor.Adafactor(decay_rate=0.8, step_offset=0,
                                   logical_factor_rules=factor_rules)
               if factor_rules is not None else None)
  return models.EncoderDecoderModel(network.Transformer(config=cfg), vocab, vocab,
                                    optimizer_def=optimizer, decode_fn=decode_fn)


def t5x_factor_rules():
  """t5x's standard Adafactor factor rules plus ours (README: Using with t5x)."""
  adafactor = _t5x()[0]
  rules = dict(adafactor.standard_logical_factor_rules())
  rules.update({k: adafactor.factor_name_to_factordim(v)
                for k, v in hp_partitioning.factor_rules().items()})
  return rules


def _upto_eos(tokens):
  """Mask `[..., L]` of the tokens up to and including the first EOS (t5x pads after it)."""
  return np.cumsum(np.cumsum(np.asarray(tokens) == 1, axis=-1), axis=-1) <= 1


def _rescore(score_fn, enc, decodes, filled):
  """t5x `score_batch` of each decode, up to and including its first EOS: `[B, k]`.

  `score_fn(batch)` is the model's jitted `score_batch`; `filled` `[B, k]` marks the
  decodes that hold a sequence (the others are t5x's all-zero placeholders).
  """
  b, k, length = decodes.shape
  flat = np.asarray(decodes).reshape(b * k, length)
  upto = _upto_eos(flat)
  targets = np.where(upto, flat, 0)
  assert not (upto & (targets == 0))[np.asarray(filled).reshape(-1)].any(), (
      "a pad id was decoded before EOS")
  batch = {
      "encoder_input_tokens": jnp.repeat(enc, k, axis=0),
      "decoder_input_tokens": jnp.asarray(np.pad(targets[:, :-1], ((0, 0), (1, 0)))),
      "decoder_target_tokens": jnp.asarray(targets),
      "decoder_loss_weights": jnp.asarray(upto, jnp.float32),
  }
  return np.asarray(score_fn(batch)).reshape(b, k)


def _t5x_initial_params(model, batch):
  """t5x `get_initial_variables` (float all-ones inputs), compiled: `(params, params_axes)`."""
  shapes = {k: v.shape for k, v in batch.items()}
  variables = helpers.fast_jit(
      lambda rng: flax.core.unfreeze(model.get_initial_variables(rng, shapes)))(
          jax.random.PRNGKey(0))
  return variables["params"], variables["params_axes"]


def _beam_search(model, params, batch, beams):
  """t5x beam search without length penalty, every beam returned: `(decodes, scores)`."""
  decodes, aux = helpers.fast_jit(lambda p, b: model.predict_batch_with_aux(
      p, b, num_decodes=beams, return_all_decodes=True, decoder_params={"alpha": 0.0}))(
          params, batch)
  return np.asarray(decodes), np.asarray(aux["scores"])


def _conditioning_tops(name):
  """The top-level parameter groups configuration `name` adds to T5 (none for vanilla)."""
  if name == "vanilla":
    return set()
  return {"hyperprompt"} if name.startswith("hyperprompt") else {name}


@pytest.mark.parametrize("name", list(T5X_CONFIGS))
def test_stock_t5x_encoder_decoder_model(name):
  _, decoding, _, _, _ = _t5x()
  from hyperprompt_jax import models as hp_models  # pylint: disable=g-import-not-at-top
  cfg = helpers.tiny_config(**T5X_CONFIGS[name])
  model = _t5x_model(cfg, decoding.beam_search)
  batch = helpers.mixed_batch(task_of_row=(0, 1, 2, 1))
  params, params_axes = _t5x_initial_params(model, batch)
  module = network.Transformer(config=cfg)
  ours = jax.eval_shape(lambda: helpers.init_params(cfg)[1]["params"])
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
      flax.core.unfreeze(ours))
  assert set(helpers.flat(params_axes)) == {k + "_axes" for k in helpers.flat(params)}
  tops = {k.split("/")[0] for k in helpers.flat(params)}
  assert tops & set(CONDITIONING_TOPS) == _conditioning_tops(name)

  # loss_fn and score_batch against our own forward pass, in one program.
  def losses(params, batch):
    log_probs = jax.nn.log_softmax(helpers.forward(module, params, batch))
    token_lp = jnp.take_along_axis(log_probs, batch["decoder_target_tokens"][..., None],
                                   -1)[..., 0]
    want = (token_lp * batch["decoder_loss_weights"]).sum(-1)
    loss, _ = model.loss_fn(params, batch, dropout_rng=None)
    return want, loss, model.score_batch(params, batch)
  want, loss, scores = helpers.fast_jit(losses)(params, batch)
  np.testing.assert_allclose(loss, -np.asarray(want).sum(), rtol=1e-5)
  np.testing.assert_allclose(scores, want, rtol=1e-5)

  # Beam search (no length penalty): every returned score is the sequence's log-prob.
  enc = batch["encoder_input_tokens"]
  score_fn = helpers.fast_jit(model.score_batch)
  for beams in T5X_BEAMS:
    decodes, scores = _beam_search(model, params, batch, beams)
    assert decodes.shape == (4, beams, batch["decoder_input_tokens"].shape[1])
    filled = scores > -1e6  # t5x leaves unfilled finished slots at NEG_INF with zeros
    assert filled[:, -1].all()
    assert (np.diff(scores, axis=1) >= 0).all()  # t5x sorts the beams, best last
    rescored = _rescore(lambda b: score_fn(params, b), enc, decodes, filled)
    np.testing.assert_allclose(scores[filled], rescored[filled], atol=1e-4, rtol=1e-4)

  # temperature_sample with topk=1 is greedy: same tokens as our greedy decoder.
  sampler = _t5x_model(cfg, decoding.temperature_sample)
  greedy, _ = helpers.fast_jit(lambda p, b: sampler.predict_batch_with_aux(
      p, b, decoder_params={"topk": 1}))(params, batch)
  ours_model = hp_models.EncoderDecoderModel(module, sampler.input_vocabulary,
                                             sampler.output_vocabulary)
  ours_greedy, _ = helpers.fast_jit(ours_model.predict_batch_with_aux)(params, batch)
  upto = _upto_eos(greedy)
  np.testing.assert_array_equal(np.where(upto, greedy, 0), np.where(upto, ours_greedy, 0))
  # Sampling two sequences per example: scores are their log-probs.
  samples, aux = helpers.fast_jit(lambda p, b, rng: sampler.predict_batch_with_aux(
      p, b, rng=rng, num_decodes=2, return_all_decodes=True,
      decoder_params={"topk": 0, "temperature": 1.0}))(params, batch, jax.random.PRNGKey(3))
  score_fn = helpers.fast_jit(sampler.score_batch)
  np.testing.assert_allclose(
      aux["scores"], _rescore(lambda b: score_fn(params, b), enc, np.asarray(samples),
                              np.ones((4, 2), bool)), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(T5X_CONFIGS))
def test_stock_t5x_model_in_bfloat16(name):
  """bfloat16 activations (params float32, as t5x trains): beam scores are log-probs."""
  _, decoding, _, _, _ = _t5x()
  cfg = helpers.tiny_config(dtype="bfloat16", **T5X_CONFIGS[name])
  model = _t5x_model(cfg, decoding.beam_search)
  batch = helpers.mixed_batch(task_of_row=(0, 1, 2, 1))
  params, _ = _t5x_initial_params(model, batch)
  assert {np.asarray(v).dtype for v in helpers.flat(params).values()} == {np.dtype("float32")}
  score_fn = helpers.fast_jit(model.score_batch)
  loss, _ = helpers.fast_jit(lambda p, b: model.loss_fn(p, b, dropout_rng=None))(params, batch)
  np.testing.assert_allclose(loss, -np.asarray(score_fn(params, batch)).sum(), rtol=1e-2)
  decodes, scores = _beam_search(model, params, batch, 3)
  filled = scores > -1e6
  assert filled[:, -1].all() and np.isfinite(scores[filled]).all()
  assert (np.diff(scores, axis=1) >= 0).all()
  # The same model's bfloat16 score_batch of the returned sequences, to bfloat16 precision.
  rescored = _rescore(lambda b: score_fn(params, b), batch["encoder_input_tokens"], decodes,
                      filled)
  np.testing.assert_allclose(scores[filled], rescored[filled], atol=5e-2, rtol=2e-2)


def test_t5x_partitioner_and_adafactor_accept_our_axes():
  _, decoding, _, partitioning, train_state = _t5x()
  rules = partitioning.standard_logical_axis_rules(
      additional_rules=hp_partitioning.conditioning_axis_rules())
  partitioner = partitioning.PjitPartitioner(num_partitions=2, logical_axis_rules=rules)
  shapes = {"encoder_input_tokens": (4, 9), "decoder_input_tokens": (4, 6)}
  for name, fields in T5X_CONFIGS.items():
    cfg = helpers.tiny_config(**fields)
    model = _t5x_model(cfg, decoding.beam_search, t5x_factor_rules())
    variables = jax.eval_shape(
        functools.partial(model.get_initial_variables, input_shapes=shapes),
        jax.random.PRNGKey(0))
    # Raises "Incomplete adafactor spec" on a bad factor rule.
    state = train_state.FlaxOptimTrainState.create(model.optimizer_def, variables)
    mesh_axes = helpers.flat(partitioner.get_mesh_axes(state).state_dict()["target"])
    assert set(mesh_axes) == set(helpers.flat(variables["params"])), name
    tops = _conditioning_tops(name)
    conditioning = {k: v for k, v in mesh_axes.items() if k.split("/")[0] in tops}
    assert bool(conditioning) == bool(tops), name
    for path, spec in conditioning.items():
      assert spec is None or all(a is None for a in spec), (path, spec)  # replicated
    assert mesh_axes["decoder/layers_0/mlp/wi_0/kernel"] == jax.sharding.PartitionSpec(
        None, "model")


def test_t5x_pjit_train_step_on_a_model_parallel_mesh():
  adafactor, decoding, _, partitioning, _ = _t5x()
  from t5x import utils as t5x_utils  # pylint: disable=g-import-not-at-top
  # t5x's CPU mesh puts every device on 'model': head and MLP widths divide 8.
  cfg = helpers.tiny_config(num_heads=8, head_dim=2, **CONFIGS["hyperprompt_global"])
  model = _t5x_model(cfg, decoding.beam_search, t5x_factor_rules())
  batch = helpers.mixed_batch(task_of_row=(0, 1, 2, 1))
  rules = partitioning.standard_logical_axis_rules(
      additional_rules=hp_partitioning.conditioning_axis_rules())
  partitioner = partitioning.PjitPartitioner(num_partitions=2, logical_axis_rules=rules)
  initializer = t5x_utils.TrainStateInitializer(
      model.optimizer_def, model.get_initial_variables,
      input_shapes={k: v.shape for k, v in batch.items()}, partitioner=partitioner)
  state = initializer.from_scratch(jax.random.PRNGKey(0))

  def train_step(state, batch):
    (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(state.params, batch, None)
    return state.apply_gradient(grads, learning_rate=1e-2), loss

  step = partitioner.partition(train_step,
                               in_axis_resources=(initializer.train_state_axes,
                                                  partitioner.data_partition_spec),
                               out_axis_resources=(initializer.train_state_axes, None))
  state, loss0 = step(state, batch)
  _, loss1 = step(state, batch)
  assert np.isfinite(float(loss1)) and float(loss1) < float(loss0)


# Scanned modules through t5x's decoding (`cache_offset=1` when `module.scan_layers`).
T5X_SCAN_CONFIGS = ("hyperprompt_global_both", "adapters")


@pytest.mark.parametrize("name", T5X_SCAN_CONFIGS)
def test_stock_t5x_decoding_of_a_scanned_model(name):
  """t5x's beam search and temperature sampling of the scanned model (the stacked cache
  beam-expanded at `cache_offset=1`) return what they return for the unrolled model with
  the same (unstacked) parameters."""
  _, decoding, _, _, _ = _t5x()
  from hyperprompt_jax.formats import scan as scan_lib  # pylint: disable=g-import-not-at-top
  cfg = helpers.tiny_config(**T5X_CONFIGS[name])
  scanned_cfg = cfg.replace(scan_layers=True)
  batch = helpers.mixed_batch(task_of_row=(0, 1, 2, 1))
  beam, scanned_beam = (_t5x_model(c, decoding.beam_search) for c in (cfg, scanned_cfg))
  assert scanned_beam.module.scan_layers and not beam.module.scan_layers
  scanned_params, _ = _t5x_initial_params(scanned_beam, batch)
  assert "layers" in scanned_params["decoder"] and "layers_0" not in scanned_params["decoder"]
  params = scan_lib.unstack_layers(scanned_params, axis=cfg.param_scan_axis)
  for beams in (3,):
    decodes, scores = _beam_search(beam, params, batch, beams)
    scanned_decodes, scanned_scores = _beam_search(scanned_beam, scanned_params, batch, beams)
    filled = scores > -1e6
    np.testing.assert_array_equal(scanned_decodes[filled], decodes[filled])
    np.testing.assert_allclose(scanned_scores[filled], scores[filled], atol=1e-4, rtol=1e-4)
  sampler, scanned_sampler = (_t5x_model(c, decoding.temperature_sample)
                              for c in (cfg, scanned_cfg))

  def sample(model, params):
    return helpers.fast_jit(lambda p, b, rng: model.predict_batch_with_aux(
        p, b, rng=rng, num_decodes=2, return_all_decodes=True,
        decoder_params={"topk": 0, "temperature": 1.0}))(params, batch, jax.random.PRNGKey(3))
  (samples, aux), (scanned_samples, scanned_aux) = (sample(sampler, params),
                                                    sample(scanned_sampler, scanned_params))
  np.testing.assert_array_equal(np.asarray(scanned_samples), np.asarray(samples))
  np.testing.assert_allclose(scanned_aux["scores"], aux["scores"], atol=1e-4, rtol=1e-4)
