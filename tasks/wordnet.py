# Copyright 2026 The hyperprompt-jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Tasks made from WordNet 3.0 (read with nltk; see `wordnet_data` for where it lives).

Five multi-task fine-tuning tasks of different kinds, in t5's text format, and a
span-corruption pretraining task over WordNet's glosses and example sentences:

| task | input (t5 text format) | target | kind |
|---|---|---|---|
| `wordnet_wic_v1` | `wic word: W sentence1: S1 sentence2: S2` | `True` / `False` (same sense?) | sentence-pair, 2 classes |
| `wordnet_relation_v1` | `relation word1: A word2: B` | `synonym` / `antonym` / `hypernym` / `unrelated` | word-pair, 4 classes |
| `wordnet_pos_v1` | `pos gloss: G` | `noun` / `verb` / `adjective` / `adverb` | single sentence, 4 classes |
| `wordnet_lexname_v1` | `lexname gloss: G` | lexicographer file, e.g. `noun.animal` | single sentence, 45 classes |
| `wordnet_reverse_dictionary_v1` | `reverse dictionary gloss: G` | the word, e.g. `dog` | generation, exact match |
| `wordnet_span_corruption_v1` | glosses and examples, span-corrupted | the noise spans | pretraining (not in the mixture) |

t5's keys and label names; WiC puts `word:` first (t5 puts it last) so that
truncating a long pair of sentences never drops the word.

**Splits by lemma.** Every lemma (lower-cased, `_` kept, so `bank` the noun and
the verb are one lemma) goes to one split by `md5("wordnet-split:" + lemma)`:
bucket `< 80` train, `< 90` validation, else test. An example is *about* a set
of lemmas (WiC: its word; relation: both words; gloss tasks: every lemma of the
synset) and goes to the split of those lemmas, or is dropped when they fall in
different splits, so no word appears in two splits. The pretraining corpus is
made of the synsets whose lemmas are all in the training split. Validation and
test hold at most `EVAL_CAP` (500) examples per task; class-balanced tasks are
balanced within each split. Everything is deterministic (fixed seeds, WordNet's
file order). `split_sizes()` and `chance_accuracy(task)` (the best constant
answer on validation) are computed from the data; docs/wordnet.md has the table.

The mixture `wordnet_lexical_v1` mixes the five tasks examples-proportionally
with a cap of `MIXTURE_CAP` training examples (rates are read from the data when
the mixture is first sampled, so importing this module reads nothing).

**Vocabularies.** The `_v1` names (table above) use the byte vocabulary; the same
tasks, mixture and pretraining task named `_v2` (`wordnet_lexical_v2`, ...) use
`sentencepiece_vocabulary()`: 4,000 unigram pieces trained on the training split
(`sentencepiece_texts`) when first used, cached next to the examples. The `make
quality` experiment uses `_v2` (docs/wordnet.md says why).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import json
import os
import random
import re
from typing import Dict, List, Optional, Sequence, Tuple

import seqio
import tensorflow as tf

from hyperprompt_jax import run_dir
from hyperprompt_tasks import metrics
from hyperprompt_tasks import postprocessors
from hyperprompt_tasks import registry
from hyperprompt_tasks import span_corruption
from hyperprompt_tasks import vocabularies
from hyperprompt_tasks import wordnet_data

SPLITS = ("train", "validation", "test")
EVAL_CAP = 500
MIXTURE_CAP = 20_000
SEED = 20220701
BUILD_VERSION = 2  # bump when the examples change (names the on-disk cache)
WORDNET_MIXTURE = "wordnet_lexical_v1"  # = mixture_name(), pretrain_task_name(): the bytes
PRETRAIN_TASK = "wordnet_span_corruption_v1"

