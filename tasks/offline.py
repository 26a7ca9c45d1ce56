# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""The offline default mixture `hyperprompt_offline_v1`: no download, learnable in minutes.

Every task reads the same kind of input, a string of 8 letters over `abcd`
(e.g. `"cabdbacd"`), and differs only in the rule mapping it to a short target,
so a multi-task model has to use the task identity (the leading sentinel) to
solve them. Train and validation splits hold the same strings for every task:
all 4^8 = 65,536 strings, permuted with a fixed seed; the first 500 are the
validation split and the other 65,036 the training split (disjoint). Sources
are `seqio.FunctionDataSource`s yielding `{"seq", "label"}`; the text
preprocessor, `string_label_to_class_id` postprocessor and accuracy metric are
the GLUE code path (invalid predictions count as wrong).

| task | target | classes | chance (best constant answer, exact) |
|---|---|---|---|
| `offline_first_v1` | first letter | 4 | 25.00 |
| `offline_last_v1` | last letter | 4 | 25.00 |
| `offline_count_a_v1` | number of `a`s, `"0"`..`"8"` | 9 | 31.15 |
| `offline_compare_ends_v1` | first vs last letter: `<`, `=`, `>` | 3 | 37.50 |
| `offline_majority_v1` | most frequent letter (ties: earliest in the alphabet) | 4 | 33.17 |
| `offline_ends_v1` | first and last letter, e.g. `"cd"` | 16 | 6.25 |
| `offline_last_first_v1` (held out) | last and first letter, e.g. `"dc"` | 16 | 6.25 |

