# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""GLUE tasks under t5's names (`glue_<config>_v002`) from TFDS `glue/<config>:1.0.0`.

Text format, postprocessors and metrics are t5's (see `preprocessors.glue`):
cola Matthews correlation; mrpc and qqp F1 (invalid predictions wrong) and
accuracy; stsb Pearson and Spearman; the rest accuracy; ax (test split only) none.
`glue_mnli_matched_v002`, `glue_mnli_mismatched_v002` and `glue_ax_v002` are
evaluated with `glue_mnli_v002`'s task index.
"""

from __future__ import annotations

import functools
from typing import Mapping, Optional, Tuple

import seqio
import tensorflow_datasets as tfds

from hyperprompt_tasks import metrics
from hyperprompt_tasks import postprocessors
from hyperprompt_tasks import preprocessors
from hyperprompt_tasks import registry
from hyperprompt_tasks import vocabularies

TFDS_VERSION = "1.0.0"  # The version t5's v002 tasks read.

# Training examples per task (TFDS glue 1.0.0 train split sizes; the rates of t5's
# glue_v002_proportional). Eval-only tasks have 0. Hard-coded so that mixing rates
# need no dataset metadata (nothing is downloaded at import).
TRAIN_SIZES = {
    "cola": 8_551,
    "sst2": 67_349,
    "mrpc": 3_668,
    "qqp": 363_849,
    "stsb": 5_749,
    "mnli": 392_702,
    "mnli_mismatched": 0,
    "mnli_matched": 0,
    "qnli": 104_743,
    "rte": 2_490,
    "wnli": 635,
    "ax": 0,
}

_SPLITS = {
    "mnli": ("train", "validation_matched", "validation_mismatched", "test_matched",
             "test_mismatched"),
    "mnli_matched": ("validation", "test"),
    "mnli_mismatched": ("validation", "test"),
    "ax": ("test",),
}

_METRICS = {
    "cola": (metrics.matthews_corrcoef,),
    "sst2": (metrics.accuracy,),
    "mrpc": (metrics.f1_score_with_invalid, metrics.accuracy),
    "qqp": (metrics.f1_score_with_invalid, metrics.accuracy),
    "stsb": (metrics.pearson_corrcoef, metrics.spearman_corrcoef),
    "mnli": (metrics.accuracy,),
    "mnli_matched": (metrics.accuracy,),
    "mnli_mismatched": (metrics.accuracy,),
    "qnli": (metrics.accuracy,),
    "rte": (metrics.accuracy,),
    "wnli": (metrics.accuracy,),
    "ax": (),  # Test labels are hidden.
}

_INDEX_AS = {"mnli_matched": "mnli", "mnli_mismatched": "mnli", "ax": "mnli"}

CONFIGS = tuple(TRAIN_SIZES)


def task_name(config: str, prefix: str = "") -> str:
  return f"{prefix}glue_{config}_v002"


def output_features(vocabulary: seqio.Vocabulary) -> Mapping[str, seqio.Feature]:
  return {
      "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True),
      "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True),
  }


def label_classes(config: str) -> Optional[Tuple[str, ...]]:
  """TFDS label names of a GLUE config (None for the regression task stsb)."""
  classes = tfds.text.glue.Glue.builder_configs[config].label_classes
  return tuple(classes) if classes else None


def text_preprocessor(config: str):
  """t5's GLUE text preprocessor for `config` (ax is formatted as mnli)."""
  if config == "stsb":
    return preprocessors.stsb
  benchmark = "mnli" if ("mnli" in config or config == "ax") else config
  return functools.partial(preprocessors.glue, benchmark_name=benchmark,
                           label_names=label_classes(config))


def postprocess_fn(config: str):
  if config == "stsb":
    return postprocessors.string_to_float
  return functools.partial(postprocessors.string_label_to_class_id,
                           label_classes=label_classes(config))


def register_glue_tasks(vocabulary: Optional[seqio.Vocabulary] = None, *, prefix: str = "",
                        tfds_data_dir: Optional[str] = None) -> Tuple[str, ...]:
  """Registers every GLUE task; `vocabulary` defaults to T5's SentencePiece model.

  `prefix` is prepended to every task name (tests register offline-vocabulary
  copies this way). Returns the registered names.
  """
  vocabulary = vocabulary or vocabularies.t5_vocabulary()
  names = []
  for config in CONFIGS:
    name = task_name(config, prefix)
    registry.register_task(
        name,
        source=seqio.TfdsDataSource(
            tfds_name=f"glue/{config}:{TFDS_VERSION}", tfds_data_dir=tfds_data_dir,
            splits=_SPLITS.get(config, ("train", "validation", "test"))),
        preprocessors=[text_preprocessor(config)],
        output_features=output_features(vocabulary),
        postprocess_fn=postprocess_fn(config),
        metric_fns=_METRICS[config],
        index_as=task_name(_INDEX_AS[config], prefix) if config in _INDEX_AS else None,
        train_size=TRAIN_SIZES[config])
    names.append(name)
  return tuple(names)
