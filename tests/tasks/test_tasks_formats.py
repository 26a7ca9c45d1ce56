"""Text formats of the registered tasks vs t5's, on hand-written examples."""
import pytest
import tensorflow as tf

import hyperprompt_tasks as ht
from tasks_testlib import apply_text_preprocessors as run


def test_glue_rte_format_and_unlabeled_examples():
  ex = {"sentence1": "A cat sat.", "sentence2": "A cat is sitting.", "label": 0, "idx": 3}
  assert run("glue_rte_v002", ex) == [{
      "inputs": "rte sentence1: A cat sat. sentence2: A cat is sitting.",
      "targets": "entailment", "idx": 3}]
  ex["label"] = -1  # test split
  assert run("glue_rte_v002", ex)[0]["targets"] == "<unk>"


@pytest.mark.parametrize("task,ex,inputs,targets", [
    ("glue_cola_v002", {"sentence": "Him left.", "label": 0, "idx": 1},
     "cola sentence: Him left.", "unacceptable"),
    ("glue_sst2_v002", {"sentence": "great fun", "label": 1, "idx": 1},
     "sst2 sentence: great fun", "positive"),
    ("glue_mrpc_v002", {"sentence1": "S1.", "sentence2": "S2.", "label": 1, "idx": 1},
     "mrpc sentence1: S1. sentence2: S2.", "equivalent"),
    ("glue_qqp_v002", {"question1": "Why?", "question2": "How?", "label": 0, "idx": 1},
     "qqp question1: Why? question2: How?", "not_duplicate"),
    ("glue_qnli_v002", {"question": "Who?", "sentence": "Bob.", "label": 1, "idx": 1},
     "qnli question: Who? sentence: Bob.", "not_entailment"),
    ("glue_wnli_v002", {"sentence1": "A.", "sentence2": "B.", "label": 1, "idx": 1},
     "wnli sentence1: A. sentence2: B.", "entailment"),
    # MNLI and its twins: keys sorted (hypothesis before premise); ax is cast as mnli.
    ("glue_mnli_v002", {"premise": "P.", "hypothesis": "H.", "label": 2, "idx": 0},
     "mnli hypothesis: H. premise: P.", "contradiction"),
    ("glue_mnli_matched_v002", {"premise": "P.", "hypothesis": "H.", "label": 1, "idx": 0},
     "mnli hypothesis: H. premise: P.", "neutral"),
    ("glue_ax_v002", {"premise": "P.", "hypothesis": "H.", "label": -1, "idx": 0},
     "mnli hypothesis: H. premise: P.", "<unk>"),
])
def test_glue_family_formats(task, ex, inputs, targets):
  (out,) = run(task, ex)
  assert (out["inputs"], out["targets"]) == (inputs, targets)


@pytest.mark.parametrize("label,target", [(2.5, "2.4"), (1.0, "1.0"), (3.14, "3.2"),
                                          (0.0, "0.0"), (5.0, "5.0"), (0.1, "0.0")])
def test_stsb_rounds_to_nearest_fifth(label, target):
  # 2.5 * 5 = 12.5 rounds half to even (tf.round), as in t5.
  ex = {"sentence1": "A man.", "sentence2": "A guy.", "label": label, "idx": 7}
  assert run("glue_stsb_v002", ex) == [{
      "inputs": "stsb sentence1: A man. sentence2: A guy.", "targets": target, "idx": 7}]


@pytest.mark.parametrize("task,ex,inputs,targets", [
    ("super_glue_boolq_v102", {"question": "is it?", "passage": "It is.", "label": 1, "idx": 0},
     "boolq passage: It is. question: is it?", "True"),
    ("super_glue_cb_v102", {"premise": "P", "hypothesis": "H", "label": 2, "idx": 0},
     "cb hypothesis: H premise: P", "neutral"),
    ("super_glue_copa_v102", {"premise": "The man broke his toe.", "question": "cause",
                              "choice1": "He dropped a hammer.",
                              "choice2": "He got a hole in his sock.", "label": 0, "idx": 0},
     "copa choice1: He dropped a hammer. choice2: He got a hole in his sock. "
     "premise: The man broke his toe. question: cause", "choice1"),
    ("super_glue_rte_v102", {"premise": "P.", "hypothesis": "H.", "label": 1, "idx": 0},
     "rte hypothesis: H. premise: P.", "not_entailment"),
    # WiC: fixed order, the word offsets are dropped.
    ("super_glue_wic_v102", {"sentence1": "He ate a bass.", "sentence2": "She plays bass.",
                             "word": "bass", "start1": 9, "end1": 13, "start2": 10,
                             "end2": 14, "label": 0, "idx": 5},
     "wic sentence1: He ate a bass. sentence2: She plays bass. word: bass", "False"),
    # Diagnostics are cast as RTE; axb is rekeyed to premise/hypothesis first.
    ("super_glue_axb_v102", {"sentence1": "S1", "sentence2": "S2", "label": 1, "idx": 0},
     "rte hypothesis: S2 premise: S1", "not_entailment"),
    ("super_glue_axg_v102", {"premise": "P", "hypothesis": "H", "label": 0, "idx": 0},
     "rte hypothesis: H premise: P", "entailment"),
])
def test_super_glue_family_formats(task, ex, inputs, targets):
  (out,) = run(task, ex)
  assert (out["inputs"], out["targets"]) == (inputs, targets)


