# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Text preprocessors producing T5's GLUE/SuperGLUE text formats, and the task sentinel.

The text formats are those of the `t5` package (`t5.data.preprocessors`), written
anew here on `tf.strings`:

* `glue`: `"<benchmark> k1: v1 k2: v2 ..."` (keys sorted unless `feature_names`
  is given), target `label_names[label]` or `"<unk>"` for label -1; MultiRC drops
  `<br>`/`<b>` markup and keeps `idx/paragraph|question|answer`.
* `stsb`: target `round(5 * label) / 5` with one decimal (`tf.round`: halves go
  to even, as in t5).
* `wsc`: `"wsc text: ..."` with `* noun *` and `# pronoun #` marked.
* `wsc_simple`, `definite_pronoun_resolution_simple`: `"wsc: ... *pronoun* ..."`
  with the referent as target.
* `record`: `"record query: ... entities: e1, e2 passage: ..."`, one example per
  answer (`"<unk>"` when there is none); `answers` kept for the metric.

`add_task_sentinel` prepends task k's sentinel `<extra_id_k>` to the tokenized
inputs (see `hyperprompt_jax.task_ids`).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import seqio
import tensorflow as tf

from hyperprompt_jax import task_ids
from hyperprompt_tasks import vocabularies

_REGEX_SPECIAL = r"([.^$*+?()\[\]{}|\\])"


def _regex_escape(s: tf.Tensor) -> tf.Tensor:
  return tf.strings.regex_replace(s, _REGEX_SPECIAL, r"\\\1")


def _label_name(label: tf.Tensor, label_names: Sequence[str]) -> tf.Tensor:
  """`label_names[label]`, or "<unk>" for the unlabeled test examples (label -1)."""
  names = tf.constant(["<unk>"] + list(label_names))
  return tf.gather(names, tf.cast(label, tf.int32) + 1)


@seqio.map_over_dataset
def glue(x, benchmark_name: str, label_names: Sequence[str],
         feature_names: Sequence[str] | None = None, id_key: str | None = "idx"):
  """A GLUE/SuperGLUE example as `{"inputs", "targets", idx...}` text (t5's format)."""
  keys = list(feature_names) if feature_names else sorted(set(x) - {"label", "idx"})
  parts = [tf.constant(benchmark_name)]
  for key in keys:
    parts += [tf.constant(f"{key}:"), x[key]]
  inputs = tf.strings.join(parts, separator=" ")
  out = {}
  if benchmark_name == "multirc":
    inputs = tf.strings.regex_replace(inputs, "<br>", " ")
    inputs = tf.strings.regex_replace(inputs, "<(/)?b>", "")
    for part in ("paragraph", "question", "answer"):
      out[f"idx/{part}"] = x["idx"][part]
  elif id_key:
    out["idx"] = x[id_key]
  out["inputs"] = inputs
  out["targets"] = _label_name(x["label"], label_names)
  return out


@seqio.map_over_dataset
def stsb(x):
  """STS-B as text: the similarity rounded to the nearest 0.2, e.g. "3.4"."""
  inputs = tf.strings.join(
      ["stsb sentence1:", x["sentence1"], "sentence2:", x["sentence2"]], separator=" ")
  score = tf.round(tf.cast(x["label"], tf.float32) * 5.0) / 5.0
  return {"inputs": inputs, "targets": tf.strings.as_string(score, precision=1),
          "idx": x["idx"]}


def _mark_word_span(text, span, index, mark):
  """Surrounds `span` starting at word `index` of `text` with `mark`s."""
  pattern = tf.strings.join(
      ["^((?:\\S+\\s){", tf.strings.as_string(index), "})(", _regex_escape(span), ")"])
  return tf.strings.regex_replace(text, pattern, f"\\1{mark} \\2 {mark}")


@seqio.map_over_dataset
def wsc(x):
  """SuperGLUE WSC with the noun marked `* noun *` and the pronoun `# pronoun #`."""
  text = _mark_word_span(x["text"], x["span1_text"], x["span1_index"], "*")
  # Marking span 1 inserted two words before span 2 when span 1 comes first.
  span2_index = x["span2_index"] + 2 * tf.cast(x["span1_index"] < x["span2_index"],
                                               x["span2_index"].dtype)
  text = _mark_word_span(text, x["span2_text"], span2_index, "#")
  return {"inputs": tf.strings.join(["wsc text:", text], separator=" "),
          "targets": _label_name(x["label"], ["False", "True"]), "idx": x["idx"]}