WIC, RELATION, POS, LEXNAME, REVERSE = "wic", "relation", "pos", "lexname", "reverse_dictionary"
KINDS = (WIC, RELATION, POS, LEXNAME, REVERSE)
POS_NAMES = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
RELATIONS = ("synonym", "antonym", "hypernym", "unrelated")
LABELS: Dict[str, Optional[Tuple[str, ...]]] = {
    WIC: ("False", "True"),
    RELATION: RELATIONS,
    POS: ("noun", "verb", "adjective", "adverb"),
    LEXNAME: wordnet_data.LEXNAMES,
    REVERSE: None,  # free text, exact match
}
# Per-class caps of the class-balanced tasks, training split (evaluation splits: EVAL_CAP).
RELATION_TRAIN_CAP_PER_CLASS = 2500
RELATION_EVAL_CAP_PER_CLASS = 125
LEXNAME_TRAIN_CAP_PER_CLASS = 400
LEXNAME_EVAL_CAP_PER_CLASS = 40
REVERSE_TRAIN_CAP = 15_000
# The `_v2` tasks' SentencePiece vocabulary: unigram pieces trained on the training
# split (`sentencepiece_texts`), plus the 100 sentinels seqio adds on top.
SPM_VOCAB_SIZE = 4000
SPM_OPTIONS = dict(model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1,
                   unk_id=2, bos_id=-1, input_sentence_size=0, num_threads=1,
                   minloglevel=2)

Example = Tuple[str, str]  # (inputs, targets)


def task_name(kind: str, prefix: str = "", version: int = 1) -> str:
  return f"{prefix}wordnet_{kind}_v{version}"


def mixture_name(prefix: str = "", version: int = 1) -> str:
  return f"{prefix}wordnet_lexical_v{version}"


def pretrain_task_name(prefix: str = "", version: int = 1) -> str:
  return f"{prefix}wordnet_span_corruption_v{version}"


_NAME = re.compile(r"wordnet_([a-z_]+)_v(\d+)$")


def version_of(name: str) -> Optional[int]:
  """The `_v<version>` of a WordNet task or mixture name (index suffix allowed), else None."""
  match = _NAME.search(name.split(registry.INDEX_SUFFIX)[0])
  return int(match.group(2)) if match else None


TASKS = tuple(task_name(k) for k in KINDS)


# ---------------------------------------------------------------------------
# Splits by lemma.
# ---------------------------------------------------------------------------


def lemma_split(lemma: str) -> str:
  """The split of a lemma (see the module docstring)."""
  digest = hashlib.md5(("wordnet-split:" + lemma.lower()).encode("utf-8")).hexdigest()
  bucket = int(digest[:8], 16) % 100
  return "train" if bucket < 80 else ("validation" if bucket < 90 else "test")


def split_of(lemmas: Sequence[str]) -> Optional[str]:
  """The common split of `lemmas`, or None when they fall in different splits."""
  splits = {lemma_split(x) for x in lemmas}
  return splits.pop() if len(splits) == 1 else None


def words(lemma: str) -> str:
  """A lemma name as text: `domestic_dog` -> `domestic dog`."""
  return lemma.replace("_", " ")


def _contains_word(sentence: str, word: str) -> bool:
  return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", sentence,
                   flags=re.IGNORECASE) is not None


# ---------------------------------------------------------------------------
# The examples of each task, from nltk's reader.
# ---------------------------------------------------------------------------


def _wic(wn) -> Dict[str, List[Tuple[Example, Tuple[str, ...]]]]:
  """Pairs of example sentences of one lemma: same synset (True) or not (False)."""
  uses = collections.defaultdict(list)  # lemma -> [(synset, [examples containing it])]
  for synset in wn.all_synsets():
    for lemma in synset.lemma_names():
      found = [e for e in synset.examples() if _contains_word(e, words(lemma))]
      if found:
        uses[lemma.lower()].append((synset.name(), found))
  rng = random.Random(SEED)
  positives, negatives = [], []
  for lemma in sorted(uses):
    senses = uses[lemma]
    word = words(lemma)
    multi = [s for s in senses if len(s[1]) >= 2]
    if multi:
      _, sentences = rng.choice(multi)
      a, b = rng.sample(sentences, 2)
      positives.append(((a, b, word, "True"), (lemma,)))
    if len(senses) >= 2:
      (_, ea), (_, eb) = rng.sample(senses, 2)
      negatives.append(((rng.choice(ea), rng.choice(eb), word, "False"), (lemma,)))
  out = collections.defaultdict(list)
  for items in (positives, negatives):
    for (a, b, word, label), about in items:
      out[lemma_split(about[0])].append(
          ((f"wic word: {word} sentence1: {a} sentence2: {b}", label), about))
  return _balance(out, LABELS[WIC])


