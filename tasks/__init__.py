# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""hyperprompt-jax's seqio tasks and mixtures (installed as `hyperprompt_tasks`).

`import hyperprompt_tasks` (e.g. as t5x's `MIXTURE_OR_TASK_MODULE`) registers:

* GLUE `glue_<config>_v002` and SuperGLUE `super_glue_<config>_v102` (plus
  `dpr_v001_simple`, `super_glue_wsc_v102_simple_{train,eval}`) from TFDS with
  T5's SentencePiece vocabulary, and the mixtures `glue_v002_proportional`,
  `super_glue_v102_proportional`, `glue_super_glue_proportional`;
* the offline tasks `offline_*_v1` and mixtures `hyperprompt_offline_v1`
  (the default) and `hyperprompt_offline_v1_new_task` (byte vocabulary);
* the WordNet tasks `wordnet_*_v1`, their mixture `wordnet_lexical_v1` and the
  pretraining task `wordnet_span_corruption_v1` (byte vocabulary; WordNet is read
  when a dataset is built, see `wordnet_data`).

Every task's inputs start with its task sentinel; see `registry` for the scheme,
`task_table_io` for the table saved with a model. Nothing is read from disk or the
network at import.
"""

from hyperprompt_tasks import glue
from hyperprompt_tasks import mixtures
from hyperprompt_tasks import offline
from hyperprompt_tasks import super_glue
from hyperprompt_tasks import vocabularies
from hyperprompt_tasks import wordnet
from hyperprompt_tasks.registry import (MixtureInfo, TaskSpec, ensure_indexed_task,
                                        get_mixture_or_task, get_spec,
                                        get_vocabulary, indexed_task_name, mixture_info,
                                        num_tasks, rate_num_examples, register_mixture,
                                        register_task, task_binding, task_table)
from hyperprompt_tasks.task_table_io import (check_task_table, load_task_table,
                                          save_or_check_task_table, save_task_table)

DEFAULT_MIXTURE = offline.OFFLINE_MIXTURE


def register_all(*, vocabulary=None, prefix: str = "", tfds_data_dir=None) -> tuple:
  """Registers GLUE, SuperGLUE and their mixtures (`vocabulary` default: T5's) and
  the offline tasks (byte vocabulary, or `vocabulary` when given), names prefixed."""
  names = glue.register_glue_tasks(vocabulary, prefix=prefix, tfds_data_dir=tfds_data_dir)
  names += super_glue.register_super_glue_tasks(vocabulary, prefix=prefix,
                                                tfds_data_dir=tfds_data_dir)
  names += mixtures.register_benchmark_mixtures(prefix=prefix)
  names += offline.register_offline_tasks(vocabulary, prefix=prefix)
  return names


register_all()
# WordNet is read when a dataset is built: `_v1` byte vocabulary, `_v2` WordNet SentencePiece.
wordnet.register_wordnet_tasks()
wordnet.register_wordnet_tasks(wordnet.sentencepiece_vocabulary(), version=2)