`chance_accuracy(task)` computes the chance column from the rules. The held-out
task is not in `hyperprompt_offline_v1`; `hyperprompt_offline_v1_new_task` is
the same table plus it at index 6, with rate 0 for the six trained tasks (they
are still evaluated), for adding a task to a trained model. Targets are 1-2
byte tokens; with the byte vocabulary inputs are 8 letters + sentinel + EOS.
"""

from __future__ import annotations

import collections
import functools
import itertools
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import seqio
import tensorflow as tf

from hyperprompt_tasks import metrics
from hyperprompt_tasks import postprocessors
from hyperprompt_tasks import registry
from hyperprompt_tasks import vocabularies

ALPHABET = "abcd"
LENGTH = 8
VALIDATION_SIZE = 500
SEED = 1729
TRAIN_SIZE = len(ALPHABET) ** LENGTH - VALIDATION_SIZE
SPLITS = ("train", "validation")

OFFLINE_MIXTURE = "hyperprompt_offline_v1"
OFFLINE_NEW_TASK_MIXTURE = "hyperprompt_offline_v1_new_task"
# Sequence lengths that fit every offline example (sentinel + 8 letters + EOS; 2 + EOS).
FEATURE_LENGTHS = {"inputs": 10, "targets": 3}


def _majority(s: str) -> str:
  counts = collections.Counter(s)
  top = max(counts.values())
  return min(c for c in counts if counts[c] == top)


def _compare(a: str, b: str) -> str:
  return "<" if a < b else ("=" if a == b else ">")


_PAIRS = tuple(a + b for a in ALPHABET for b in ALPHABET)

# name -> (rule, label classes)
RULES: Dict[str, Tuple[Callable[[str], str], Tuple[str, ...]]] = {
    "first": (lambda s: s[0], tuple(ALPHABET)),
    "last": (lambda s: s[-1], tuple(ALPHABET)),
    "count_a": (lambda s: str(s.count("a")), tuple(str(i) for i in range(LENGTH + 1))),
    "compare_ends": (lambda s: _compare(s[0], s[-1]), ("<", "=", ">")),
    "majority": (_majority, tuple(ALPHABET)),
    "ends": (lambda s: s[0] + s[-1], _PAIRS),
}
HELD_OUT_RULES = {"last_first": (lambda s: s[-1] + s[0], _PAIRS)}
ALL_RULES = {**RULES, **HELD_OUT_RULES}


def task_name(rule: str, prefix: str = "") -> str:
  return f"{prefix}offline_{rule}_v1"


TASKS = tuple(task_name(r) for r in RULES)
HELD_OUT_TASK = task_name("last_first")


@functools.lru_cache(maxsize=None)
def split_strings(split: str) -> Tuple[str, ...]:
  """The input strings of a split (same for every task), deterministic."""
  if split not in SPLITS:
    raise ValueError(f"offline tasks have splits {SPLITS}, not {split!r}")
  order = np.random.RandomState(SEED).permutation(len(ALPHABET) ** LENGTH)
  chosen = order[:VALIDATION_SIZE] if split == "validation" else order[VALIDATION_SIZE:]
  digits = (chosen[:, None] // len(ALPHABET) ** np.arange(LENGTH - 1, -1, -1)) % len(ALPHABET)
  letters = np.array(list(ALPHABET))[digits]
  return tuple("".join(row) for row in letters)


@functools.lru_cache(maxsize=None)
def split_labels(rule: str, split: str) -> np.ndarray:
  fn, classes = ALL_RULES[rule]
  index = {c: i for i, c in enumerate(classes)}
  return np.array([index[fn(s)] for s in split_strings(split)], np.int64)


def _dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None, *,
                rule: str) -> tf.data.Dataset:
  del shuffle_files, seed  # One in-memory "file"; seqio shuffles examples.
  return tf.data.Dataset.from_tensor_slices({
      "seq": np.array(split_strings(split), dtype=object),
      "label": split_labels(rule, split),
  })


def text_preprocessor(dataset: tf.data.Dataset,
                      label_names: Sequence[str]) -> tf.data.Dataset:
  """`{"seq", "label"}` -> `{"inputs": seq, "targets": label_names[label]}`."""
  names = tf.constant(list(label_names))
  return dataset.map(lambda x: {"inputs": x["seq"], "targets": tf.gather(names, x["label"])},
                     num_parallel_calls=tf.data.AUTOTUNE)


def rule_of(name: str) -> Optional[str]:
  """The rule of an offline task name (any prefix, index suffix allowed), else None."""
  if name in ALL_RULES:
    return name
  base = name.split(registry.INDEX_SUFFIX)[0]
  return next((r for r in ALL_RULES if base.endswith(task_name(r))), None)


def chance_accuracy(rule_or_task: str) -> float:
  """Accuracy (x100) of always giving the most frequent target, over all inputs."""
  rule = rule_of(rule_or_task)
  if rule is None:
    raise ValueError(f"{rule_or_task!r} is not an offline task or rule ({sorted(ALL_RULES)})")
  fn, _ = ALL_RULES[rule]
  counts = collections.Counter(fn("".join(p)) for p in itertools.product(ALPHABET, repeat=LENGTH))
  return 100.0 * max(counts.values()) / len(ALPHABET) ** LENGTH


def register_offline_tasks(vocabulary: Optional[seqio.Vocabulary] = None, *,
                           prefix: str = "") -> Tuple[str, ...]:
  """Registers the offline tasks and both offline mixtures (byte vocabulary by default)."""
  features = vocabularies.text_features(vocabulary)
  names = []
  for rule, (_, classes) in ALL_RULES.items():
    name = task_name(rule, prefix)
    registry.register_task(
        name,
        source=seqio.FunctionDataSource(
            functools.partial(_dataset_fn, rule=rule), splits=SPLITS,
            num_input_examples={"train": TRAIN_SIZE, "validation": VALIDATION_SIZE}),
        preprocessors=[functools.partial(text_preprocessor, label_names=classes)],
        output_features=features,
        postprocess_fn=functools.partial(postprocessors.string_label_to_class_id,
                                         label_classes=classes),
        metric_fns=(metrics.accuracy,),
        train_size=TRAIN_SIZE)
    names.append(name)
  trained = [task_name(r, prefix) for r in RULES]
  registry.register_mixture(prefix + OFFLINE_MIXTURE, [(t, 1.0) for t in trained])
  registry.register_mixture(prefix + OFFLINE_NEW_TASK_MIXTURE,
                            [(t, 0.0) for t in trained] +
                            [(task_name("last_first", prefix), 1.0)])
  return tuple(names)