def _relation(wn) -> Dict[str, List[Tuple[Example, Tuple[str, ...]]]]:
  """Word pairs labelled synonym / antonym / hypernym / unrelated, balanced per split."""
  pairs = {r: set() for r in RELATIONS}
  names_by_pos = collections.defaultdict(list)
  for synset in wn.all_synsets():
    names = [x for x in synset.lemma_names()]
    names_by_pos[synset.pos()].extend(names)
    for i, a in enumerate(names):
      for b in names[i + 1:]:
        if a.lower() != b.lower():
          pairs["synonym"].add((a, b))
    for lemma in synset.lemmas():
      for antonym in lemma.antonyms():
        if (antonym.name(), lemma.name()) not in pairs["antonym"]:
          pairs["antonym"].add((lemma.name(), antonym.name()))
    for hyper in synset.hypernyms():
      pairs["hypernym"].add((names[0], hyper.lemma_names()[0]))
  related = set().union(*(pairs[r] for r in RELATIONS[:3]))
  related |= {(b, a) for a, b in related}
  rng = random.Random(SEED + 1)
  target = len(pairs["antonym"])
  pos_keys = sorted(names_by_pos)
  while len(pairs["unrelated"]) < 3 * target:
    pool = names_by_pos[rng.choice(pos_keys)]
    a, b = rng.choice(pool), rng.choice(pool)
    if a.lower() != b.lower() and (a, b) not in related:
      pairs["unrelated"].add((a, b))
  out = collections.defaultdict(list)
  for relation in RELATIONS:
    for a, b in sorted(pairs[relation]):
      split = split_of((a, b))
      if split:
        out[split].append(((f"relation word1: {words(a)} word2: {words(b)}", relation),
                           (a.lower(), b.lower())))
  # Antonym pairs with both words in one evaluation split are rare (~1% of them):
  # every class is capped, so the evaluation splits are not exactly balanced.
  return _cap_per_class(out, RELATION_TRAIN_CAP_PER_CLASS, RELATION_EVAL_CAP_PER_CLASS)


def _gloss_examples(wn, kind: str) -> Dict[str, List[Tuple[Example, Tuple[str, ...]]]]:
  out = collections.defaultdict(list)
  for synset in wn.all_synsets():
    about = tuple(x.lower() for x in synset.lemma_names())
    split = split_of(about)
    gloss = synset.definition()
    if not split or not gloss:
      continue
    if kind == POS:
      out[split].append(((f"pos gloss: {gloss}", POS_NAMES[synset.pos()]), about))
    elif kind == LEXNAME:
      out[split].append(((f"lexname gloss: {gloss}", synset.lexname()), about))
    else:
      word = synset.lemma_names()[0]
      if word.isalpha() and word.islower() and not _contains_word(gloss, word):
        out[split].append(((f"reverse dictionary gloss: {gloss}", word), about))
  return out


def _balance(by_split, classes, per_class=None):
  """Equal counts of every class within each split (the smallest class's count)."""
  rng = random.Random(SEED + 2)
  out = {}
  for split, items in by_split.items():
    by_class = collections.defaultdict(list)
    for item in items:
      by_class[item[0][1]].append(item)
    present = [c for c in classes if by_class[c]]
    n = min(len(by_class[c]) for c in present) if present else 0
    if per_class is not None:
      n = min(n, per_class)
    chosen = []
    for c in present:
      chosen += rng.sample(by_class[c], n)
    out[split] = chosen
  return out


