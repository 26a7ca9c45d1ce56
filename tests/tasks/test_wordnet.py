"""WordNet tasks on a test database in WordNet's file format, read through nltk's reader."""
import collections
import os
import re
from unittest import mock

import numpy as np
import pytest
import seqio

import hyperprompt_tasks as ht
from hyperprompt_tasks import wordnet
from hyperprompt_tasks import wordnet_data
import wordnet_testlib

LENGTHS = {"inputs": 96, "targets": 16}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
  with wordnet_testlib.test_wordnet(tmp_path_factory.mktemp("wordnet")) as written:
    yield written


def test_reads_the_database_with_nltks_reader_and_writes_lexnames(db):
  wn = wordnet_data.load_wordnet()
  from nltk.corpus.reader import wordnet as nltk_wordnet
  assert isinstance(wn, nltk_wordnet.WordNetCorpusReader)
  assert wn.get_version() == "3.0"
  assert len(list(wn.all_synsets())) == len(db)
  layout = os.path.join(wordnet_data.layout_root(), "corpora", "wordnet")
  lines = open(os.path.join(layout, "lexnames")).read().splitlines()
  assert len(lines) == 45
  assert lines[5].split("\t") == ["05", "noun.animal", "1"]
  assert lines[44].split("\t") == ["44", "adj.ppl", "3"]
  for name in wordnet_data.REQUIRED_FILES:  # copies (nltk refuses links)
    path = os.path.join(layout, name)
    assert os.path.isfile(path) and not os.path.islink(path) and os.stat(path).st_nlink == 1
  first = db[5]
  synset = wn.synsets(first["lemmas"][0], pos=first["pos"])[0]
  assert synset.definition() == first["definition"]
  assert synset.examples() == first["examples"]
  assert synset.lexname() == first["lexname"]


def test_missing_wordnet_is_one_error_saying_how_to_get_it(tmp_path):
  with mock.patch.dict(os.environ, {wordnet_data.WORDNET_DIR_ENV: str(tmp_path)}):
    with pytest.raises(wordnet_data.WordNetNotFound, match="lacks data.adj"):
      wordnet_data.wordnet_source()
  env = {k: v for k, v in os.environ.items() if k != wordnet_data.WORDNET_DIR_ENV}
  import nltk
  with mock.patch.dict(os.environ, env, clear=True), \
      mock.patch.object(wordnet_data, "DEBIAN_WORDNET_DIR", str(tmp_path / "none")), \
      mock.patch.object(nltk.data, "path", [str(tmp_path / "no_nltk_data")]):
    with pytest.raises(wordnet_data.WordNetNotFound) as e:
      wordnet.examples(wordnet.POS, "train")
  message = str(e.value)
  assert "apt-get install -y wordnet-base wordnet-sense-index" in message
  assert "nltk.download('wordnet')" in message and "WORDNET_DIR" in message


def _about_lemmas(db, kind, inputs, target):
  """The lemmas an example is about, recovered from its text and the database."""
  by_definition = {s["definition"]: s for s in db}
  if kind == wordnet.WIC:
    return {re.match(r"wic word: (\S+) sentence1:", inputs).group(1).lower()}
  if kind == wordnet.RELATION:
    m = re.match(r"relation word1: (.+) word2: (.+)$", inputs)
    return {m.group(1).lower(), m.group(2).lower()}
  gloss = inputs.split("gloss: ", 1)[1]
  return {x.lower() for x in by_definition[gloss]["lemmas"]}


def test_splits_are_by_lemma_and_no_word_is_in_two_splits(db):
  for kind in wordnet.KINDS:
    seen = {}
    for split in wordnet.SPLITS:
      items = wordnet.examples(kind, split)
      assert items, (kind, split)
      for inputs, target in items:
        for lemma in _about_lemmas(db, kind, inputs, target):
          assert wordnet.lemma_split(lemma) == split
          assert seen.setdefault(lemma, split) == split, (kind, lemma)
  # The split function: deterministic, case-insensitive, about 80 / 10 / 10.
  names = [f"word{i}" for i in range(5000)]
  counts = collections.Counter(wordnet.lemma_split(n) for n in names)
  assert 0.77 < counts["train"] / 5000 < 0.83 and 0.08 < counts["test"] / 5000 < 0.12
  assert wordnet.lemma_split("Dog") == wordnet.lemma_split("dog")


