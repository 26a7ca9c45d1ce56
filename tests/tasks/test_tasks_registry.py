"""Task tables, task indices through the feature converter, mixtures, vocabularies."""
import collections
import json
import os

import numpy as np
import pytest
import seqio

import hyperprompt_tasks as ht
from hyperprompt_tasks import offline
import tasks_testlib
from tasks_testlib import PREFIX, VOCAB

# Training-set sizes, as in t5's glue_utils weight mappings.
GLUE_RATES = {
    "glue_cola_v002": 8551, "glue_sst2_v002": 67349, "glue_mrpc_v002": 3668,
    "glue_qqp_v002": 363849, "glue_stsb_v002": 5749, "glue_mnli_v002": 392702,
    "glue_qnli_v002": 104743, "glue_rte_v002": 2490, "glue_mnli_mismatched_v002": 0,
    "glue_mnli_matched_v002": 0, "glue_ax_v002": 0,
}
SUPER_GLUE_RATES = {
    "dpr_v001_simple": 1322, "super_glue_wsc_v102_simple_train": 259,
    "super_glue_wsc_v102_simple_eval": 0, "super_glue_boolq_v102": 9427,
    "super_glue_cb_v102": 250, "super_glue_copa_v102": 400, "super_glue_multirc_v102": 27243,
    "super_glue_record_v102": 138854, "super_glue_rte_v102": 2490,
    "super_glue_wic_v102": 5428, "super_glue_axb_v102": 0, "super_glue_axg_v102": 0,
}


@pytest.fixture(scope="module", autouse=True)
def byte_copies():
  tasks_testlib.register_byte_copies()


def _rates(mixture_name):
  mixture = seqio.get_mixture_or_task(mixture_name)
  return {ht.task_binding(t.name).base: mixture.get_rate(t) for t in mixture.tasks}


def test_proportional_mixture_rates_are_anchor_training_sizes():
  assert _rates("glue_v002_proportional") == GLUE_RATES
  assert _rates("super_glue_v102_proportional") == SUPER_GLUE_RATES
  assert _rates("glue_super_glue_proportional") == {**GLUE_RATES, **SUPER_GLUE_RATES}


def test_joint_blend_temperature_and_cap():
  mixture = ht.mixtures.register_glue_super_glue_mixture(
      "joint_t2_cap_for_tests", temperature=2.0, maximum=100_000, prefix=PREFIX)
  rates = {ht.task_binding(t.name).base: mixture.get_rate(t) for t in mixture.tasks}
  assert rates[PREFIX + "glue_qqp_v002"] == pytest.approx(100_000 ** 0.5)  # capped
  assert rates[PREFIX + "super_glue_cb_v102"] == pytest.approx(250 ** 0.5)
  assert rates[PREFIX + "glue_ax_v002"] == 0.0
  # Same formula as seqio's, whose example counts come from the source.
  task = seqio.get_mixture_or_task(PREFIX + "offline_first_v1")
  ours = ht.rate_num_examples(maximum=1000, temperature=3.0, scale=0.5)(task)
  assert ours == pytest.approx(seqio.mixing_rate_num_examples(
      task, maximum=1000, temperature=3.0, scale=0.5))


def test_task_tables_are_deterministic_and_share_eval_twins():
  glue = ht.task_table("glue_v002_proportional")
  assert glue == ("glue_cola_v002", "glue_sst2_v002", "glue_mrpc_v002", "glue_qqp_v002",
                  "glue_stsb_v002", "glue_mnli_v002", "glue_qnli_v002", "glue_rte_v002")
  super_glue = ht.task_table("super_glue_v102_proportional")
  assert len(super_glue) == 9 and "super_glue_axb_v102" not in super_glue
  assert ht.task_table("glue_super_glue_proportional") == glue + super_glue
  mixture = seqio.get_mixture_or_task("glue_v002_proportional")
  index = {ht.task_binding(t.name).base: ht.task_binding(t.name).index for t in mixture.tasks}
  assert index["glue_mnli_matched_v002"] == index["glue_ax_v002"] == glue.index("glue_mnli_v002")
  sg = seqio.get_mixture_or_task("super_glue_v102_proportional")
  sg_index = {ht.task_binding(t.name).base: ht.task_binding(t.name).index for t in sg.tasks}
  assert sg_index["super_glue_axg_v102"] == super_glue.index("super_glue_rte_v102")
  assert sg_index["super_glue_wsc_v102_simple_eval"] == super_glue.index(
      "super_glue_wsc_v102_simple_train")
  # A lone task is its own one-task table; an indexed variant alone leaves holes.
  assert ht.task_table("glue_rte_v002") == ("glue_rte_v002",)
  assert ht.task_table(ht.indexed_task_name("glue_rte_v002", 7)) == (None,) * 7 + (
      "glue_rte_v002",)
  info = ht.mixture_info(offline.OFFLINE_MIXTURE)
  assert info.num_tasks == 6 and info.table == offline.TASKS
  assert info.task_sentinel_id == 358 and info.vocabulary == VOCAB
  assert ht.num_tasks(offline.OFFLINE_NEW_TASK_MIXTURE) == 7
  assert ht.task_table(offline.OFFLINE_NEW_TASK_MIXTURE)[-1] == offline.HELD_OUT_TASK


