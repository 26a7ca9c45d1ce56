# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""GLUE/SuperGLUE metrics, `fn(targets, predictions) -> {name: value x 100}` (t5's).

Built on scikit-learn and scipy. Names of the returned values follow
`t5.evaluation.metrics`: `accuracy`, `f1`, `matthews_corrcoef`,
`pearson_corrcoef`, `spearman_corrcoef`, `mean_3class_f1`, `exact_match`, `em`.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Callable, Hashable, Sequence

import numpy as np
import scipy.stats
import sklearn.metrics

MetricFn = Callable[[Sequence, Sequence], dict]


def accuracy(targets, predictions) -> dict:
  return {"accuracy": 100 * sklearn.metrics.accuracy_score(targets, predictions)}


def matthews_corrcoef(targets, predictions) -> dict:
  return {"matthews_corrcoef": 100 * sklearn.metrics.matthews_corrcoef(targets, predictions)}


def pearson_corrcoef(targets, predictions) -> dict:
  return {"pearson_corrcoef": 100 * scipy.stats.pearsonr(targets, predictions)[0]}


def spearman_corrcoef(targets, predictions) -> dict:
  return {"spearman_corrcoef": 100 * scipy.stats.spearmanr(targets, predictions)[0]}


def f1_score_with_invalid(targets, predictions) -> dict:
  """Binary F1 where a prediction other than 0 or 1 counts as wrong."""
  targets = np.asarray(targets)
  predictions = np.array(predictions)
  invalid = (predictions != 0) & (predictions != 1)
  predictions[invalid] = 1 - targets[invalid]  # the opposite of the truth
  return {"f1": 100 * sklearn.metrics.f1_score(targets, predictions)}


def mean_multiclass_f1(num_classes: int) -> MetricFn:
  """Unweighted mean over classes 0..num_classes-1 of the per-class F1 (CB)."""

  def fn(targets, predictions):
    value = sklearn.metrics.fbeta_score(targets, predictions, beta=1,
                                        labels=list(range(num_classes)), average="macro")
    return {f"mean_{num_classes}class_f1": 100 * value}

  return fn


def all_match(targets, predictions) -> dict:
  """100 if every prediction equals its target, else 0."""
  return {"exact_match": 100 * float(np.array_equal(targets, predictions))}


def mean_group_metric(metric_fn: MetricFn, group_key: str = "group",
                      value_key: str = "value") -> MetricFn:
  """Mean of `metric_fn` over groups (the group is read from the target dicts)."""

  def fn(targets, predictions):
    groups = collections.defaultdict(lambda: ([], []))
    for t, p in zip(targets, predictions):
      groups[t[group_key]][0].append(t[value_key])
      groups[t[group_key]][1].append(p[value_key])
    scores = collections.defaultdict(list)
    for group_targets, group_predictions in groups.values():
      for name, value in metric_fn(group_targets, group_predictions).items():
        scores[name].append(value)
    return {name: float(np.mean(values)) for name, values in scores.items()}

  return fn


def deduplicate_metric(metric_fn: MetricFn, group_key: str = "group",
                       value_key: str = "value") -> MetricFn:
  """`metric_fn` on the first example of each group only (ReCoRD repeats examples)."""

  def fn(targets, predictions):
    seen: set[Hashable] = set()
    kept_targets, kept_predictions = [], []
    for t, p in zip(targets, predictions):
      if t[group_key] in seen:
        continue
      seen.add(t[group_key])
      kept_targets.append(t[value_key])
      kept_predictions.append(p[value_key])
    return metric_fn(kept_targets, kept_predictions)

  return fn


def multirc_f1_over_all_answers(targets, predictions) -> dict:
  """MultiRC F1a: binary F1 over every answer option (invalid counts as wrong)."""
  return f1_score_with_invalid([t["value"] for t in targets], [p["value"] for p in predictions])


def normalize_squad(text: str) -> str:
  """SQuAD v1.1 answer normalisation: lower case, no punctuation/articles/extra spaces."""
  text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def _token_f1(target: str, prediction: str) -> float:
  pred_tokens, target_tokens = prediction.split(), target.split()
  common = sum((collections.Counter(pred_tokens) & collections.Counter(target_tokens)).values())
  if common == 0:
    return 0.0
  precision, recall = common / len(pred_tokens), common / len(target_tokens)
  return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict:
  """Exact match and token F1, each maximised over the acceptable answers."""
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
  em, f1 = [], []
  for answers, prediction in zip(targets, predictions):
    answers = [normalize_squad(a) for a in answers]
    prediction = normalize_squad(prediction)
    em.append(max(float(a == prediction) for a in answers))
    f1.append(max(_token_f1(a, prediction) for a in answers))
  return {"em": 100 * float(np.mean(em)), "f1": 100 * float(np.mean(f1))}


record = deduplicate_metric(squad)  # ReCoRD: max over answers, one copy per query.
multirc_exact_match = mean_group_metric(all_match)  # MultiRC EM over questions.