def _cap_per_class(by_split, train_cap, eval_cap):
  rng = random.Random(SEED + 3)
  out = {}
  for split, items in by_split.items():
    cap = train_cap if split == "train" else eval_cap
    by_class = collections.defaultdict(list)
    for item in items:
      by_class[item[0][1]].append(item)
    out[split] = [x for c in sorted(by_class)
                  for x in (rng.sample(by_class[c], min(cap, len(by_class[c]))))]
  return out


@functools.lru_cache(maxsize=4)
def _all_examples(key: str) -> Dict[str, Dict[str, Tuple[Example, ...]]]:
  """{kind: {split: examples}} of the WordNet `key` names (built once, cached on disk)."""
  path = os.path.join(wordnet_data.layout_root(), "hyperprompt_wordnet_tasks_" + hashlib.md5(
      f"{BUILD_VERSION}:{key}".encode()).hexdigest()[:12] + ".json")
  if os.path.isfile(path):
    with open(path) as f:
      saved = json.load(f)
    return {k: {s: tuple(tuple(e) for e in v) for s, v in d.items()} for k, d in saved.items()}
  out = _build_examples(wordnet_data.load_wordnet())
  run_dir.write_json(path, out, indent=None, sort_keys=False)  # atomic, per-process temp name
  return out


def _build_examples(wn) -> Dict[str, Dict[str, Tuple[Example, ...]]]:
  built = {
      WIC: _wic(wn),
      RELATION: _relation(wn),
      POS: _balance(_gloss_examples(wn, POS), LABELS[POS]),
      LEXNAME: _cap_per_class(_gloss_examples(wn, LEXNAME), LEXNAME_TRAIN_CAP_PER_CLASS,
                              LEXNAME_EVAL_CAP_PER_CLASS),
      REVERSE: _gloss_examples(wn, REVERSE),
  }
  out = {}
  for kind, by_split in built.items():
    out[kind] = {}
    for i, split in enumerate(SPLITS):
      items = [example for example, _ in by_split.get(split, [])]
      random.Random(SEED + 10 * i + KINDS.index(kind)).shuffle(items)
      cap = REVERSE_TRAIN_CAP if (split == "train" and kind == REVERSE) else (
          None if split == "train" else EVAL_CAP)
      out[kind][split] = tuple(items[:cap] if cap else items)
  return out


def examples(kind: str, split: str) -> Tuple[Example, ...]:
  """The (inputs, targets) text pairs of task `kind` in `split`."""
  if kind not in KINDS:
    raise ValueError(f"unknown WordNet task kind {kind!r}; choose one of {KINDS}")
  if split not in SPLITS:
    raise ValueError(f"WordNet tasks have splits {SPLITS}, not {split!r}")
  return _all_examples(wordnet_data.source_key())[kind][split]


def pretraining_texts(split: str) -> Tuple[str, ...]:
  """Glosses and example sentences of the synsets whose lemmas are all in `split`."""
  return _pretraining_texts(wordnet_data.source_key(), split)


@functools.lru_cache(maxsize=8)
def _pretraining_texts(key: str, split: str) -> Tuple[str, ...]:
  del key
  out = []
  for synset in wordnet_data.load_wordnet().all_synsets():
    if split_of([x.lower() for x in synset.lemma_names()]) == split:
      out.append(synset.definition())
      out.extend(synset.examples())
  random.Random(SEED + 7).shuffle(out)
  return tuple(t for t in out if t)


def split_sizes() -> Dict[str, Dict[str, int]]:
  return {task_name(k): {s: len(examples(k, s)) for s in SPLITS} for k in KINDS}


def kind_of(name: str) -> Optional[str]:
  """The kind of a WordNet task name (any prefix and version, index suffix allowed), else None."""
  match = _NAME.search(name.split(registry.INDEX_SUFFIX)[0])
  return match.group(1) if match and match.group(1) in KINDS else None