def test_unknown_names_list_the_closest_registered_names():
  with pytest.raises(ValueError, match="closest registered names: glue_v002_proportional"):
    ht.get_mixture_or_task("glue_v02_proportional")
  with pytest.raises(ValueError, match="super_glue_boolq_v102"):
    ht.task_table("super_glue_boolq")
  with pytest.raises(ValueError, match="hyperprompt_offline_v1"):
    ht.num_tasks("hyperprompt_ofline_v1")


def test_mixture_registration_errors():
  with pytest.raises(ValueError, match="closest registered names: offline_first_v1"):
    ht.register_mixture("bad_mixture_for_tests", ["offline_frist_v1"])
  with pytest.raises(ValueError, match="more than once"):
    ht.register_mixture("bad_mixture_for_tests", ["offline_first_v1", "offline_first_v1"])
  with pytest.raises(ValueError, match="already registered"):
    ht.register_mixture("glue_v002_proportional", ["glue_rte_v002"])
  # A plain seqio task (no task index) cannot be given a task table.
  seqio.TaskRegistry.add(
      "plain_seqio_task_for_tests", source=seqio.FunctionDataSource(
          lambda split, shuffle_files: None, splits=["train"]),
      output_features=ht.get_spec("offline_first_v1").output_features)
  with pytest.raises(ValueError, match="carries no task index"):
    ht.task_table("plain_seqio_task_for_tests")


def _decode_rows(batch):
  inputs = [VOCAB.decode([t for t in row[1:] if t > 1]) for row in batch["encoder_input_tokens"]]
  targets = [VOCAB.decode(row.tolist()) for row in batch["decoder_target_tokens"]]
  return inputs, targets


def test_offline_mixture_batch_sentinel_matches_the_rule_of_each_row():
  ds = seqio.get_dataset(PREFIX + offline.OFFLINE_MIXTURE,
                         task_feature_lengths=offline.FEATURE_LENGTHS,
                         dataset_split="train", shuffle=True, seed=3,
                         feature_converter=seqio.EncDecFeatureConverter(pack=False),
                         batch_size=96)
  batch = next(ds.as_numpy_iterator())
  table = ht.task_table(PREFIX + offline.OFFLINE_MIXTURE)
  index = VOCAB.vocab_size - 1 - batch["encoder_input_tokens"][:, 0]
  assert set(index.tolist()) == set(range(6))  # mixed batch, every task present
  for k, seq, target in zip(index, *_decode_rows(batch)):
    rule = table[k][len(PREFIX + "offline_"):-len("_v1")]
    assert offline.RULES[rule][0](seq) == target


def test_glue_mixture_batch_sentinel_matches_source_task():
  names = [PREFIX + n for n in ht.mixtures.GLUE_MIXTURE_TASKS[:8]]
  ht.register_mixture(PREFIX + "glue_equal_rates_for_tests", [(n, 1.0) for n in names])
  table = ht.task_table(PREFIX + "glue_equal_rates_for_tests")
  prefixes = {"cola sentence:": "cola", "sst2 sentence:": "sst2", "mrpc sentence1:": "mrpc",
              "qqp question1:": "qqp", "stsb sentence1:": "stsb",
              "mnli hypothesis:": "mnli", "qnli question:": "qnli", "rte sentence1:": "rte"}
  with tasks_testlib.mock_tfds(16):
    ds = seqio.get_dataset(PREFIX + "glue_equal_rates_for_tests",
                           task_feature_lengths={"inputs": 96, "targets": 8},
                           dataset_split="train", shuffle=True, seed=0,
                           feature_converter=seqio.EncDecFeatureConverter(pack=False),
                           batch_size=64)
    batch = next(ds.as_numpy_iterator())
  seen = collections.Counter()
  for sentinel, text in zip(batch["encoder_input_tokens"][:, 0], _decode_rows(batch)[0]):
    (config,) = [c for p, c in prefixes.items() if text.startswith(p)]
    assert sentinel == VOCAB.vocab_size - 1 - table.index(f"{PREFIX}glue_{config}_v002")
    seen[config] += 1
  assert len(seen) >= 6, seen


