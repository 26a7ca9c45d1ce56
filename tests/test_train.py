"""The train / eval / infer commands end to end (gin, t5x flags) and their configuration errors."""
import json
import os

import pytest

import launcher_testlib as tl
from hyperprompt_jax import eval as eval_lib
from hyperprompt_jax import evaluation
from hyperprompt_jax import infer as infer_lib
from hyperprompt_jax import launch
from hyperprompt_jax import run_dir
from hyperprompt_jax import train as train_lib

TINY_MODEL_FLAGS = [
    "--gin_file=runs/demo_model.gin",
    "--gin.vocabularies.byte_vocabulary.extra_ids=10",
    f"--gin.NUM_TASKS={len(tl.TASKS)}",
    f"--gin.TASK_SENTINEL_ID={tl.SENTINEL}",
    f"--gin.network.T5Config.vocab_size={tl.MODEL_VOCAB_SIZE}",
    "--gin.network.T5Config.emb_dim=16",
    "--gin.network.T5Config.head_dim=4",
    "--gin.network.T5Config.mlp_dim=32",
    "--gin.network.T5Config.num_encoder_layers=1",
    "--gin.network.T5Config.num_decoder_layers=1",
    "--gin.network.T5Config.prompt_length=2",
    "--gin.network.T5Config.task_embed_dim=4",
    "--gin.network.T5Config.layer_task_dim=4",
    "--gin.network.T5Config.task_hidden_dim=8",
    "--gin.network.T5Config.prompt_bottleneck_dim=4",
    '--gin.MIXTURE_OR_TASK_NAME="launcher_test_mixture"',
    '--gin.MIXTURE_OR_TASK_MODULE="launcher_testlib"',
    "--gin.partitioning.Partitioner.compiler_options={'xla_backend_optimization_level': 0}",
]


def _train_flags(model_dir, *extra):
  return TINY_MODEL_FLAGS + [
      "--gin_file=runs/finetune.gin", "--gin_file=partitioning/model_parallel.gin",
      f'--gin.MODEL_DIR="{model_dir}"', "--gin.TASK_FEATURE_LENGTHS={'inputs': 12, 'targets': 4}",
      "--gin.TRAIN_STEPS=4", "--gin.BATCH_SIZE=8", "--gin.EVAL_PERIOD=2", "--gin.EVAL_STEPS=1",
      "--gin.LOG_PERIOD=2", "--gin.CHECKPOINT_PERIOD=2", "--gin.INITIAL_CHECKPOINT_PATH=None",
      "--gin.RANDOM_SEED=0", "--gin.NUM_PARTITIONS=2", "--gin.LEARNING_RATE=0.01",
      *extra]


