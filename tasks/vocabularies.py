# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Vocabularies for the registered tasks; nothing is read until a dataset is built.

* `t5_vocabulary()`: T5's public SentencePiece model. The default file,
  `gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model`, already holds
  the 100 sentinels `<extra_id_0..99>` (ids 32099..32000), so it is used with
  `extra_ids=0`, exactly as t5x's `t5_1_1/base.gin` does; the older
  `cc_all.32000` file needs `extra_ids=100` and gives the same ids. The path is
  taken from the argument, else from the environment variable
  `HYPERPROMPT_T5_SPM_PATH` (read when the task module is imported, so a local
  copy can be used offline), else the default.
* `byte_vocabulary()`: seqio's `ByteVocabulary` (pad 0, EOS 1, UNK 2, bytes
  3..258) with 100 extra ids, so task k's sentinel is `358 - k`. Needs no file.
* `seqio_test_vocabulary()`: the 26-piece SentencePiece model shipped inside the
  seqio wheel (`seqio/test_data/sentencepiece/sentencepiece.model`), plus 100
  extra ids; for offline tests of SentencePiece code paths.

seqio compares SentencePiece vocabularies by file path and `extra_ids`, so the
model's gin `VOCABULARY` must name the same file as the tasks.
"""

from __future__ import annotations

import os

import gin
import seqio

DEFAULT_T5_SPM_PATH = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
DEFAULT_T5_EXTRA_IDS = 0  # The .100extra file already contains <extra_id_0..99>.
T5_SPM_PATH_ENV = "HYPERPROMPT_T5_SPM_PATH"
DEFAULT_EXTRA_IDS = 100  # For vocabularies whose sentinels we add (bytes, test SPM).


@gin.configurable
def t5_vocabulary(path: str | None = None,
                  extra_ids: int | None = None) -> seqio.SentencePieceVocabulary:
  """T5's SentencePiece vocabulary (lazy: the file is read on first use)."""
  path = path or os.environ.get(T5_SPM_PATH_ENV) or DEFAULT_T5_SPM_PATH
  if extra_ids is None:
    extra_ids = DEFAULT_T5_EXTRA_IDS if "100extra" in path else DEFAULT_EXTRA_IDS
  return seqio.SentencePieceVocabulary(path, extra_ids=extra_ids)


@gin.configurable
def byte_vocabulary(extra_ids: int = DEFAULT_EXTRA_IDS) -> seqio.ByteVocabulary:
  """ByT5's byte vocabulary with `extra_ids` sentinels (default vocabulary offline)."""
  return seqio.ByteVocabulary(extra_ids=extra_ids)


def seqio_test_spm_path() -> str:
  """Path of the small SentencePiece model inside the installed seqio package."""
  path = os.path.join(os.path.dirname(seqio.__file__), "test_data", "sentencepiece",
                      "sentencepiece.model")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"the seqio installation at {os.path.dirname(seqio.__file__)} has no test "
        f"SentencePiece model ({path}); reinstall seqio from its wheel.")
  return path


@gin.configurable
def seqio_test_vocabulary(extra_ids: int = DEFAULT_EXTRA_IDS) -> seqio.SentencePieceVocabulary:
  """The seqio wheel's 26-piece test SentencePiece model plus `extra_ids` sentinels."""
  return seqio.SentencePieceVocabulary(seqio_test_spm_path(), extra_ids=extra_ids)


VOCABULARIES = {
    "t5": t5_vocabulary,
    "byte": byte_vocabulary,
    "seqio_test": seqio_test_vocabulary,
}


def text_features(vocabulary: seqio.Vocabulary | None = None) -> dict:
  """`{"inputs", "targets"}` seqio features with EOS (default: the byte vocabulary)."""
  vocabulary = vocabulary or byte_vocabulary()
  return {"inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True),
          "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True)}


def get_vocabulary(name: str) -> seqio.Vocabulary:
  """One of `VOCABULARIES` by name ('t5', 'byte', 'seqio_test')."""
  if name not in VOCABULARIES:
    raise ValueError(f"unknown vocabulary {name!r}; choose one of {sorted(VOCABULARIES)}")
  return VOCABULARIES[name]()


def num_sentinels(vocabulary: seqio.Vocabulary) -> int:
  """How many `<extra_id_k>` sentinels (ids `vocab_size - 1 - k`) the vocabulary has.

  Loads a SentencePiece model: call it when datasets are built, not at import.
  """
  if vocabulary.extra_ids:
    return int(vocabulary.extra_ids)
  if isinstance(vocabulary, seqio.SentencePieceVocabulary):
    # Sentinels stored in the model file itself (e.g. T5's .100extra model).
    tokenizer = vocabulary.tokenizer
    size = tokenizer.get_piece_size()
    count = 0
    while count < size and f"extra_id_{count}>" in tokenizer.id_to_piece(size - 1 - count):
      count += 1
    return count
  return 0