def test_eval_twins_are_evaluated_with_the_trained_task_index():
  mixture = PREFIX + "glue_v002_proportional"
  table = ht.task_table(mixture)
  with tasks_testlib.mock_tfds(4):
    evaluator = seqio.Evaluator(mixture, feature_converter=seqio.EncDecFeatureConverter(
        pack=False), eval_split="validation")
    first = {name: {int(ex["encoder_input_tokens"][0]) for _, ex in ds.as_numpy_iterator()}
             for name, ds in evaluator.cached_model_datasets.items()}
  mnli = VOCAB.vocab_size - 1 - table.index(PREFIX + "glue_mnli_v002")
  rte = VOCAB.vocab_size - 1 - table.index(PREFIX + "glue_rte_v002")
  assert first[ht.indexed_task_name(PREFIX + "glue_mnli_matched_v002", 5)] == {mnli}
  assert first[ht.indexed_task_name(PREFIX + "glue_mnli_mismatched_v002", 5)] == {mnli}
  assert first[ht.indexed_task_name(PREFIX + "glue_rte_v002", 7)] == {rte}


def test_task_table_file_refuses_remapping(tmp_path):
  model_dir = str(tmp_path / "run")
  table = ht.task_table("hyperprompt_offline_v1")
  assert ht.check_task_table(model_dir, table) is None  # nothing saved yet
  path = ht.save_task_table(model_dir, table, "hyperprompt_offline_v1")
  assert json.load(open(path))["tasks"] == list(table)
  assert ht.check_task_table(model_dir, table) == table
  assert ht.check_task_table(model_dir, table[:3]) == table  # a prefix: same indices
  reordered = (table[1], table[0]) + table[2:]
  with pytest.raises(ValueError, match=r"index 0: saved 'offline_first_v1', now "
                                       r"'offline_last_v1'(.|\n)*moved"):
    ht.check_task_table(model_dir, reordered)
  extended = ht.task_table("hyperprompt_offline_v1_new_task")
  with pytest.raises(ValueError, match="allow_extension=True"):
    ht.save_or_check_task_table(model_dir, extended)
  assert ht.load_task_table(model_dir) == table  # nothing written by the refusal
  assert ht.save_or_check_task_table(model_dir, extended, allow_extension=True) == extended
  assert ht.load_task_table(model_dir) == extended
  # Evaluating one indexed task of the saved table is fine; at a wrong index not.
  assert ht.check_task_table(model_dir, ht.task_table(
      ht.indexed_task_name("offline_last_first_v1", 6))) == extended
  with pytest.raises(ValueError, match="index 0"):
    ht.check_task_table(model_dir, ht.task_table("offline_last_first_v1"))


def test_task_table_file_corruption_is_reported_and_kept(tmp_path):
  path = tmp_path / ht.task_table_io.TASK_TABLE_FILENAME
  path.write_text("{not json")
  with pytest.raises(ValueError, match="not a valid task table"):
    ht.save_or_check_task_table(str(tmp_path), ("a",))
  assert path.read_text() == "{not json"
  with pytest.raises(ValueError, match="more than once"):
    ht.save_task_table(str(tmp_path / "other"), ("a", "a"))
  assert not os.path.exists(tmp_path / "other" / ht.task_table_io.TASK_TABLE_FILENAME)


def test_import_reads_no_vocabulary_and_defaults():
  vocab = ht.get_vocabulary("glue_rte_v002")
  assert isinstance(vocab, seqio.SentencePieceVocabulary)
  assert vocab.sentencepiece_model_file == ht.vocabularies.DEFAULT_T5_SPM_PATH
  assert vocab._model is None  # pylint: disable=protected-access  # not loaded at import
  assert vocab == ht.vocabularies.t5_vocabulary()
  assert ht.get_vocabulary(ht.DEFAULT_MIXTURE) == seqio.ByteVocabulary(extra_ids=100)