def test_train_eval_infer_commands_end_to_end(tmp_path, capsys):
  model_dir = tmp_path / "model"
  result = launch.run(train_lib.train, _train_flags(model_dir))
  out = capsys.readouterr().out
  assert result.step == 4
  assert "steps/s" in out and "tokens/s" in out and "ETA" in out
  assert "Evaluation at step 4" in out and "launcher_test_first" in out
  files = set(os.listdir(model_dir))
  assert {"checkpoint_4", "task_table.json", "best_checkpoints.json", "metrics.png",
          "metrics_history.json", "train", "inference_eval"} <= files
  with open(model_dir / "metrics.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(model_dir / "train"))
  best = json.loads((model_dir / "best_checkpoints.json").read_text())
  assert set(best) == set(tl.TASKS) | {"average"}
  assert all(v["step"] in (2, 4) for v in best.values())
  history = json.loads((model_dir / "metrics_history.json").read_text())
  assert [e[0] for e in history["train"]] == [2, 4]
  assert [e[0] for e in history["eval"]["average"]] == [2, 4]
  predictions = [n for n in os.listdir(model_dir / "inference_eval") if n.endswith("4.jsonl")]
  assert len(predictions) == len(tl.TASKS)
  table = json.loads((model_dir / "task_table.json").read_text())
  assert table["tasks"] == list(tl.TASKS)

  # A second run in the same MODEL_DIR resumes at step 4 and has nothing left to do.
  again = launch.run(train_lib.train, _train_flags(model_dir))
  assert again.step == 4 and "Resumed from" in capsys.readouterr().out

  eval_dir = tmp_path / "eval"
  metrics = launch.run(eval_lib.evaluate, TINY_MODEL_FLAGS + [
      "--gin_file=runs/eval.gin", f'--gin.CHECKPOINT_PATH="{model_dir}"',
      f'--gin.EVAL_OUTPUT_DIR="{eval_dir}"', "--gin.CHECKPOINT_STEPS='all'",
      "--gin.BATCH_SIZE=8"])
  assert sorted(metrics) == [2, 4]
  assert metrics[4] == json.loads((eval_dir / "results_4.json").read_text())["metrics"]
  # The evaluation of checkpoint 4 reproduces the one made during training.
  assert best["average"]["step"] != 4 or abs(
      json.loads((eval_dir / "results_4.json").read_text())["scores"]["average"] -
      best["average"]["score"]) < 1e-6

  infer_dir = tmp_path / "infer"
  written = launch.run(infer_lib.infer, TINY_MODEL_FLAGS + [
      "--gin_file=runs/infer.gin", f'--gin.CHECKPOINT_PATH="{model_dir}/checkpoint_4"',
      f'--gin.INFER_OUTPUT_DIR="{infer_dir}"', '--gin.INFER_SPLIT="validation"',
      # The longest examples (as the evaluator measured them): the same decoding program.
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 8, 'targets': 2}", "--gin.MAX_EXAMPLES=5",
      "--gin.BATCH_SIZE=8"])
  assert len(written) == len(tl.TASKS)
  rows = [json.loads(line) for line in open(written[tl.TASKS[0]])]
  assert len(rows) == 5 and {"inputs", "prediction", "targets"} <= set(rows[0])


@pytest.mark.parametrize("flag,message", [
    ("--gin.network.T5Config.emb_dimm=3", "doesn't have a parameter named 'emb_dimm'"),
    ("--gin.partitioning.Partitionerr.num_partitions=2", "Partitionerr"),
    ("--gin.TRAIN_STEPS=(1", "Bad gin configuration"),
    ('--gin.MIXTURE_OR_TASK_NAME="launcher_test_mixtur"', "launcher_test_mixture"),
    ("--gin.NUM_TASKS=1", "NUM_TASKS = 2"),
    ("--gin.BATCH_SIZE=7", "divisible"),
])
def test_bad_configuration_is_one_error_line(tmp_path, capsys, flag, message):
  status = train_lib.main(_train_flags(tmp_path / "model", flag))
  err = capsys.readouterr().err.strip().splitlines()
  assert status == launch.EXIT_CONFIG_ERROR
  assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
  assert not os.path.exists(tmp_path / "model" / "checkpoint_0")


def test_missing_required_macro_and_unknown_flag(tmp_path, capsys):
  flags = [f for f in _train_flags(tmp_path / "m") if "MODEL_DIR" not in f]
  assert train_lib.main(flags) == launch.EXIT_CONFIG_ERROR
  assert "MODEL_DIR" in capsys.readouterr().err
  assert train_lib.main(["--gin_fil=runs/finetune.gin"]) == launch.EXIT_CONFIG_ERROR
  assert "unknown command-line argument" in capsys.readouterr().err


def test_reordered_mixture_is_refused_against_the_saved_task_table(tmp_path):
  model_dir = tmp_path / "model"
  run_dir.save_task_table(str(model_dir), tuple(reversed(tl.TASKS)), "old_mixture")
  with pytest.raises(launch.ConfigurationError, match="task table"):
    train_lib.train(model=tl.tiny_model(), train_dataset_cfg=tl.dataset_cfg(),
                    model_dir=str(model_dir), total_steps=1, partitioner=tl.partitioner())


