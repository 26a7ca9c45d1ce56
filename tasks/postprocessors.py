# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Postprocessors: decoded model output (or target) -> what the metrics compare.

seqio calls `postprocess_fn(text, example=..., is_target=...)`, where `example`
is the preprocessed task example (strings as bytes). Same behaviour as t5's
`t5.data.postprocessors`.
"""

from __future__ import annotations

from typing import Sequence


def _text(s) -> str:
  return s.decode("utf-8") if isinstance(s, bytes) else str(s)


def as_text(string, **unused_kwargs) -> str:
  """The decoded string, stripped (free-text targets compared by exact match)."""
  return _text(string).strip()


def string_to_float(string, default: float = -1.0, **unused_kwargs) -> float:
  """float(string), or `default` if the model did not write a number (STS-B)."""
  try:
    return float(string)
  except (TypeError, ValueError):
    return default


def string_label_to_class_id(string_label, label_classes: Sequence[str], default: int = -1,
                             **unused_kwargs) -> int:
  """Index of the label in `label_classes`, or `default` (-1: invalid) if absent."""
  label = _text(string_label)
  return list(label_classes).index(label) if label in label_classes else default


def multirc(string_label, example=None, is_target: bool = False) -> dict:
  """MultiRC answer as `{"value": 0|1|-1}`, plus the question group for targets.

  The group is `(idx/paragraph, idx/question)`, i.e. one group per question.
  """
  out = {"value": string_label_to_class_id(string_label, label_classes=("False", "True"))}
  if is_target:
    out["group"] = (int(example["idx/paragraph"]), int(example["idx/question"]))
  return out


def record(answer, example=None, is_target: bool = False) -> dict:
  """ReCoRD: `{"value": prediction}`, or all answers and the (passage, query) group."""
  if not is_target:
    return {"value": _text(answer)}
  answers = [_text(a) for a in example["answers"]]
  # Unlabeled (test) examples have no answers; the target then reads "<unk>".
  return {"value": answers or [_text(answer)],
          "group": (int(example["idx/passage"]), int(example["idx/query"]))}


_DETERMINERS = frozenset({
    "a", "an", "few", "her", "his", "each", "every", "many", "much", "my", "our", "some",
    "that", "the", "their", "these", "this", "those", "which", "whose", "your"
})


def _clean_referent(s) -> str:
  words = _text(s).strip().lower().split(" ")
  return " ".join(w for w in words if w not in _DETERMINERS)


def wsc_simple(prediction, example=None, is_target: bool = False) -> int:
  """WSC (simple): the label for targets; for predictions 1 if the predicted noun
  phrase names the candidate referent (ignoring case and determiners), else 0
  (-1 for an empty prediction)."""
  if is_target:
    return int(example["label"])
  pred = _clean_referent(prediction)
  if not pred:
    return -1
  referent = _clean_referent(example["targets_pretokenized"])
  if ("'" in pred) != ("'" in referent):
    return 0  # "Bob" is not "Bob's hat".
  pred_words, ref_words = set(pred.split(" ")), set(referent.split(" "))
  return int(pred_words <= ref_words or ref_words <= pred_words)