def test_vocabularies(monkeypatch):
  monkeypatch.setenv(ht.vocabularies.T5_SPM_PATH_ENV, "/local/cc_all.32000/sentencepiece.model")
  local = ht.vocabularies.t5_vocabulary()
  assert (local.sentencepiece_model_file, local.extra_ids) == (
      "/local/cc_all.32000/sentencepiece.model", 100)
  assert ht.vocabularies.t5_vocabulary("/x/cc_all.32000.100extra/sp.model").extra_ids == 0
  spm = ht.vocabularies.get_vocabulary("seqio_test")
  assert spm.vocab_size == 26 + 100 and ht.vocabularies.num_sentinels(spm) == 100
  assert spm.decode(spm.encode("the test")) == "the test"
  with pytest.raises(ValueError, match="unknown vocabulary"):
    ht.vocabularies.get_vocabulary("t6")


def test_seqio_test_spm_vocabulary_task_and_too_few_sentinels():
  spec = ht.get_spec("offline_first_v1")
  spm = ht.vocabularies.seqio_test_vocabulary(extra_ids=100)
  small = seqio.ByteVocabulary(extra_ids=1)
  for name, vocab in [("spm_offline_first_for_tests", spm), ("small_vocab_task_for_tests", small)]:
    ht.register_task(name, source=spec.source, preprocessors=spec.preprocessors,
                     output_features={k: seqio.Feature(vocab) for k in ("inputs", "targets")},
                     postprocess_fn=spec.postprocess_fn, metric_fns=spec.metric_fns)
  ex = next(seqio.get_mixture_or_task("spm_offline_first_for_tests").get_dataset(
      {"inputs": 16, "targets": 4}, split="validation", shuffle=False).as_numpy_iterator())
  assert ex["inputs"][0] == spm.vocab_size - 1 and ex["inputs"][-1] == 1
  # The test model has no piece for "b": compare the decoded text without it.
  text = offline.split_strings("validation")[0]
  assert spm.decode(ex["inputs"][1:].tolist()).replace(" ⁇ ", "b") == text
  variant = ht.registry.ensure_indexed_task("small_vocab_task_for_tests", 1)
  with pytest.raises(ValueError, match="has only 1 sentinels"):
    seqio.get_mixture_or_task(variant).get_dataset({"inputs": 16, "targets": 4},
                                                    split="validation")


def test_offline_splits_are_deterministic_disjoint_and_balanced_as_documented():
  train, val = offline.split_strings("train"), offline.split_strings("validation")
  assert len(val) == offline.VALIDATION_SIZE and len(train) == offline.TRAIN_SIZE
  assert not set(train) & set(val) and len(set(train)) == len(train)
  assert all(len(s) == offline.LENGTH and set(s) <= set(offline.ALPHABET) for s in val)
  offline.split_strings.cache_clear()
  assert offline.split_strings("validation") == val
  documented = {"first": 25.0, "last": 25.0, "count_a": 31.15, "compare_ends": 37.5,
                "majority": 33.17, "ends": 6.25, "last_first": 6.25}
  for rule, chance in documented.items():
    assert offline.chance_accuracy(rule) == pytest.approx(chance, abs=0.005)
    labels = offline.split_labels(rule, "validation")
    # The validation split's majority share is close to the exact chance level.
    assert 100 * np.bincount(labels).max() / len(labels) == pytest.approx(chance, abs=5)


def test_describe_command_prints_table_rates_and_chance(capsys):
  from hyperprompt_tasks import __main__ as cli  # pylint: disable=import-outside-toplevel
  assert cli.main(["prog", "hyperprompt_offline_v1_new_task", "glue_v002_proportional"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[0] == "hyperprompt_offline_v1_new_task: num_tasks=7, vocabulary=ByteVocabulary"
  assert "   6 <extra_id_6>  offline_last_first_v1  rate 1  chance 6.25" in out
  assert "   5 <extra_id_5>  glue_mnli_matched_v002  rate 0" in out
  assert cli.main(["prog", "glue_rte_v02"]) == 2
  assert "closest registered names: glue_rte_v002" in capsys.readouterr().err
  assert offline.rule_of(ht.indexed_task_name(PREFIX + "offline_count_a_v1", 2)) == "count_a"
  with pytest.raises(ValueError, match="not an offline task"):
    offline.chance_accuracy("glue_rte_v002")
