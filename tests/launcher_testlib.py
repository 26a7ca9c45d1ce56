"""Tiny task-indexed seqio tasks and a tiny HyperPrompt model for the launcher tests.

The tasks are registered here (seqio.FunctionDataSource, byte vocabulary), so
the launcher tests need neither downloads nor the project's task package.
Task k prepends its sentinel <extra_id_k> (id 268 - k) to the inputs; the two
tasks map the same kind of input to different targets (the first or the last
digit), so only a task-aware model can solve both.
"""
import functools
import os
import tempfile

import jax
import numpy as np
import seqio
import tensorflow as tf

from hyperprompt_jax import data as data_lib
from hyperprompt_jax import models
from hyperprompt_jax import network
from hyperprompt_jax import optimizers
from hyperprompt_jax import partitioning

# Tiny models: compile fast (the programs are small; XLA's backend optimisations cost
# more than they save), and reuse compiled programs across runs of the same model
# (restarts in the resume tests) through jax's persistent cache.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
jax.config.update("jax_compilation_cache_dir",
                  os.path.join(tempfile.gettempdir(), f"hyperprompt_launcher_tests_{os.getuid()}"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

VOCAB = seqio.ByteVocabulary(extra_ids=10)  # 269 ids: task k's sentinel is 268 - k.
MODEL_VOCAB_SIZE = 272  # padded to a multiple of 16, like T5's 32128.
SENTINEL = VOCAB.vocab_size - 1
MIXTURE = "launcher_test_mixture"
TASKS = ("launcher_test_first", "launcher_test_last")
LENGTHS = {"inputs": 12, "targets": 4}


def add_sentinel(dataset, output_features, *, task_index):
  """Prepends <extra_id_task_index> to the tokenized inputs."""
  del output_features
  token = SENTINEL - task_index

  def fn(x):
    x = dict(x)
    x["inputs"] = tf.concat([tf.constant([token], x["inputs"].dtype), x["inputs"]], 0)
    return x

  return dataset.map(fn)


def _examples(split, shuffle_files, seed=None, rule=0):
  del shuffle_files, seed
  rng = np.random.RandomState({"train": 0, "validation": 1}[split])
  n = 96 if split == "train" else 16
  digits = rng.randint(0, 10, size=(n, 6))
  inputs = ["".join(map(str, row)) for row in digits]
  targets = [row[0] if rule == 0 else row[-1] for row in inputs]
  return tf.data.Dataset.from_tensor_slices({"inputs": inputs, "targets": targets})


def accuracy(targets, predictions):
  return {"accuracy": 100.0 * float(np.mean([t == p for t, p in zip(targets, predictions)]))}


def register():
  """Registers the two tasks and their mixture once per process; returns the mixture name."""
  if MIXTURE in seqio.MixtureRegistry.names():
    return MIXTURE
  features = {"inputs": seqio.Feature(VOCAB), "targets": seqio.Feature(VOCAB)}
  for index, name in enumerate(TASKS):
    seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(functools.partial(_examples, rule=index),
                                        splits=("train", "validation")),
        preprocessors=[seqio.preprocessors.tokenize,
                       functools.partial(add_sentinel, task_index=index),
                       seqio.preprocessors.append_eos_after_trim],
        output_features=features, metric_fns=[accuracy])
  seqio.MixtureRegistry.add(MIXTURE, [(t, 1.0) for t in TASKS])
  return MIXTURE


register()  # importing this module registers the tasks (MIXTURE_OR_TASK_MODULE).


def tiny_config(**overrides):
  kwargs = dict(vocab_size=MODEL_VOCAB_SIZE, emb_dim=16, num_heads=4, head_dim=4,
                num_encoder_layers=1, num_decoder_layers=1, mlp_dim=32,
                mlp_activations=("gelu", "linear"), dropout_rate=0.0, num_tasks=len(TASKS),
                task_sentinel_id=SENTINEL, hyperprompt_variant="global", prompt_length=2,
                prompt_bottleneck_dim=4, task_embed_dim=4, layer_task_dim=4, task_hidden_dim=8)
  kwargs.update(overrides)
  return network.T5Config(**kwargs)


def tiny_model(learning_rate=1e-2, trainable="all", base_optimizer=optimizers.adafactor,
               **overrides):
  opt = optimizers.create_optimizer(base_optimizer=base_optimizer, learning_rate=learning_rate,
                                    trainable=trainable)
  return models.EncoderDecoderModel(network.Transformer(config=tiny_config(**overrides)),
                                    input_vocabulary=VOCAB, output_vocabulary=VOCAB,
                                    optimizer_def=opt)


def dataset_cfg(split="train", batch_size=8, lengths=LENGTHS, shuffle=None, seed=None,
                **kwargs):
  return data_lib.DatasetConfig(
      mixture_or_task_name=register(), task_feature_lengths=lengths, split=split,
      batch_size=batch_size, shuffle=split == "train" if shuffle is None else shuffle,
      seed=seed, **kwargs)


@functools.lru_cache(maxsize=None)
def initial_params(seed=0, **overrides):
  """Host (numpy) parameters of `tiny_model(**overrides)`, initialised once per process."""
  model = tiny_model(**overrides)
  shapes = {"encoder_input_tokens": (BATCH, LE), "decoder_input_tokens": (BATCH, LD)}
  types = {k: np.int32 for k in shapes}
  init = jax.jit(lambda rng: model.get_initial_variables(rng, shapes, types)["params"])
  return jax.device_get(init(jax.random.PRNGKey(seed)))


def partitioner(mesh_shape=(1, 1), **kwargs):
  return partitioning.Partitioner(mesh_shape=mesh_shape, compiler_options=FAST_COMPILE, **kwargs)


BATCH, LE, LD = 8, 12, 4


def random_batches(num, seed=0):
  """`num` numpy batches of the tiny model's features (two tasks, some padding)."""
  rng = np.random.RandomState(seed)
  out = []
  for _ in range(num):
    enc = rng.randint(3, 250, size=(BATCH, LE))
    enc[:, 0] = SENTINEL - rng.randint(0, 2, size=BATCH)
    enc[:, -2:] = 0
    dec = rng.randint(3, 250, size=(BATCH, LD))
    dec[:, -1] = 1
    out.append({
        "encoder_input_tokens": enc.astype(np.int32),
        "decoder_input_tokens": np.concatenate([np.zeros((BATCH, 1), int), dec[:, :-1]],
                                               1).astype(np.int32),
        "decoder_target_tokens": dec.astype(np.int32),
        "decoder_loss_weights": np.ones((BATCH, LD), np.float32)})
  return out
