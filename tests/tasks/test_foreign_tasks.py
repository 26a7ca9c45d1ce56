"""register_mixture on another project's seqio tasks (seqio.TaskRegistry.add), trained by name.

The other project is a module written into a temporary folder outside the package;
the launcher imports it through MIXTURE_OR_TASK_MODULE.
"""
import json
import sys
import textwrap

import numpy as np
import pytest
import seqio

import hyperprompt_tasks as ht
from hyperprompt_jax import launch
from hyperprompt_jax import train as train_lib

MODULE = "other_project_tasks_for_tests"
MIXTURE = "other_project_mixture_for_tests"
TASKS = ("other_project_upper_for_tests", "other_project_reverse_for_tests")

OTHER_PROJECT = textwrap.dedent(f'''
    """Another project's tasks: plain seqio, no task sentinel; a task-indexed mixture of them."""
    import functools
    import seqio
    import tensorflow as tf
    import hyperprompt_tasks

    VOCAB = seqio.ByteVocabulary(extra_ids=100)
    WORDS = ["apple", "river", "stone", "cloud", "green", "light", "table", "music"]

    def examples(split, shuffle_files, seed=None, rule="upper"):
      words = WORDS if split == "train" else WORDS[:4]
      targets = [w.upper() if rule == "upper" else w[::-1] for w in words]
      return tf.data.Dataset.from_tensor_slices({{"word": words, "answer": targets}})

    def to_text(ds):
      return ds.map(lambda x: {{"inputs": x["word"], "targets": x["answer"]}})

    def exact(targets, predictions):
      return {{"accuracy": 100.0 * sum(t == p for t, p in zip(targets, predictions)) / len(targets)}}

    for name, rule in zip({TASKS!r}, ("upper", "reverse")):
      seqio.TaskRegistry.add(
          name,
          source=seqio.FunctionDataSource(functools.partial(examples, rule=rule),
                                          splits=("train", "validation")),
          preprocessors=[to_text, seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                         seqio.preprocessors.append_eos_after_trim],
          output_features={{"inputs": seqio.Feature(VOCAB), "targets": seqio.Feature(VOCAB)}},
          postprocess_fn=lambda s, **kw: s.decode() if isinstance(s, bytes) else s,
          metric_fns=[exact])

    hyperprompt_tasks.register_mixture({MIXTURE!r}, [({TASKS[0]!r}, 1.0), ({TASKS[1]!r}, 1.0)])
''')

TINY = [
    "--gin_file=runs/demo_model.gin", "--gin_file=runs/finetune.gin",
    "--gin.network.T5Config.emb_dim=16", "--gin.network.T5Config.head_dim=4",
    "--gin.network.T5Config.mlp_dim=32", "--gin.network.T5Config.num_encoder_layers=1",
    "--gin.network.T5Config.num_decoder_layers=1", "--gin.network.T5Config.prompt_length=2",
    "--gin.network.T5Config.task_embed_dim=4", "--gin.network.T5Config.layer_task_dim=4",
    "--gin.network.T5Config.task_hidden_dim=8",
    "--gin.network.T5Config.prompt_bottleneck_dim=4",
    "--gin.partitioning.Partitioner.compiler_options={'xla_backend_optimization_level': 0}",
]


@pytest.fixture(scope="module")
def other_project(tmp_path_factory):
  folder = tmp_path_factory.mktemp("other_project")
  (folder / f"{MODULE}.py").write_text(OTHER_PROJECT)
  sys.path.insert(0, str(folder))
  yield folder
  sys.path.remove(str(folder))


def test_launcher_trains_a_mixture_of_another_projects_tasks(other_project, tmp_path):
  assert MODULE not in sys.modules  # the launcher imports it (MIXTURE_OR_TASK_MODULE)
  model_dir = tmp_path / "model"
  result = launch.run(train_lib.train, TINY + [
      f'--gin.MODEL_DIR="{model_dir}"', f'--gin.MIXTURE_OR_TASK_NAME="{MIXTURE}"',
      f'--gin.MIXTURE_OR_TASK_MODULE="{MODULE}"', "--gin.NUM_TASKS=2",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 8, 'targets': 8}", "--gin.TRAIN_STEPS=2",
      "--gin.BATCH_SIZE=8", "--gin.EVAL_BATCH_SIZE=8", "--gin.EVAL_PERIOD=2",
      "--gin.EVAL_STEPS=1", "--gin.LOG_PERIOD=1", "--gin.CHECKPOINT_PERIOD=2",
      "--gin.INITIAL_CHECKPOINT_PATH=None", "--gin.RANDOM_SEED=0"])
  assert MODULE in sys.modules
  assert result.step == 2
  assert {evaluation_name.split("_task_index_")[0] for evaluation_name in result.eval_metrics
          } == set(TASKS)
  saved = json.loads((model_dir / "task_table.json").read_text())
  assert list(saved["tasks"] if isinstance(saved, dict) else saved) == list(TASKS)


def test_sentinel_goes_in_after_tokenization(other_project):
  __import__(MODULE)
  assert ht.task_table(MIXTURE) == TASKS
  vocab = seqio.ByteVocabulary(extra_ids=100)
  for index, name in enumerate(TASKS):
    variant = ht.indexed_task_name(name, index)
    original = seqio.get_mixture_or_task(name)
    lengths = {"inputs": 10, "targets": 10}
    ours = list(seqio.get_mixture_or_task(variant).get_dataset(
        lengths, split="validation", shuffle=False).as_numpy_iterator())
    theirs = list(original.get_dataset(lengths, split="validation",
                                       shuffle=False).as_numpy_iterator())
    assert len(ours) == len(theirs) == 4
    for a, b in zip(ours, theirs):
      assert a["inputs"][0] == vocab.vocab_size - 1 - index  # <extra_id_index>
      np.testing.assert_array_equal(a["inputs"][1:], b["inputs"])  # then their tokens
      np.testing.assert_array_equal(a["targets"], b["targets"])
    assert seqio.get_mixture_or_task(variant).metric_fns == original.metric_fns
  # Their own tasks are untouched: no sentinel.
  row = next(seqio.get_mixture_or_task(TASKS[0]).get_dataset(
      {"inputs": 10, "targets": 10}, split="validation", shuffle=False).as_numpy_iterator())
  assert row["inputs"][0] == ord("a") + 3


def test_a_task_without_a_tokenize_step_is_refused():
  name = "other_project_untokenized_for_tests"
  if name not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(
        name, source=seqio.FunctionDataSource(lambda split, shuffle_files, seed=None: None,
                                              splits=("train",)),
        preprocessors=[], output_features={"inputs": seqio.Feature(seqio.ByteVocabulary())})
  with pytest.raises(ValueError, match="no seqio.preprocessors.tokenize"):
    ht.register_mixture("other_project_refused_for_tests", [name])