def test_examples_follow_the_database(db):
  by_lemma = collections.defaultdict(list)
  for s in db:
    for w in s["lemmas"]:
      by_lemma[w.lower()].append(s)
  by_definition = {s["definition"]: s for s in db}
  keys = {s["key"]: s for s in db}
  relations = collections.Counter()
  for split in wordnet.SPLITS:
    for inputs, target in wordnet.examples(wordnet.RELATION, split):
      a, b = re.match(r"relation word1: (.+) word2: (.+)$", inputs).groups()
      relations[target] += 1
      sa, sb = by_lemma[a.lower()], by_lemma[b.lower()]
      if target == "synonym":
        assert any(s in sb for s in sa)
      elif target == "antonym":  # a<2k> <-> a<2k+1>
        assert {s["key"] for s in sa + sb} <= {f"a{i}" for i in range(40)}
        ia, ib = int(sa[0]["key"][1:]), int(sb[0]["key"][1:])
        assert ia // 2 == ib // 2 and ia != ib
      elif target == "hypernym":
        assert any(("@", t["key"], 0, 0) in s["pointers"] for s in sa for t in sb)
      else:
        assert target == "unrelated" and not any(s in sb for s in sa)
    for inputs, target in wordnet.examples(wordnet.POS, split):
      s = by_definition[inputs.split("gloss: ", 1)[1]]
      assert target == wordnet.POS_NAMES[s["pos"]]
    for inputs, target in wordnet.examples(wordnet.LEXNAME, split):
      assert target == by_definition[inputs.split("gloss: ", 1)[1]]["lexname"]
    for inputs, target in wordnet.examples(wordnet.REVERSE, split):
      s = by_definition[inputs.split("gloss: ", 1)[1]]
      assert target == s["lemmas"][0] and target not in inputs
    for inputs, target in wordnet.examples(wordnet.WIC, split):
      word, s1, s2 = re.match(r"wic word: (\S+) sentence1: (.+) sentence2: (.+)$",
                              inputs).groups()
      same = [s for s in by_lemma[word.lower()] if s1 in s["examples"] and s2 in s["examples"]]
      assert (target == "True") == bool(same) and word in s1 and word in s2
  assert set(relations) == set(wordnet.RELATIONS)
  del keys


def test_chance_levels_and_balanced_classes(db):
  for kind in (wordnet.WIC, wordnet.POS):
    for split in wordnet.SPLITS:
      counts = collections.Counter(t for _, t in wordnet.examples(kind, split))
      assert len(set(counts.values())) == 1, (kind, split, counts)  # balanced
  targets = [t for _, t in wordnet.examples(wordnet.LEXNAME, "validation")]
  top = collections.Counter(targets).most_common(1)[0][1]
  assert wordnet.chance_accuracy("wordnet_lexname_v1") == pytest.approx(100 * top / len(targets))
  assert wordnet.chance_accuracy(ht.indexed_task_name("wordnet_pos_v1", 2)) == pytest.approx(
      100 / len(set(t for _, t in wordnet.examples(wordnet.POS, "validation"))))
  with pytest.raises(ValueError, match="not a WordNet task"):
    wordnet.chance_accuracy("offline_first_v1")


def test_mixture_is_task_indexed_with_capped_proportional_rates(db):
  assert ht.task_table(wordnet.WORDNET_MIXTURE) == wordnet.TASKS
  mixture = seqio.get_mixture_or_task(wordnet.WORDNET_MIXTURE)
  rates = {ht.task_binding(t.name).base: mixture.get_rate(t) for t in mixture.tasks}
  assert rates == {wordnet.task_name(k): min(len(wordnet.examples(k, "train")),
                                             wordnet.MIXTURE_CAP) for k in wordnet.KINDS}
  sentinel = wordnet.vocabularies.byte_vocabulary().vocab_size - 1
  for task in mixture.tasks:
    index = ht.task_binding(task.name).index
    ds = task.get_dataset(LENGTHS, split="validation", shuffle=False)
    rows = list(ds.take(3).as_numpy_iterator())
    expected = wordnet.examples(wordnet.kind_of(task.name), "validation")[:3]
    for row, (inputs, target) in zip(rows, expected):
      assert row["inputs"][0] == sentinel - index
      assert row["inputs_pretokenized"].decode() == inputs
      assert row["targets"][-1] == 1  # EOS
      assert bytes((np.array(row["targets"][:-1]) - 3).astype(np.uint8).tolist()).decode() == target