def chance_accuracy(task: str, split: str = "validation") -> float:
  """Accuracy (x100) of always answering the most frequent target of `split`."""
  kind = kind_of(task)
  if kind is None:
    raise ValueError(f"{task!r} is not a WordNet task ({', '.join(TASKS)})")
  targets = collections.Counter(t for _, t in examples(kind, split))
  total = sum(targets.values())
  return 100.0 * max(targets.values()) / total if total else 0.0


# ---------------------------------------------------------------------------
# seqio registration.
# ---------------------------------------------------------------------------


def _dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None, *,
                kind: str) -> tf.data.Dataset:
  del shuffle_files, seed  # one in-memory "file"; seqio shuffles the examples
  items = examples(kind, split)
  return tf.data.Dataset.from_tensor_slices({
      "inputs": tf.constant([x for x, _ in items], tf.string),
      "targets": tf.constant([y for _, y in items], tf.string)})


def _pretrain_dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None
                         ) -> tf.data.Dataset:
  del shuffle_files, seed
  return tf.data.Dataset.from_tensor_slices(
      {"targets": tf.constant([t + " " for t in pretraining_texts(split)], tf.string)})


def exact_match(targets, predictions) -> dict:
  """Accuracy (x100) of predicted strings equal to the targets."""
  hits = [str(t).strip() == str(p).strip() for t, p in zip(targets, predictions)]
  return {"accuracy": 100.0 * sum(hits) / max(len(hits), 1)}


def _train_size_rate(maximum: float):
  """Examples-proportional rate `min(n_train, maximum)`, n read from the data when sampled."""
  def rate(task: seqio.Task) -> float:
    kind = kind_of(registry.task_binding(task.name).base)
    return float(min(len(examples(kind, "train")), maximum))
  return rate


def register_wordnet_tasks(vocabulary: Optional[seqio.Vocabulary] = None, *,
                           prefix: str = "", version: int = 1) -> Tuple[str, ...]:
  """Registers the five tasks, the mixture and the pretraining task (bytes default).

  Names end in `_v<version>`: `_v1` is the byte vocabulary, `_v2` the WordNet
  SentencePiece vocabulary (`sentencepiece_vocabulary()`); tasks/__init__ registers both.
  """
  features = vocabularies.text_features(vocabulary)
  names = []
  for kind in KINDS:
    labels = LABELS[kind]
    if labels is None:
      post, metric_fns = postprocessors.as_text, (exact_match,)
    else:
      post = functools.partial(postprocessors.string_label_to_class_id, label_classes=labels)
      metric_fns = (metrics.accuracy,)
    name = task_name(kind, prefix, version)
    registry.register_task(
        name,
        source=seqio.FunctionDataSource(functools.partial(_dataset_fn, kind=kind),
                                        splits=SPLITS),
        preprocessors=[],
        output_features=features,
        postprocess_fn=post,
        metric_fns=metric_fns)
    names.append(name)
  rate = _train_size_rate(MIXTURE_CAP)
  mixture = mixture_name(prefix, version)
  registry.register_mixture(mixture, [(n, rate) for n in names])
  # Pretraining: plain seqio (no task sentinel), t5's span corruption over the glosses.
  pretrain = pretrain_task_name(prefix, version)
  seqio.TaskRegistry.add(
      pretrain,
      source=seqio.FunctionDataSource(_pretrain_dataset_fn, splits=SPLITS),
      preprocessors=[seqio.preprocessors.tokenize, span_corruption.span_corruption,
                     seqio.preprocessors.append_eos_after_trim],
      output_features=features,
      metric_fns=[])
  return tuple(names) + (mixture, pretrain)


# ---------------------------------------------------------------------------
# The WordNet SentencePiece vocabulary (the `_v2` tasks).
# ---------------------------------------------------------------------------


