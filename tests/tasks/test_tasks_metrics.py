"""Metric functions vs scikit-learn / scipy, MultiRC and ReCoRD grouping, postprocessors."""
import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from hyperprompt_tasks import metrics
from hyperprompt_tasks import postprocessors

TARGETS = [0, 1, 1, 0, 1, 1, 0, 1]
PREDICTIONS = [0, 1, 0, 0, 1, 0, 1, 1]


def test_accuracy_and_matthews_match_sklearn():
  assert metrics.accuracy(TARGETS, PREDICTIONS) == {
      "accuracy": pytest.approx(100 * sklearn.metrics.accuracy_score(TARGETS, PREDICTIONS))}
  assert metrics.accuracy(TARGETS, PREDICTIONS)["accuracy"] == pytest.approx(62.5)
  mcc = metrics.matthews_corrcoef(TARGETS, PREDICTIONS)["matthews_corrcoef"]
  assert mcc == pytest.approx(100 * sklearn.metrics.matthews_corrcoef(TARGETS, PREDICTIONS))
  assert mcc == pytest.approx(100 * (3 * 2 - 1 * 2) / np.sqrt(4 * 5 * 3 * 4))


def test_f1_counts_invalid_predictions_as_wrong():
  targets, predictions = [0, 1, 1, 0, 1], [0, 1, -1, 2, 1]
  # The invalid answers become the wrong class: [0, 1, 0, 1, 1] -> TP 2, FP 1, FN 1.
  f1 = metrics.f1_score_with_invalid(targets, predictions)["f1"]
  assert f1 == pytest.approx(100 * sklearn.metrics.f1_score(targets, [0, 1, 0, 1, 1]))
  assert f1 == pytest.approx(100 * 4 / 6)
  assert predictions == [0, 1, -1, 2, 1]  # inputs not modified


def test_correlations_match_scipy():
  targets = [0.0, 1.2, 2.4, 3.0, 4.6, 5.0]
  predictions = [0.4, 1.0, 2.8, 2.6, 4.0, -1.0]
  assert metrics.pearson_corrcoef(targets, predictions)["pearson_corrcoef"] == pytest.approx(
      100 * scipy.stats.pearsonr(targets, predictions)[0])
  assert metrics.spearman_corrcoef(targets, predictions)["spearman_corrcoef"] == pytest.approx(
      100 * scipy.stats.spearmanr(targets, predictions)[0])
  assert metrics.spearman_corrcoef(targets, predictions)["spearman_corrcoef"] == pytest.approx(
      100 * (1 - 6 * (1 + 1 + 4 + 0 + 1 + 25) / (6 * 35)))


def test_cb_mean_f1_over_three_classes_with_invalid_prediction():
  targets, predictions = [0, 1, 2, 2, 0, 1], [0, 2, 2, -1, 0, 1]
  value = metrics.mean_multiclass_f1(num_classes=3)(targets, predictions)["mean_3class_f1"]
  assert value == pytest.approx(100 * sklearn.metrics.f1_score(
      targets, predictions, labels=[0, 1, 2], average="macro"))
  # Per class: F1(0) = 1, F1(1) = 2/3, F1(2) = 1/2.
  assert value == pytest.approx(100 * (1 + 2 / 3 + 1 / 2) / 3)


def _multirc(values, groups):
  return [{"value": v, "group": g} for v, g in zip(values, groups)]


def test_multirc_f1a_and_exact_match_over_question_groups():
  groups = [(0, 1), (0, 1), (0, 2), (0, 2), (1, 3)]
  targets = _multirc([1, 0, 1, 1, 0], groups)
  predictions = [{"value": v} for v in [1, 0, 1, 0, 0]]  # question (0, 2) half wrong
  em = metrics.multirc_exact_match(targets, predictions)["exact_match"]
  assert em == pytest.approx(100 * 2 / 3)
  f1 = metrics.multirc_f1_over_all_answers(targets, predictions)["f1"]
  assert f1 == pytest.approx(100 * sklearn.metrics.f1_score([1, 0, 1, 1, 0], [1, 0, 1, 0, 0]))
  # The group comes from the example, keyed by (paragraph, question).
  example = {"idx/paragraph": np.int32(0), "idx/question": np.int32(2)}
  assert postprocessors.multirc("True", example=example, is_target=True) == {
      "value": 1, "group": (0, 2)}
  assert postprocessors.multirc("maybe", example=example) == {"value": -1}


def test_record_max_over_answers_on_one_copy_per_query():
  targets = [
      {"value": ["Cats", "cat"], "group": (1, 1)},
      {"value": ["Cats", "cat"], "group": (1, 1)},  # duplicate of the same query
      {"value": ["Dogs run"], "group": (1, 2)},
  ]
  predictions = [{"value": "the cat!"}, {"value": "wrong"}, {"value": "dogs"}]
  result = metrics.record(targets, predictions)
  # Query 1: "the cat!" normalises to "cat" (EM 1); query 2: "dogs" vs "dogs run"
  # (EM 0, F1 = 2 * 1 * 0.5 / 1.5). The duplicate's prediction is ignored.
  assert result == {"em": pytest.approx(50.0), "f1": pytest.approx(100 * (1 + 2 / 3) / 2)}
  example = {"answers": [b"Cats", b"cat"], "idx/passage": np.int32(1),
             "idx/query": np.int32(1)}
  assert postprocessors.record("cat", example=example, is_target=True) == {
      "value": ["Cats", "cat"], "group": (1, 1)}
  unlabeled = {"answers": [], "idx/passage": 2, "idx/query": 5}
  assert postprocessors.record("<unk>", example=unlabeled, is_target=True)["value"] == ["<unk>"]


def test_squad_normalisation():
  assert metrics.normalize_squad("The  Cat's, hat!") == "cats hat"
  assert metrics.squad([["a b c"]], ["b c d"])["f1"] == pytest.approx(80.0)  # "a" is dropped
  assert metrics.squad([["x b c"]], ["b c d"]) == {"em": 0.0, "f1": pytest.approx(100 * 2 / 3)}


def test_label_and_float_postprocessors():
  classes = ("entailment", "not_entailment")
  assert postprocessors.string_label_to_class_id("not_entailment", label_classes=classes) == 1
  assert postprocessors.string_label_to_class_id(b"entailment", label_classes=classes) == 0
  assert postprocessors.string_label_to_class_id("yes", label_classes=classes) == -1
  assert postprocessors.string_to_float("3.4") == pytest.approx(3.4)
  assert postprocessors.string_to_float("three") == -1.0


def test_wsc_simple_postprocessor():
  example = {"targets_pretokenized": b"the red hat", "label": 1}
  assert postprocessors.wsc_simple("", example=example, is_target=True) == 1
  assert postprocessors.wsc_simple("Red hat", example=example) == 1  # determiners, case
  assert postprocessors.wsc_simple("hat", example=example) == 1  # subset of the referent
  assert postprocessors.wsc_simple("the dog", example=example) == 0
  assert postprocessors.wsc_simple("the", example=example) == -1  # nothing left
  assert postprocessors.wsc_simple("Bob's hat", example={"targets_pretokenized": b"hat"}) == 0