def test_task_index_outside_num_tasks_is_refused_not_clipped(tmp_path):
  with pytest.raises(launch.ConfigurationError, match=r"outside T5Config.num_tasks=1"):
    train_lib.train(model=tl.tiny_model(num_tasks=1), train_dataset_cfg=tl.dataset_cfg(),
                    model_dir=str(tmp_path), total_steps=1, partitioner=tl.partitioner())


def test_scanned_train_eval_infer_from_an_unrolled_checkpoint(tmp_path, capsys):
  """`--gin.network.T5Config.scan_layers=True` through the launcher, 2+2 layers: an
  unrolled run's checkpoint starts a scanned run (INITIAL_CHECKPOINT_PATH), which trains,
  evaluates and infers; resuming the unrolled MODEL_DIR scanned is one clear error."""
  layers = ["--gin.network.T5Config.num_encoder_layers=2",
            "--gin.network.T5Config.num_decoder_layers=2"]
  scan = "--gin.network.T5Config.scan_layers=True"
  unrolled_dir, scanned_dir = tmp_path / "unrolled", tmp_path / "scanned"
  assert launch.run(train_lib.train, _train_flags(
      unrolled_dir, *layers, "--gin.TRAIN_STEPS=2", "--gin.EVAL_PERIOD=None")).step == 2
  capsys.readouterr()
  # The unrolled MODEL_DIR does not resume scanned; nothing in it is touched.
  before = sorted(os.listdir(unrolled_dir))
  assert train_lib.main(_train_flags(unrolled_dir, *layers, scan,
                                     "--gin.TRAIN_STEPS=4")) == launch.EXIT_CONFIG_ERROR
  err = capsys.readouterr().err
  assert "scan_layers: False -> True" in err and "INITIAL_CHECKPOINT_PATH" in err, err
  # ... nor with the config change allowed: the checkpoint's layout is named.
  assert train_lib.main(_train_flags(unrolled_dir, *layers, scan, "--gin.TRAIN_STEPS=4",
                                     "--gin.ALLOW_CONFIG_CHANGE=True")
                        ) == launch.EXIT_CONFIG_ERROR
  err = capsys.readouterr().err
  assert "saved with T5Config.scan_layers=False" in err and "INITIAL_CHECKPOINT_PATH" in err, err
  assert sorted(os.listdir(unrolled_dir)) == before
  result = launch.run(train_lib.train, _train_flags(
      scanned_dir, *layers, scan, f'--gin.INITIAL_CHECKPOINT_PATH="{unrolled_dir}/checkpoint_2"',
      "--gin.EVAL_PERIOD=4", "--gin.CHECKPOINT_PERIOD=4"))
  out = capsys.readouterr().out
  assert result.step == 4 and "Initialised from" in out and "Evaluation at step 4" in out
  assert "layers" in result.state.params["decoder"]
  assert "layers_0" not in result.state.params["decoder"]
  metrics = launch.run(eval_lib.evaluate, TINY_MODEL_FLAGS + layers + [
      scan, "--gin_file=runs/eval.gin", f'--gin.CHECKPOINT_PATH="{scanned_dir}/checkpoint_4"',
      f'--gin.EVAL_OUTPUT_DIR="{tmp_path / "eval"}"', "--gin.BATCH_SIZE=8"])
  best = json.loads((scanned_dir / "best_checkpoints.json").read_text())
  # The scanned checkpoint's evaluation reproduces the one made during training.
  assert best["average"]["step"] == 4
  assert abs(evaluation.task_scores(metrics[4])["average"] - best["average"]["score"]) < 1e-6
  written = launch.run(infer_lib.infer, TINY_MODEL_FLAGS + layers + [
      scan, "--gin_file=runs/infer.gin", f'--gin.CHECKPOINT_PATH="{scanned_dir}/checkpoint_4"',
      f'--gin.INFER_OUTPUT_DIR="{tmp_path / "infer"}"', '--gin.INFER_SPLIT="validation"',
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 8, 'targets': 2}", "--gin.MAX_EXAMPLES=3",
      "--gin.BATCH_SIZE=8"])
  assert len(written) == len(tl.TASKS)
  assert len([json.loads(line) for line in open(written[tl.TASKS[0]])]) == 3