def sentencepiece_texts() -> Tuple[str, ...]:
  """The vocabulary's training corpus: the pretraining texts of the training lemmas
  (glosses and example sentences) and the five tasks' training inputs and targets.

  Only the training split: no validation or test word shapes the pieces. The task
  texts are included so that the label words (`hypernym`, `noun.animal`, ...) and the
  t5 format keys, rare in glosses, get pieces of their own.
  """
  texts = list(pretraining_texts("train"))
  for kind in KINDS:
    for inputs, targets in examples(kind, "train"):
      texts += [inputs, targets]
  return tuple(texts)


def sentencepiece_model_path(vocab_size: int = SPM_VOCAB_SIZE) -> str:
  """Where the vocabulary trained on the WordNet read now is cached (next to the examples)."""
  digest = hashlib.md5(f"{BUILD_VERSION}:{SPM_OPTIONS}:{wordnet_data.source_key()}".encode())
  return os.path.join(wordnet_data.layout_root(),
                      f"hyperprompt_wordnet_spm{vocab_size}_{digest.hexdigest()[:12]}.model")


def train_sentencepiece(vocab_size: int = SPM_VOCAB_SIZE) -> str:
  """Trains the unigram SentencePiece model once (cached on disk); returns its path.

  pad 0, EOS 1, UNK 2 and no BOS, as seqio's `SentencePieceVocabulary` expects;
  exactly `vocab_size` pieces (sentencepiece's hard limit: too small a corpus is its
  error); one thread over every sentence (no sampling), so every process that trains
  it writes the same model.
  """
  import sentencepiece  # seqio's dependency

  path = sentencepiece_model_path(vocab_size)
  if os.path.isfile(path):
    return path
  model = io.BytesIO()
  sentencepiece.set_random_generator_seed(SEED)
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(sentencepiece_texts()), model_writer=model,
      vocab_size=vocab_size, **SPM_OPTIONS)
  # Atomic: concurrent processes write identical files.
  return run_dir.write_bytes(path, model.getvalue())


class WordNetSentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """seqio's SentencePiece vocabulary, trained on WordNet when first used.

  Constructing it reads nothing (tasks are registered at import time, WordNet may be
  missing); the model file is trained (`train_sentencepiece`) or found in the cache
  the first time a token is encoded or decoded. Two instances are equal when their
  sizes are, so the model's vocabulary (gin) and the tasks' compare equal.
  """

  def __init__(self, vocab_size: int = SPM_VOCAB_SIZE,
               extra_ids: int = vocabularies.DEFAULT_EXTRA_IDS):
    self._spm_vocab_size = vocab_size
    super().__init__("", extra_ids=extra_ids)

  @property
  def sentencepiece_model_file(self) -> str:
    if not self._sentencepiece_model_file:
      self._sentencepiece_model_file = train_sentencepiece(self._spm_vocab_size)
    return self._sentencepiece_model_file

  def _model_context(self):
    _ = self.sentencepiece_model_file
    return super()._model_context()

  def __eq__(self, other) -> bool:
    return (isinstance(other, WordNetSentencePieceVocabulary)
            and (self._spm_vocab_size, self.extra_ids) == (other._spm_vocab_size,
                                                           other.extra_ids))

  def __hash__(self) -> int:
    return hash((type(self).__name__, self._spm_vocab_size, self.extra_ids))

  def __str__(self) -> str:
    return (f"WordNetSentencePieceVocabulary(vocab_size={self._spm_vocab_size}, "
            f"extra_ids={self.extra_ids})")


def sentencepiece_vocabulary(vocab_size: int = SPM_VOCAB_SIZE,
                             extra_ids: int = vocabularies.DEFAULT_EXTRA_IDS
                             ) -> WordNetSentencePieceVocabulary:
  """The `_v2` tasks' vocabulary (gin: `VOCABULARY = @wordnet.sentencepiece_vocabulary()`)."""
  return WordNetSentencePieceVocabulary(vocab_size, extra_ids)
