"""Shared set-up for the task tests: offline-vocabulary copies of every task.

The real GLUE/SuperGLUE tasks use T5's SentencePiece model from gs://, which
tests cannot read; `register_byte_copies()` registers the same tasks and
mixtures with the byte vocabulary under the prefix `bytes_` (once per process).
"""
import contextlib
from unittest import mock

import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

import hyperprompt_tasks as ht

PREFIX = "bytes_"
VOCAB = seqio.ByteVocabulary(extra_ids=100)
EVERY_TASK_MIXTURE = PREFIX + "every_task_for_tests"


def register_byte_copies():
  if PREFIX + "glue_rte_v002" not in seqio.TaskRegistry.names():
    ht.register_all(vocabulary=VOCAB, prefix=PREFIX)
    base = [n for n in ht.registry.registered_specs() if n.startswith(PREFIX)]
    # A plain seqio mixture of the registered tasks themselves (index 0 each).
    seqio.MixtureRegistry.add(EVERY_TASK_MIXTURE, base, default_rate=1.0)
  return PREFIX


@contextlib.contextmanager
def mock_tfds(num_examples):
  """`tfds.testing.mock_data`; its builders carry no split sizes, so seqio's
  `TfdsDataSource.num_input_examples` (only used to decide in-memory caching)
  reports unknown (None) instead of failing."""
  with tfds.testing.mock_data(num_examples=num_examples), mock.patch.object(
      seqio.TfdsDataSource, "num_input_examples", lambda self, split: None):
    yield


def apply_text_preprocessors(task_name, example):
  """Runs a registered task's text preprocessors on one hand-written example."""
  ds = tf.data.Dataset.from_tensors(example)
  for fn in ht.get_spec(task_name).preprocessors:
    ds = fn(ds)
  return [{k: _py(v) for k, v in ex.items()} for ex in ds.as_numpy_iterator()]


def _py(v):
  if isinstance(v, bytes):
    return v.decode("utf-8")
  if hasattr(v, "tolist"):
    v = v.tolist()
    return [x.decode() if isinstance(x, bytes) else x for x in v] if isinstance(v, list) else v
  return v