def _star_word(text, word, index):
  """`text` with its `index`-th space-separated word, if equal to `word`, as `*word*`.

  If that word differs (two WSC training texts carry an off-by-one index, and
  mock data is random), the first word equal to `word` is starred instead; the
  text is unchanged if there is none.
  """
  words = tf.strings.split(text, sep=" ")
  n = tf.size(words, out_type=index.dtype)
  in_range = tf.logical_and(index >= 0, index < n)
  safe = tf.clip_by_value(index, 0, tf.maximum(n - 1, 0))
  exact = tf.logical_and(in_range, tf.equal(tf.gather(words, safe), word))
  matches = tf.cast(tf.where(tf.equal(words, word))[:, 0], index.dtype)
  found = tf.size(matches) > 0
  target = tf.cond(exact, lambda: safe,
                   lambda: tf.cond(found, lambda: matches[0],
                                   lambda: tf.constant(-1, index.dtype)))
  starred = tf.where(tf.range(n) == target, tf.strings.join(["*", words, "*"]), words)
  return tf.strings.reduce_join(starred, separator=" ")


def wsc_simple(dataset: tf.data.Dataset, label: str = "wsc:",
               correct_referent_only: bool = False) -> tf.data.Dataset:
  """SuperGLUE WSC as `"wsc: ... *pronoun* ..."` -> the candidate referent (t5's format).

  The target is always `span1_text`; `correct_referent_only=True` keeps only the
  examples where it is the true referent (for training).
  """
  if correct_referent_only:
    dataset = dataset.filter(lambda x: tf.cast(x["label"], tf.bool))

  def fn(x):
    text = _star_word(x["text"], x["span2_text"], tf.cast(x["span2_index"], tf.int32))
    return {"inputs": tf.strings.join([label, text], separator=" "),
            "targets": tf.reshape(x["span1_text"], []), "label": x["label"], "idx": x["idx"]}

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


@seqio.map_over_dataset
def definite_pronoun_resolution_simple(x, label: str = "wsc:"):
  """DPR as `"wsc: ... *pronoun* ..."` -> the correct candidate (first occurrence starred)."""
  pattern = tf.strings.join([" (", _regex_escape(x["pronoun"]), ")( |\\.|,)"])
  sentence = tf.strings.regex_replace(x["sentence"], pattern, " *\\1*\\2",
                                      replace_global=False)
  return {"inputs": tf.strings.join([label, sentence], separator=" "),
          "targets": tf.gather(x["candidates"], tf.cast(x["label"], tf.int32))}


def record(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """ReCoRD as text, one example per correct answer (one "<unk>" example if none)."""

  def fn(x):
    passage = tf.strings.regex_replace(x["passage"], "(\\.|\\?|\\!|\\\"|\\')\\n@highlight\\n",
                                       "\\1 ")
    passage = tf.strings.regex_replace(passage, "\\n@highlight\\n", ". ")
    inputs = tf.strings.join([
        "record query:", x["query"], "entities:",
        tf.strings.reduce_join(x["entities"], separator=", "), "passage:", passage
    ], separator=" ")
    answers = x["answers"]
    targets = tf.cond(tf.size(answers) > 0, lambda: answers, lambda: tf.constant(["<unk>"]))
    n = tf.size(targets)
    return tf.data.Dataset.from_tensor_slices({
        "inputs": tf.fill([n], inputs),
        "targets": targets,
        "idx/passage": tf.fill([n], x["idx"]["passage"]),
        "idx/query": tf.fill([n], x["idx"]["query"]),
        "answers": tf.repeat(answers[tf.newaxis], n, axis=0),
    })

  return dataset.flat_map(fn)


def add_task_sentinel(dataset: tf.data.Dataset,
                      output_features: Mapping[str, seqio.Feature], *,
                      task_index: int, feature: str = "inputs",
                      task_identity: Optional[str] = None) -> tf.data.Dataset:
  """Prepends task `task_index`'s sentinel `<extra_id_k>` to the tokenized `feature`.

  `task_index` and `task_identity` (the task whose index and embedding this one
  uses) are what the launcher reads back as the task table
  (`hyperprompt_jax.data.task_binding`); the identity does not change the data.

  Runs after tokenization and before `append_eos_after_trim`, so truncation
  never drops it. The vocabulary is read here (dataset build time), and an index
  without a sentinel in the vocabulary is refused.
  """
  del task_identity
  vocab = output_features[feature].vocabulary
  available = vocabularies.num_sentinels(vocab)
  if task_index >= available:
    raise ValueError(
        f"task index {task_index} needs sentinel <extra_id_{task_index}>, but the "
        f"vocabulary {vocab} has only {available} sentinels (extra ids).")
  task_sentinel_id = vocab.vocab_size - 1
  task_ids.validate_task_index(task_index, num_tasks=task_index + 1,
                               task_sentinel_id=task_sentinel_id, vocab_size=vocab.vocab_size)
  sentinel = task_ids.sentinel_for_task(task_index, task_sentinel_id)

  def fn(x):
    x = dict(x)
    tokens = x[feature]
    x[feature] = tf.concat([tf.constant([sentinel], tokens.dtype), tokens], axis=0)
    return x

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