def test_reverse_dictionary_is_scored_by_exact_match():
  assert wordnet.exact_match(["dog", "cat"], ["dog", "cats"]) == {"accuracy": 50.0}
  task = seqio.get_mixture_or_task("wordnet_reverse_dictionary_v1")
  assert task.postprocess_fn(b"dog ", is_target=True) == "dog"


# The WordNet SentencePiece vocabulary (`_v2` tasks), trained here on the test database.
TEST_SPM_SIZE = 150


def test_sentencepiece_vocabulary_is_trained_on_first_use_and_cached(db, tmp_path):
  vocab = wordnet.sentencepiece_vocabulary(TEST_SPM_SIZE)
  path = wordnet.sentencepiece_model_path(TEST_SPM_SIZE)
  assert not os.path.exists(path)  # constructing it reads and writes nothing
  assert vocab.vocab_size == TEST_SPM_SIZE + 100
  assert os.path.isfile(path) and vocab.sentencepiece_model_file == path
  # Cached: a second instance reads the same file; the same corpus trains the same model.
  again = wordnet.sentencepiece_vocabulary(TEST_SPM_SIZE)
  assert again == vocab and again.sentencepiece_model_file == path
  assert again != wordnet.sentencepiece_vocabulary(TEST_SPM_SIZE + 1)
  assert again != wordnet.vocabularies.byte_vocabulary()
  first = open(path, "rb").read()
  os.remove(path)
  wordnet.train_sentencepiece(TEST_SPM_SIZE)
  assert open(path, "rb").read() == first
  # Trained on the training split only: no validation or test lemma is a piece.
  pieces = {vocab.tokenizer.id_to_piece(i).lstrip("\u2581")
            for i in range(vocab.tokenizer.get_piece_size())}
  corpus = set(re.findall(r"\w+", " ".join(wordnet.sentencepiece_texts())))
  held_out = {w for split in ("validation", "test")
              for _, w in wordnet.examples(wordnet.REVERSE, split)}
  assert held_out and not held_out & pieces and not held_out & corpus
  for inputs, target in wordnet.examples(wordnet.RELATION, "validation")[:5]:
    assert vocab.decode(vocab.encode(inputs)) == inputs
  assert vocab.decode([vocab.vocab_size - 1]) == "<extra_id_0>"


def test_sentencepiece_tasks_carry_the_task_sentinel_of_that_vocabulary(db):
  vocab = wordnet.sentencepiece_vocabulary(TEST_SPM_SIZE)
  names = wordnet.register_wordnet_tasks(vocab, prefix="test_spm_", version=2)
  try:
    assert names[-2:] == ("test_spm_wordnet_lexical_v2", "test_spm_wordnet_span_corruption_v2")
    assert [wordnet.kind_of(n) for n in names[:5]] == list(wordnet.KINDS)
    mixture = seqio.get_mixture_or_task("test_spm_wordnet_lexical_v2")
    for task in mixture.tasks:
      index = ht.task_binding(task.name).index
      kind = wordnet.kind_of(task.name)
      rows = list(task.get_dataset(LENGTHS, split="validation", shuffle=False)
                  .take(2).as_numpy_iterator())
      for row, (inputs, target) in zip(rows, wordnet.examples(kind, "validation")):
        assert row["inputs"][0] == vocab.vocab_size - 1 - index
        assert vocab.decode(row["inputs"][1:].tolist()) == inputs
        assert vocab.decode(row["targets"].tolist()) == target
    assert wordnet.chance_accuracy(names[2]) == wordnet.chance_accuracy(wordnet.TASKS[2])
    pretrain = seqio.get_mixture_or_task(names[-1])
    row = next(pretrain.get_dataset({"inputs": 32, "targets": 16}, split="train",
                                    shuffle=False, seed=0).as_numpy_iterator())
    assert len(row["inputs"]) == 32 and row["targets"][0] == vocab.vocab_size - 1
  finally:
    for name in names:
      seqio.MixtureRegistry.remove(name)
      seqio.TaskRegistry.remove(name)