def test_multirc_strips_html_orders_fields_and_keeps_ids():
  ex = {"paragraph": "<b>Sent 1: </b>Bob ran.<br><b>Sent 2: </b>He won.<br>",
        "question": "Who ran?", "answer": "Bob", "label": 1,
        "idx": {"paragraph": 4, "question": 9, "answer": 2}}
  assert run("super_glue_multirc_v102", ex) == [{
      "inputs": "multirc question: Who ran? answer: Bob paragraph: "
                "Sent 1: Bob ran. Sent 2: He won. ",
      "targets": "True", "idx/paragraph": 4, "idx/question": 9, "idx/answer": 2}]


def test_record_one_example_per_answer_and_unk_without_answers():
  ex = {"passage": "The cat sat.\n@highlight\nCats sit\n@highlight\nDogs run",
        "query": "@placeholder sat.", "entities": ["cat", "Cats", "Dogs"],
        "answers": ["cat", "Cats"], "idx": {"passage": 1, "query": 2}}
  inputs = ("record query: @placeholder sat. entities: cat, Cats, Dogs "
            "passage: The cat sat. Cats sit. Dogs run")
  out = run("super_glue_record_v102", ex)
  assert [o["targets"] for o in out] == ["cat", "Cats"]
  for o in out:
    assert o["inputs"] == inputs
    assert (o["idx/passage"], o["idx/query"], o["answers"]) == (1, 2, ["cat", "Cats"])
  ex["answers"] = tf.constant([], tf.string)
  out = run("super_glue_record_v102", ex)
  assert [(o["inputs"], o["targets"], o["answers"]) for o in out] == [(inputs, "<unk>", [])]


def test_wsc_marks_noun_and_pronoun():
  ex = {"text": "This is a test sentence .", "span1_text": "test", "span1_index": 3,
        "span2_text": "This", "span2_index": 0, "label": 0, "idx": 0}
  assert run("super_glue_wsc_v102", ex)[0]["inputs"] == "wsc text: # This # is a * test * sentence ."
  assert run("super_glue_wsc_v102", ex)[0]["targets"] == "False"
  # Span 1 before span 2: the pronoun index shifts by the two inserted marks.
  ex = {"text": "Mark told Pete many lies about himself , which Pete included in his book .",
        "span1_text": "Pete", "span1_index": 2, "span2_text": "his", "span2_index": 12,
        "label": 1, "idx": 0}
  assert run("super_glue_wsc_v102", ex)[0] == {
      "inputs": "wsc text: Mark told * Pete * many lies about himself , which Pete included "
                "in # his # book .", "targets": "True", "idx": 0}


def test_wsc_simple_train_eval_and_dpr():
  ex = {"text": "Mitchell asked Tom if he could lend some money .", "span1_text": "Tom",
        "span1_index": 2, "span2_text": "he", "span2_index": 4, "label": 1, "idx": 3}
  expected = {"inputs": "wsc: Mitchell asked Tom if *he* could lend some money .",
              "targets": "Tom", "label": 1, "idx": 3}
  assert run("super_glue_wsc_v102_simple_train", ex) == [expected]
  assert run("super_glue_wsc_v102_simple_eval", ex) == [expected]
  # Training keeps correct referents only; eval keeps every candidate.
  wrong = dict(ex, span1_text="Mitchell", span1_index=0, label=0)
  assert run("super_glue_wsc_v102_simple_train", wrong) == []
  assert run("super_glue_wsc_v102_simple_eval", wrong)[0]["targets"] == "Mitchell"
  dpr = {"sentence": "He said he would lend Bob money.", "pronoun": "he",
         "candidates": ["Tom", "Bob"], "label": 0}
  assert run("dpr_v001_simple", dpr) == [{
      "inputs": "wsc: He said *he* would lend Bob money.", "targets": "Tom"}]


def test_offline_format_is_shared_and_targets_follow_rules():
  seq = "cabdbacd"
  outs = {t: run(t, {"seq": seq, "label": 0})[0] for t in ht.offline.TASKS}
  assert {o["inputs"] for o in outs.values()} == {seq}
  expected = {"first": "c", "last": "d", "count_a": "2", "compare_ends": "<",
              "majority": "a", "ends": "cd"}
  for rule, target in expected.items():
    fn, classes = ht.offline.RULES[rule]
    assert fn(seq) == target
    label = classes.index(target)
    assert run(ht.offline.task_name(rule), {"seq": seq, "label": label})[0]["targets"] == target
  assert ht.offline.HELD_OUT_RULES["last_first"][0](seq) == "dc"
