# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""SuperGLUE tasks under t5's names from TFDS `super_glue/<config>:1.0.2`.

* `super_glue_{boolq,cb,copa,multirc,record,rte,wic,axb,axg}_v102`: t5's text
  format (`axb` rekeyed to premise/hypothesis, `axb`/`axg` formatted as rte and
  evaluated with `super_glue_rte_v102`'s task index; test split only).
* WSC as t5 trains and evaluates it: `super_glue_wsc_v102_simple_train` (correct
  referents only), `super_glue_wsc_v102_simple_eval` (its eval twin), and
  `dpr_v001_simple` (TFDS `definite_pronoun_resolution:1.1.0`), all in the
  `"wsc: ... *pronoun* ..." -> referent` format.
* `super_glue_wsc_v102`: WSC as binary classification with marked spans
  (`"wsc text: ... * noun * ... # pronoun # ..."` -> True/False; t5's `wsc`
  preprocessor, not part of t5's mixtures).

Metrics are t5's: CB mean 3-class F1 and accuracy; MultiRC F1 over all answers
and exact match per question; ReCoRD max-over-answers EM/F1 on one copy of each
query; accuracy elsewhere; none for axb/axg.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import seqio
import tensorflow_datasets as tfds

from hyperprompt_tasks import glue
from hyperprompt_tasks import metrics
from hyperprompt_tasks import postprocessors
from hyperprompt_tasks import preprocessors
from hyperprompt_tasks import registry
from hyperprompt_tasks import vocabularies

TFDS_VERSION = "1.0.2"
DPR_TFDS_NAME = "definite_pronoun_resolution:1.1.0"

# Training examples per task (TFDS train split sizes; the rates of t5's
# super_glue_v102_proportional; wsc_simple_train keeps the 259 of 554 WSC
# training examples whose candidate is the referent). 0: eval-only.
TRAIN_SIZES = {
    "dpr_v001_simple": 1_322,
    "super_glue_wsc_v102_simple_train": 259,
    "super_glue_wsc_v102_simple_eval": 0,
    "super_glue_boolq_v102": 9_427,
    "super_glue_cb_v102": 250,
    "super_glue_copa_v102": 400,
    "super_glue_multirc_v102": 27_243,
    "super_glue_record_v102": 138_854,
    "super_glue_rte_v102": 2_490,
    "super_glue_wic_v102": 5_428,
    "super_glue_axb_v102": 0,
    "super_glue_axg_v102": 0,
    "super_glue_wsc_v102": 554,
}

CONFIGS = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "axb", "axg")

_METRICS = {
    "boolq": (metrics.accuracy,),
    "cb": (metrics.mean_multiclass_f1(num_classes=3), metrics.accuracy),
    "copa": (metrics.accuracy,),
    "multirc": (metrics.multirc_f1_over_all_answers, metrics.multirc_exact_match),
    "record": (metrics.record,),
    "rte": (metrics.accuracy,),
    "wic": (metrics.accuracy,),
    "axb": (),  # Test labels are hidden.
    "axg": (),
}

_FEATURE_NAMES = {
    "multirc": ("question", "answer", "paragraph"),
    "wic": ("sentence1", "sentence2", "word"),  # start/end offsets are not used.
}


def task_name(config: str, prefix: str = "") -> str:
  return f"{prefix}super_glue_{config}_v102"


def label_classes(config: str) -> Tuple[str, ...]:
  return tuple(tfds.text.super_glue.SuperGlue.builder_configs[config].label_classes)


def text_preprocessors(config: str) -> list:
  """t5's text preprocessors for a SuperGLUE config."""
  if config == "record":
    return [preprocessors.record]
  steps = []
  if config == "axb":
    steps.append(functools.partial(
        seqio.preprocessors.rekey,
        key_map={"premise": "sentence1", "hypothesis": "sentence2", "label": "label",
                 "idx": "idx"}))
  benchmark = "rte" if config in ("axb", "axg") else config
  steps.append(functools.partial(preprocessors.glue, benchmark_name=benchmark,
                                 label_names=label_classes(config),
                                 feature_names=_FEATURE_NAMES.get(config)))
  return steps


def postprocess_fn(config: str):
  if config == "multirc":
    return postprocessors.multirc
  if config == "record":
    return postprocessors.record
  return functools.partial(postprocessors.string_label_to_class_id,
                           label_classes=label_classes(config))


def register_super_glue_tasks(vocabulary: Optional[seqio.Vocabulary] = None, *,
                              prefix: str = "",
                              tfds_data_dir: Optional[str] = None) -> Tuple[str, ...]:
  """Registers the SuperGLUE, WSC-simple and DPR tasks; see `glue.register_glue_tasks`."""
  vocabulary = vocabulary or vocabularies.t5_vocabulary()
  features = glue.output_features(vocabulary)
  names = []

  def source(tfds_name, splits):
    return seqio.TfdsDataSource(tfds_name=tfds_name, tfds_data_dir=tfds_data_dir,
                                splits=splits)

  def add(name, **kwargs):
    registry.register_task(prefix + name, output_features=features,
                           train_size=TRAIN_SIZES[name], **kwargs)
    names.append(prefix + name)

  add("dpr_v001_simple",
      source=source(DPR_TFDS_NAME, ("train", "test")),
      preprocessors=[preprocessors.definite_pronoun_resolution_simple],
      metric_fns=(metrics.accuracy,))
  wsc_fixed = f"super_glue/wsc.fixed:{TFDS_VERSION}"
  add("super_glue_wsc_v102_simple_train",
      source=source(wsc_fixed, ("train",)),
      preprocessors=[functools.partial(preprocessors.wsc_simple, correct_referent_only=True)])
  add("super_glue_wsc_v102_simple_eval",
      source=source(wsc_fixed, ("validation", "test")),
      preprocessors=[functools.partial(preprocessors.wsc_simple, correct_referent_only=False)],
      postprocess_fn=postprocessors.wsc_simple,
      metric_fns=(metrics.accuracy,),
      index_as=prefix + "super_glue_wsc_v102_simple_train")
  for config in CONFIGS:
    test_only = config in ("axb", "axg")
    add(task_name(config),
        source=source(f"super_glue/{config}:{TFDS_VERSION}",
                      ("test",) if test_only else ("train", "validation", "test")),
        preprocessors=text_preprocessors(config),
        postprocess_fn=postprocess_fn(config),
        metric_fns=_METRICS[config],
        index_as=task_name("rte", prefix) if test_only else None)
  add("super_glue_wsc_v102",
      source=source(wsc_fixed, ("train", "validation", "test")),
      preprocessors=[preprocessors.wsc],
      postprocess_fn=functools.partial(postprocessors.string_label_to_class_id,
                                       label_classes=("False", "True")),
      metric_fns=(metrics.accuracy,))
  return tuple(names)
