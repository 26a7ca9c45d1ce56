"""Every registered task end to end on `tfds.testing.mock_data`:
source -> preprocessors -> feature converter -> seqio.Evaluator (postprocessor -> metrics).

The tasks are the byte-vocabulary copies (`bytes_` prefix) of every registered
task (T5's SentencePiece file cannot be read offline); they share the specs of
the real tasks, which the last test checks.
"""
import numpy as np
import pytest
import seqio

import hyperprompt_tasks as ht
import tasks_testlib
from tasks_testlib import PREFIX, VOCAB

CONVERTER = seqio.EncDecFeatureConverter(pack=False)
NOT_PREDICTABLE = "zzz"  # Decodes to no label, answer or referent of any task.


def _oracle(ds, *unused):
  return [(i, ex["decoder_target_tokens"]) for i, ex in ds.as_numpy_iterator()]


def _wrong(ds, *unused):
  return [(i, VOCAB.encode(NOT_PREDICTABLE) + [1]) for i, _ in ds.as_numpy_iterator()]


def _postprocessed_targets(evaluator, task_name):
  task = seqio.get_mixture_or_task(task_name)
  return [task.postprocess_fn(ex["targets_pretokenized"].decode(), example=ex, is_target=True)
          for ex in evaluator.cached_task_datasets[task_name].as_numpy_iterator()]


def _check_metrics(name, targets, oracle, wrong):
  """Metric values of perfect and of unparseable predictions, per metric."""
  base = name[len(PREFIX):]
  assert oracle, f"{name}: no metrics"
  for metric, value in oracle.items():
    if base == "super_glue_wsc_v102_simple_eval":
      # The target is the candidate; a prediction naming it is right iff label 1.
      assert value == pytest.approx(100 * np.mean(targets)), name
      assert wrong[metric] == pytest.approx(100 * (1 - np.mean(targets))), name
      continue
    values = [t["value"] if isinstance(t, dict) else t for t in targets]
    if metric == "mean_3class_f1":  # classes absent from the targets score 0
      assert value == pytest.approx(100 * len(set(values) - {-1}) / 3), name
    elif metric in ("matthews_corrcoef", "pearson_corrcoef", "spearman_corrcoef"):
      if len(set(values)) > 1:
        assert value == pytest.approx(100), (name, metric)
    elif metric == "f1" and not isinstance(values[0], list):
      if 1 in values:
        assert value == pytest.approx(100), (name, metric)
        assert wrong[metric] == 0, (name, metric)
    else:  # accuracy, MultiRC exact match, ReCoRD em / f1
      assert value == pytest.approx(100), (name, metric)
      assert wrong[metric] == 0, (name, metric)


@pytest.fixture(scope="module")
def byte_tasks():
  tasks_testlib.register_byte_copies()
  return [n for n in ht.registry.registered_specs() if n.startswith(PREFIX)]


@pytest.mark.parametrize("mixture_or_task,split", [
    (tasks_testlib.EVERY_TASK_MIXTURE, "validation"),
    (PREFIX + "glue_mnli_v002", "validation_matched"),
    (PREFIX + "dpr_v001_simple", "test"),
])
def test_evaluator_runs_every_task_with_metrics(byte_tasks, mixture_or_task, split):
  with tasks_testlib.mock_tfds(5):
    # num_examples caps the 500-example offline validation splits.
    evaluator = seqio.Evaluator(mixture_or_task, feature_converter=CONVERTER, eval_split=split,
                                num_examples=40)
    oracle = evaluator.evaluate(compute_metrics=True, predict_fn=_oracle)[0].result()
    wrong = evaluator.evaluate(compute_metrics=True, predict_fn=_wrong)[0].result()
    targets = {t.name: _postprocessed_targets(evaluator, t.name) for t in evaluator.eval_tasks}
    batches = {name: next(ds.batch(64).as_numpy_iterator())
               for name, ds in evaluator.cached_model_datasets.items()}
  for task in evaluator.eval_tasks:
    _check_metrics(task.name, targets[task.name], oracle[task.name], wrong[task.name])
    # Feature converter output: task sentinel (index 0: each task alone), EOS, padding.
    enc = batches[task.name][1]["encoder_input_tokens"]
    assert (enc[:, 0] == VOCAB.vocab_size - 1).all(), task.name
    assert ((enc == 1).sum(axis=1) == 1).all(), task.name
  if split == "validation":
    evaluated = {t.name for t in evaluator.eval_tasks}
    with_metrics = {n for n in byte_tasks if ht.get_spec(n).metric_fns and
                    split in seqio.get_mixture_or_task(n).splits}
    assert evaluated == with_metrics and len(evaluated) == 26


@pytest.mark.parametrize("task,split", [("super_glue_wsc_v102_simple_train", "train"),
                                        ("glue_ax_v002", "test"),
                                        ("super_glue_axb_v102", "test"),
                                        ("super_glue_axg_v102", "test")])
def test_tasks_without_metrics_run_through_converter_and_postprocessor(byte_tasks, task, split):
  name = PREFIX + task
  with tasks_testlib.mock_tfds(5):
    task_ds = seqio.get_mixture_or_task(name).get_dataset(
        {"inputs": 512, "targets": 32}, split=split, shuffle=False)
    examples = list(task_ds.as_numpy_iterator())
    batch = next(CONVERTER(task_ds, {"inputs": 512, "targets": 32}).batch(8).as_numpy_iterator())
  assert examples and (batch["encoder_input_tokens"][:, 0] == VOCAB.vocab_size - 1).all()
  postprocess = seqio.get_mixture_or_task(name).postprocess_fn
  for ex in examples:
    text = ex["targets_pretokenized"].decode()
    assert VOCAB.decode(ex["targets"].tolist()) == text
    value = postprocess(text, example=ex, is_target=True)
    if task == "super_glue_wsc_v102_simple_train":
      assert value == text  # no postprocessor: the referent itself
    else:  # diagnostics (mock labels are random; real test labels are "<unk>": -1)
      classes = ht.glue.label_classes("ax") if task.startswith("glue_") else ("entailment",
                                                                    "not_entailment")
      assert value == (classes.index(text) if text in classes else -1)
      assert text in classes + ("<unk>",)


def test_real_registrations_share_the_tested_specs(byte_tasks):
  tested = {n[len(PREFIX):] for n in byte_tasks}
  real = {n for n in ht.registry.registered_specs() if n in tested}
  assert real == tested and len(tested) == 32
  for name in tested:  # same pipeline, only the vocabulary and names differ
    spec, copy = ht.get_spec(name), ht.get_spec(PREFIX + name)
    assert len(spec.preprocessors) == len(copy.preprocessors)
    assert spec.metric_fns == copy.metric_fns or len(spec.metric_fns) == len(copy.metric_fns)
    assert spec.train_size == copy.train_size
  for mixture in ("glue_v002_proportional", "super_glue_v102_proportional",
                  "glue_super_glue_proportional", "hyperprompt_offline_v1",
                  "hyperprompt_offline_v1_new_task"):
    for task in seqio.get_mixture_or_task(mixture).tasks:
      assert ht.task_binding(task.name).base in tested
