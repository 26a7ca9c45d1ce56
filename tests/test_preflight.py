"""Bad input: one `error:` line, exit status 2, and MODEL_DIR left exactly as it was.

Each case runs the real command line (`train.main`) in-process against a copy of a
finished tiny run, so a refusal that wrote anything would show up as a changed file.
"""
import json
import os
import shutil

import gin
import pytest
import seqio

import reliability_testlib as rl
from hyperprompt_jax import errors
from hyperprompt_jax import gin_utils
from hyperprompt_jax import launch
from hyperprompt_jax import network
from hyperprompt_jax import preflight
from hyperprompt_jax import run_dir
from hyperprompt_jax import train as train_lib

rl.enable_compilation_cache()
TRUNCATING_LENGTHS = "TASK_FEATURE_LENGTHS={'inputs': 7, 'targets': 3}"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A MODEL_DIR with checkpoint_0, task table, model config and truncation counts."""
  model_dir = tmp_path_factory.mktemp("finished") / "run"
  rc = train_lib.main(rl.gin_args(model_dir, TRUNCATING_LENGTHS,
                                  "reliability.ReliabilityConfig.truncation_check_examples=40",
                                  steps=0))
  assert rc == 0
  return model_dir


def _refused(capsys, model_dir, *bindings):
  """Runs the command; returns its one error line after checking nothing was written over."""
  before = rl.snapshot(model_dir)
  capsys.readouterr()
  rc = train_lib.main(rl.gin_args(model_dir, *bindings))
  err = capsys.readouterr().err
  lines = [l for l in rl.error_lines(err) if not l.startswith("WARNING:")]
  assert rc == 2, err
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  assert "Traceback" not in err
  after = rl.snapshot(model_dir)
  assert {k: after.get(k) for k in before} == before  # nothing written over
  assert not [k for k in after if k not in before and not k.startswith("train/")], after
  return lines[0]


@pytest.mark.parametrize("bindings, expected", [
    (["MIXTURE_OR_TASK_NAME='hyperprompt_ofline_v1'"],
     ["no seqio task or mixture named 'hyperprompt_ofline_v1'",
      "closest registered names: hyperprompt_offline_v1"]),
    # A method that cannot pack is refused with PACK=True (those that can, pack).
    (["network.T5Config.conditioning='prompt_tuning'",
      "network.T5Config.hyperprompt_variant='none'", "PACK=True"],
     ["pack=True is not supported with conditioning='prompt_tuning'", "Set `train/"]),
    (["TRAIN_STESP=5"], ["unknown gin macro(s) TRAIN_STESP (did you mean TRAIN_STEPS"]),
    (["train.totl_steps=5"], ["'train' doesn't have a parameter named 'totl_steps'"]),
    (["TASK_FEATURE_LENGTHS={'inputs': 2, 'targets': 3}"],
     ["'inputs' is 2 but needs >= 3 (the task sentinel, at least one token and EOS)"]),
    (["TASK_FEATURE_LENGTHS={'inputs': 10, 'targets': 1}"],
     ["'targets' is 1 but needs >= 2 (at least one token and EOS)"]),
    (["NUM_TASKS=5"], ["task indices {'offline_ends_v1': 5} of 'hyperprompt_offline_v1' are "
                       "outside T5Config.num_tasks=5", "set NUM_TASKS = 6",
                       "never clipped"]),
    (["network.T5Config.mlp_dim=32"],
     ["holds a run with a different model config", "mlp_dim: 16 -> 32",
      "--gin.ALLOW_CONFIG_CHANGE=True"]),
    (["MIXTURE_OR_TASK_NAME='hyperprompt_offline_v1_new_task'", "NUM_TASKS=7"],
     ["holds a run with a different model config", "num_tasks: 6 -> 7", "task table",
      "new tasks [(6, 'offline_last_first_v1')]"]),
    (["MIXTURE_OR_TASK_NAME='reliability_test_empty_mixture'",
      "MIXTURE_OR_TASK_MODULE='reliability_testlib'"],
     ["the 'train' split of task 'reliability_test_empty_task_index_1' (in "
      "'reliability_test_empty_mixture') has no examples"]),
    # The override accepts a different model config, but never a checkpoint that does not
    # fit: the parameter is named.
    (["network.T5Config.mlp_dim=32", "ALLOW_CONFIG_CHANGE=True"],
     ["checkpoint_0 does not fit the model: parameter decoder/layers_0/mlp/wi_0/kernel: (8, 16) "
      "in the checkpoint, (8, 32) in the model (and 11 more parameters)"]),
])
def test_bad_input_is_one_error_line_and_nothing_is_overwritten(
    capsys, tmp_path, finished_run, bindings, expected):
  model_dir = tmp_path / "run"
  shutil.copytree(finished_run, model_dir)
  line = _refused(capsys, model_dir, *bindings)
  for text in expected:
    assert text in line, line


def test_a_model_dir_under_a_file_is_one_error_line(capsys, tmp_path):
  (tmp_path / "not_a_dir").write_text("kept\n")
  line = _refused(capsys, tmp_path / "not_a_dir" / "run")
  assert f"{tmp_path / 'not_a_dir'} is a file, not a directory" in line, line
  assert (tmp_path / "not_a_dir").read_text() == "kept\n"


def test_a_bug_in_the_network_keeps_its_traceback(capsys, monkeypatch, tmp_path):
  # A tracing bug (jax's ConcretizationTypeError is a TypeError) is not bad input: it
  # must not be folded into an `error:` line with exit status 2.
  def broken_layer_prefix(prefixes, lyr):
    raise TypeError(f"injected bug in the forward pass (layer {lyr})")

  monkeypatch.setattr(network, "_layer_prefix", broken_layer_prefix)
  capsys.readouterr()
  with pytest.raises(TypeError, match="injected bug in the forward pass") as e:
    train_lib.main(rl.gin_args(tmp_path / "run", steps=1))
  assert "network.py" in {entry.path.name for entry in e.traceback}  # raised in the forward pass
  assert not [l for l in rl.error_lines(capsys.readouterr().err) if l.startswith("error:")]


def test_only_refusals_and_gin_errors_become_configuration_errors():
  @gin.configurable("preflight_test_fn")
  def needs_x(x=gin.REQUIRED):
    return x

  with pytest.raises(launch.ConfigurationError, match="Required bindings for `preflight_test_fn`"):
    with launch.configuration_errors():  # raised by gin when the configurable is called
      needs_x()
  with pytest.raises(launch.ConfigurationError, match="^bad value$"):
    with launch.configuration_errors():
      raise errors.ConfigError("bad value\n")
  for bug in (ValueError("a bug"), RuntimeError("a bug"), KeyError("a bug"), OSError("a bug")):
    with pytest.raises(type(bug)) as e:
      with launch.configuration_errors():
        raise bug
    assert not isinstance(e.value, launch.ConfigurationError)


def test_allow_config_change_keeps_the_replaced_files(capsys, tmp_path, finished_run):
  model_dir = tmp_path / "run"
  shutil.copytree(finished_run, model_dir)
  with open(model_dir / "model_config.json") as f:
    old = f.read()
  change = "network.T5Config.layer_norm_epsilon=1e-5"  # same shapes, different model
  assert "layer_norm_epsilon: 1e-06 -> 1e-05" in _refused(capsys, model_dir, change)
  assert train_lib.main(rl.gin_args(model_dir, change, "ALLOW_CONFIG_CHANGE=True",
                                    steps=0)) == 0
  out = capsys.readouterr().out
  assert "warning: ALLOW_CONFIG_CHANGE: model config" in out
  backups = [n for n in os.listdir(model_dir) if n.startswith("model_config.replaced-")]
  assert len(backups) == 1
  with open(model_dir / backups[0]) as f:
    assert f.read() == old
  with open(model_dir / "model_config.json") as f:
    assert json.load(f)["layer_norm_epsilon"] == 1e-5
  # Runtime settings (dropout, dtype) are not part of the model: no flag needed.
  assert train_lib.main(rl.gin_args(model_dir, change, "DROPOUT_RATE=0.3", steps=0)) == 0

  # A reordered mixture would give every task another task's embedding: refused, and
  # accepted only with the flag (the old table kept).
  reordered = [f"MIXTURE_OR_TASK_NAME='{rl.REORDERED_MIXTURE}'",
               "MIXTURE_OR_TASK_MODULE='reliability_testlib'", change]
  line = _refused(capsys, model_dir, *reordered)
  assert "task table" in line and "index 0: saved 'offline_first_v1', now 'offline_ends_v1'" in line
  with open(model_dir / "task_table.json") as f:
    old_table = f.read()
  assert train_lib.main(rl.gin_args(model_dir, *reordered, "ALLOW_CONFIG_CHANGE=True",
                                    steps=0)) == 0
  backups = [n for n in os.listdir(model_dir) if n.startswith("task_table.replaced-")]
  assert len(backups) == 1
  with open(model_dir / backups[0]) as f:
    assert f.read() == old_table
  with open(model_dir / "task_table.json") as f:
    assert json.load(f)["tasks"][0] == "offline_ends_v1"


def test_truncation_is_counted_per_task_and_written_to_model_dir(finished_run):
  with open(finished_run / run_dir.TRUNCATION) as f:
    report = json.load(f)["splits"]["train"]
  tasks = [t.name for t in seqio.get_subtasks(
      seqio.get_mixture_or_task("hyperprompt_offline_v1"))]
  assert sorted(report) == sorted(tasks)
  for task in tasks:
    # Offline inputs are sentinel + 8 letters + EOS = 10 tokens: all longer than 7.
    assert report[task]["inputs"] == {"checked": 40, "truncated": 40, "longest": 10,
                                      "length": 7, "counted": True}
    assert report[task]["targets"]["truncated"] == 0
    assert report[task]["targets"]["longest"] in (2, 3)


def test_scan_splits_counts_only_examples_longer_than_the_lengths():
  from hyperprompt_jax import data as data_lib
  cfg = lambda lengths: data_lib.DatasetConfig(
      mixture_or_task_name="offline_count_a_v1", task_feature_lengths=lengths, split="train",
      batch_size=8, shuffle=False)
  fits = preflight.scan_splits(cfg({"inputs": 10, "targets": 2}), training=True,
                               max_examples=25)
  assert fits["offline_count_a_v1"]["inputs"]["truncated"] == 0
  assert fits["offline_count_a_v1"]["targets"]["truncated"] == 0  # "0".."8" + EOS
  cut = preflight.scan_splits(cfg({"inputs": 9, "targets": 1}), training=True, max_examples=25)
  assert cut["offline_count_a_v1"]["inputs"]["truncated"] == 25
  assert cut["offline_count_a_v1"]["targets"]["truncated"] == 25
  lines = preflight.truncation_lines(cut, "train")
  assert len(lines) == 2 and "25 of the first 25 'train' examples (100.0%)" in lines[0]


def test_gin_files_refused_by_gin_are_configuration_errors_but_import_bugs_are_not(
    tmp_path, monkeypatch):
  """A gin file naming a missing module is bad input; a module that fails while it is
  imported (here: divides by zero at import) is a bug and keeps its own exception."""
  monkeypatch.syspath_prepend(str(tmp_path))
  (tmp_path / "preflight_buggy_module.py").write_text("VALUE = 1 / 0\n")
  cases = {"import preflight_no_such_module\n": "No module named 'preflight_no_such_module'",
           "preflight_unknown_fn.x = 1\n": "No configurable matching 'preflight_unknown_fn'",
           "X = (1\n": "EOF in multi-line statement"}
  for i, (text, message) in enumerate(cases.items()):
    path = tmp_path / f"bad_{i}.gin"
    path.write_text(text)
    with gin.unlock_config(), pytest.raises(errors.ConfigError, match=message):
      gin_utils.parse_gin([str(path)], finalize=False)
  path = tmp_path / "buggy.gin"
  path.write_text("import preflight_buggy_module\n")
  with gin.unlock_config(), pytest.raises(ZeroDivisionError) as e:
    gin_utils.parse_gin([str(path)], finalize=False)
  assert not isinstance(e.value, errors.ConfigError)
  gin.clear_config()
