"""Every gin file under gin/ parses and builds what it configures (no parameters allocated).

gin/t5x/ files are parsed against stand-in t5x modules (t5x is not installed): the
stand-ins only have the signatures of the t5x objects the files bind, so a typo in a
file, a wrong parameter name, or a broken reference to our code still fails here.
"""
import dataclasses
import enum
import glob
import importlib.util
import os
import re
import subprocess
import sys
import types

import gin
import jax.numpy as jnp
import pytest

from hyperprompt_jax import data as data_lib
from hyperprompt_jax import gin_utils
from hyperprompt_jax import launch
from hyperprompt_jax import models
from hyperprompt_jax import network
from hyperprompt_jax import optimizers
from hyperprompt_jax import partitioning
from hyperprompt_jax import eval as eval_lib
from hyperprompt_jax import infer as infer_lib
from hyperprompt_jax import train as train_lib

GIN_DIR = gin_utils.GIN_DIR
ALL_FILES = sorted(os.path.relpath(p, GIN_DIR)
                   for p in glob.glob(os.path.join(GIN_DIR, "**", "*.gin"), recursive=True))
BASE = ["models/t5_1_1/tiny.gin", "conditioning/hyperprompt_global.gin"]
RUN_MACROS = ["MODEL_DIR = '/tmp/unused'", "MIXTURE_OR_TASK_NAME = 'hyperprompt_offline_v1'",
              "TASK_FEATURE_LENGTHS = {'inputs': 10, 'targets': 3}", "TRAIN_STEPS = 10",
              "INITIAL_CHECKPOINT_PATH = None", "CHECKPOINT_PATH = '/tmp/unused'",
              "EVAL_OUTPUT_DIR = '/tmp/unused'", "INFER_OUTPUT_DIR = '/tmp/unused'",
              "MESH_SHAPE = (-1, 2)"]


@gin.configurable
def probe(model=None, optimizer=None, partitioner=None, dataset=None, config=None):
  """Instantiates what the parsed files configure."""
  return dict(model=model, optimizer=optimizer, partitioner=partitioner, dataset=dataset,
              config=config)


def _parse(files, bindings=()):
  with gin.unlock_config():
    for fn in (train_lib.train, eval_lib.evaluate, infer_lib.infer):
      launch.configurable_entry_point(fn)
    gin.clear_config()
    gin_utils.parse_gin(files, list(bindings), finalize=False)


def _check_model(model):
  assert isinstance(model, models.EncoderDecoderModel)
  network.validate_config(model.module.config)
  return model.module.config


@pytest.mark.parametrize("name", [f for f in ALL_FILES if f.startswith("models/")])
def test_model_size_files(name):
  _parse([name, "conditioning/hyperprompt_global.gin"],
         ["DROPOUT_RATE = 0.0", "probe.model = %MODEL"])
  config = _check_model(probe()["model"])
  assert config.hyperprompt_variant == "global"


@pytest.mark.parametrize("name", [f for f in ALL_FILES if f.startswith("conditioning/")])
def test_conditioning_files(name):
  _parse(["models/t5_1_1/tiny.gin", name], ["DROPOUT_RATE = 0.0", "probe.model = %MODEL"])
  _check_model(probe()["model"])


@pytest.mark.parametrize("name", [f for f in ALL_FILES if f.startswith("optimizers/")])
def test_optimizer_files(name):
  _parse(BASE + ["runs/finetune.gin", name], RUN_MACROS + ["probe.optimizer = %OPTIMIZER"])
  opt = probe()["optimizer"]
  assert isinstance(opt, optimizers.OptimizerDef)
  assert float(opt.learning_rate_fn(0)) >= 0.0
  if "conditioning_only" in name:
    assert opt.trainable_patterns == optimizers.resolve_trainable("conditioning")


@pytest.mark.parametrize("name", [f for f in ALL_FILES if f.startswith("partitioning/")])
def test_partitioning_files(name):
  _parse(BASE + ["runs/finetune.gin", name],
         RUN_MACROS + ["NUM_PARTITIONS = 4", "probe.partitioner = @partitioning.Partitioner()"])
  mesh = probe()["partitioner"].mesh
  assert mesh.axis_names == ("data", "model") and mesh.devices.size == 8


PRECISIONS = {"precision/bf16.gin": jnp.bfloat16}  # file -> the activation dtype it sets


@pytest.mark.parametrize("name", [f for f in ALL_FILES if f.startswith("precision/")])
def test_precision_files(name):
  """A precision file changes the activation dtype of the run file before it, nothing else."""
  configs = []
  for files in (["testing/tiny_offline.gin"], ["testing/tiny_offline.gin", name]):
    _parse(files, ["MODEL_DIR = '/tmp/unused'", "probe.model = %MODEL"])
    configs.append(_check_model(probe()["model"]))
  f32, changed = configs
  assert jnp.dtype(f32.dtype) == jnp.float32
  assert jnp.dtype(changed.dtype) == PRECISIONS[name]
  assert dataclasses.replace(changed, dtype=f32.dtype) == f32


@pytest.mark.parametrize("name", [f for f in ALL_FILES if f.startswith("runs/")])
def test_run_files(name):
  files = [name] if name.startswith("runs/demo") else BASE + [name]
  _parse(files, RUN_MACROS + ["probe.model = %MODEL"])
  model = probe()["model"]
  config = _check_model(model)
  if name in ("runs/finetune.gin", "runs/pretrain.gin", "runs/demo.gin"):
    bindings = gin.get_bindings("__main__.train")
    assert {"model", "train_dataset_cfg", "model_dir", "total_steps"} <= set(bindings)
    assert isinstance(model.optimizer_def, optimizers.OptimizerDef)
  if name == "runs/demo.gin":
    assert config.num_tasks == 6 and config.task_sentinel_id == 358
  if name == "runs/eval.gin":
    assert "checkpoint_path" in gin.get_bindings("__main__.evaluate")
  if name == "runs/infer.gin":
    assert "output_dir" in gin.get_bindings("__main__.infer")


def test_train_dataset_configs_of_the_run_files():
  _parse(BASE + ["runs/finetune.gin"],
         RUN_MACROS + ["probe.dataset = @train/data.DatasetConfig()",
                       "probe.config = @infer_eval/data.DatasetConfig()"])
  made = probe()
  assert made["dataset"] == data_lib.DatasetConfig(
      mixture_or_task_name="hyperprompt_offline_v1",
      task_feature_lengths={"inputs": 10, "targets": 3}, split="train", batch_size=128,
      shuffle=True, seed=None, use_cached=False, pack=False, module="hyperprompt_tasks")
  assert made["config"].task_feature_lengths is None and not made["config"].shuffle
  # PACK packs the training rows; inference evaluation (decoding) never packs.
  _parse(BASE + ["runs/finetune.gin"],
         RUN_MACROS + ["PACK = True", "probe.dataset = @train/data.DatasetConfig()",
                       "probe.config = @infer_eval/data.DatasetConfig()",
                       "probe.partitioner = @train_eval/data.DatasetConfig()"])
  made = probe()
  assert made["dataset"].pack and made["partitioner"].pack and not made["config"].pack
  _parse(BASE + ["runs/pretrain.gin"], RUN_MACROS + ["probe.dataset = @train/data.DatasetConfig()"])
  assert probe()["dataset"].pack  # pre-training packs (vanilla T5 only)


def test_gin_file_lookup_with_namespace_folders_in_the_working_directory(tmp_path,
                                                                        monkeypatch):
  """`runs/`, `conditioning/` folders where the command runs do not break gin's lookups.

  gin-config also looks `runs/x.gin` up as file `x.gin` of Python package `runs`; a
  folder without `__init__.py` on sys.path (`python -m` puts the working directory
  there) is a namespace package with no file location, and gin-config's resource reader
  raises TypeError on it. Importing hyperprompt_jax makes gin skip that look-up.
  """
  for folder in ("runs", "conditioning", "models/t5_1_1"):
    (tmp_path / folder).mkdir(parents=True)
  monkeypatch.chdir(tmp_path)
  monkeypatch.syspath_prepend(str(tmp_path))
  for name in ("runs", "conditioning", "models", "models.t5_1_1"):
    monkeypatch.delitem(sys.modules, name, raising=False)
  importlib.invalidate_caches()
  assert importlib.util.find_spec("runs").origin is None  # what gin-config trips on
  want = ("global", 6, 384)

  def built():
    config = _check_model(probe()["model"])
    return config.hyperprompt_variant, config.num_tasks, config.vocab_size

  # Our launchers: relative names, the first file too.
  _parse(["runs/demo_model.gin"], ["probe.model = %MODEL"])
  assert built() == want
  # t5x's launchers call gin directly, in a fresh process: the includes of our files are
  # looked up after the file's first line has imported hyperprompt_jax.
  first = os.path.join(GIN_DIR, "runs", "demo_model.gin")
  script = ("import gin\n"
            f"gin.add_config_file_search_path({GIN_DIR!r})\n"
            f"gin.parse_config_files_and_bindings([{first!r}], [], finalize_config=False)\n"
            "print('variant', gin.query_parameter('network.T5Config.hyperprompt_variant'))\n")
  done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                        text=True, timeout=300, check=False)
  assert done.returncode == 0 and "variant global" in done.stdout, done.stderr[-2000:]
  # Not vacuous: gin-config's own reader still fails on these folders.
  monkeypatch.setattr(gin.config, "_FILE_READERS", [
      (reader, getattr(exists, "__wrapped__", exists)) for reader, exists in
      gin.config._FILE_READERS])  # pylint: disable=protected-access
  with gin.unlock_config(), pytest.raises(TypeError):
    gin.clear_config()
    gin.parse_config_files_and_bindings([first], [], finalize_config=False)


# ---------------------------------------------------------------------------
# gin/t5x/: against stand-ins with t5x's signatures.
# ---------------------------------------------------------------------------


def _fake_t5x(monkeypatch):
  made = {}

  def module(name, **attrs):
    mod = types.ModuleType(name)
    for k, v in attrs.items():
      setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, name, mod)
    return mod

  class EncoderDecoderModel:
    def __init__(self, module, input_vocabulary, output_vocabulary, optimizer_def,
                 decode_fn=None, feature_converter_cls=None, label_smoothing=0.0, z_loss=0.0,
                 loss_normalizing_factor=None, default_decoder_params=None):
      made["model"] = dict(module=module, optimizer_def=optimizer_def, z_loss=z_loss)

  class FactorDim(enum.Enum):
    NONE, BATCH, ROW, COLUMN = range(4)

  class Adafactor:
    def __init__(self, learning_rate=None, factored=True, multiply_by_parameter_scale=True,
                 beta1=None, decay_rate=0.8, step_offset=0, clipping_threshold=1.0,
                 weight_decay_rate=None, min_dim_size_to_factor=128, epsilon1=1e-30,
                 epsilon2=1e-3, dtype_momentum=None, factor_map=None, logical_factor_rules=None,
                 weight_decay_rate_lr_exponent=None, global_norm_clip_threshold=None,
                 max_parameter_scale=None, skip_nan_updates=False):
      self.logical_factor_rules = logical_factor_rules

  def standard_logical_factor_rules(rules_override=None):
    return {"vocab": FactorDim.COLUMN, "embed": FactorDim.ROW, "mlp": FactorDim.COLUMN,
            "heads": FactorDim.COLUMN, "kv": FactorDim.COLUMN, "joined_kv": FactorDim.COLUMN,
            "relpos_buckets": FactorDim.NONE, "layers": FactorDim.BATCH}

  def standard_logical_axis_rules(activation_partitioning_dims=1, parameter_partitioning_dims=1,
                                  additional_rules=None):
    return list(additional_rules or ())

  class PjitPartitioner:
    def __init__(self, num_partitions=None, model_parallel_submesh=None, params_on_devices=True,
                 backend=None, ici_mesh_shape=None, dcn_mesh_shape=None,
                 logical_axis_rules=None):
      pass

  class DatasetConfig:
    def __init__(self, mixture_or_task_name, task_feature_lengths, split, batch_size, shuffle,
                 seed, use_cached=False, pack=False, use_custom_packing_ops=False, module=None,
                 use_memory_cache=True, trim_output_features=True):
      pass

  class RestoreCheckpointConfig:
    def __init__(self, path, mode="latest", assignment_map=None, strict=True,
                 fallback_to_scratch=False, dtype=None, restore_dataset=False):
      pass

  class MultiOptimizer:
    def __init__(self, traversals_and_optimizers):
      made["multi"] = traversals_and_optimizers

  t5x = module("t5x")
  t5x.models = module("t5x.models", EncoderDecoderModel=EncoderDecoderModel)
  t5x.adafactor = module("t5x.adafactor", Adafactor=Adafactor, FactorDim=FactorDim,
                         standard_logical_factor_rules=standard_logical_factor_rules)
  t5x.partitioning = module("t5x.partitioning", PjitPartitioner=PjitPartitioner,
                            standard_logical_axis_rules=standard_logical_axis_rules)
  t5x.utils = module("t5x.utils", DatasetConfig=DatasetConfig,
                     RestoreCheckpointConfig=RestoreCheckpointConfig)
  t5x.optimizers = module("t5x.optimizers", MultiOptimizer=MultiOptimizer)
  return made


def test_t5x_files_plug_our_network_into_t5x(monkeypatch):
  if importlib.util.find_spec("t5x") is not None:
    # gin keeps every class it registers: stand-ins under t5x's names would clash with t5x.
    pytest.skip("t5x is installed: the test_t5x_*_job_file(s) tests use t5x itself")
  made = _fake_t5x(monkeypatch)
  files = ["models/t5_1_1/base.gin", "conditioning/hyperprompt_global.gin", "t5x/model.gin"]
  _parse(files + ["t5x/task_conditioned_finetune.gin", "t5x/train_conditioning_only.gin"],
         ["DROPOUT_RATE = 0.1", "probe.model = %MODEL", "probe.optimizer = %OPTIMIZER",
          "probe.config = @t5x_partitioning.standard_logical_axis_rules()"])
  out = probe()
  module = made["model"]["module"]
  assert isinstance(module, network.Transformer)
  assert module.config.hyperprompt_variant == "global"
  assert made["model"]["z_loss"] == 1e-4
  # Freezing: one traversal (conditioning regexes) paired with t5x's Adafactor.
  (traversal, adafactor), = made["multi"]
  rules = adafactor.logical_factor_rules
  assert all(axis in rules for axis in partitioning.factor_rules())
  assert rules["task_embed"].name == "BATCH" and rules["vocab"].name == "COLUMN"
  assert out["config"] == partitioning.conditioning_axis_rules()
  selected = traversal.iterate({"hyperprompt": {"task_embedding": 1},
                                "encoder": {"layers_0": {"mlp": {"wo": {"kernel": 2}}}}})
  assert list(selected) == [1]  # only the conditioning parameters are trained
  # t5x's packing default is kept (packed segments are each conditioned on their own task).
  bindings = [line for line in open(os.path.join(GIN_DIR, "t5x/task_conditioned_finetune.gin"))
              if not line.lstrip().startswith("#")]
  assert not [line for line in bindings if "pack" in line], bindings
  # The model-only file alone also parses (t5x's own optimizer settings kept).
  _parse(files, ["DROPOUT_RATE = 0.1", "probe.optimizer = %OPTIMIZER"])
  assert probe()["optimizer"].logical_factor_rules["prompt_embed"].name == "ROW"


# ---------------------------------------------------------------------------
# gin/t5x/ job files with t5x itself (skipped when t5x does not import).
# ---------------------------------------------------------------------------

# Job file -> the t5x launcher module and the entry point its run file configures.
T5X_JOBS = {
    "t5x/pretrain.gin": ("t5x.train", "train"),
    "t5x/finetune.gin": ("t5x.train", "train"),
    "t5x/finetune_conditioning_only.gin": ("t5x.train", "train"),
    "t5x/eval.gin": ("t5x.eval", "evaluate"),
    "t5x/infer.gin": ("t5x.infer", "infer"),
}
T5X_JOB_MACROS = ["MODEL_DIR = '/tmp/unused'", "TRAIN_STEPS = 10", "CHECKPOINT_PATH = '/tmp/ckpt'",
                  "INITIAL_CHECKPOINT_PATH = '/tmp/ckpt'", "EVAL_OUTPUT_DIR = '/tmp/unused'",
                  "INFER_OUTPUT_DIR = '/tmp/unused'"]


def _parse_t5x_job(monkeypatch, job, model_files, bindings=()):
  """Parses `model_files + [job, 't5x/offline_mixture.gin']` the way t5x's launcher does."""
  launcher_name, entry = T5X_JOBS[job]
  launcher = pytest.importorskip(launcher_name, reason="t5x is not installed (not on PyPI)")
  from t5x import gin_utils as t5x_gin_utils  # pylint: disable=g-import-not-at-top
  # `python -m t5x.train` runs train.py as __main__: its run files bind __main__.train.
  monkeypatch.setattr(sys.modules["__main__"], entry, getattr(launcher, entry), raising=False)
  with gin.unlock_config():
    gin.clear_config()
    t5x_gin_utils.parse_gin_flags([GIN_DIR], list(model_files) + [job, "t5x/offline_mixture.gin"],
                                  T5X_JOB_MACROS + list(bindings), finalize_config=False)


def _offline_dataset(cfg, split, pack):
  assert (cfg.mixture_or_task_name, cfg.split, cfg.pack) == ("hyperprompt_offline_v1", split, pack)
  assert cfg.module == "hyperprompt_tasks" and cfg.use_cached is False


@pytest.mark.parametrize("job", ["t5x/finetune.gin", "t5x/finetune_conditioning_only.gin"])
def test_t5x_finetune_job_files(monkeypatch, job):
  _parse_t5x_job(monkeypatch, job, ["runs/demo_model.gin"],
                 ["probe.model = %MODEL", "probe.dataset = @train/utils.DatasetConfig()",
                  "probe.config = @utils.RestoreCheckpointConfig()",
                  "probe.partitioner = @train_eval/utils.DatasetConfig()",
                  "probe.optimizer = @infer_eval/utils.DatasetConfig()"])
  from t5x import adafactor, models as t5x_models, optimizers as t5x_optimizers  # pylint: disable=g-import-not-at-top
  out = probe()
  model = out["model"]
  assert isinstance(model, t5x_models.EncoderDecoderModel)
  assert isinstance(model.module, network.Transformer)
  config = model.module.config
  assert (config.hyperprompt_variant, config.num_tasks, config.dropout_rate) == ("global", 6, 0.1)
  _offline_dataset(out["dataset"], "train", pack=True)  # t5x's default: packed rows
  assert out["dataset"].task_feature_lengths == {"inputs": 10, "targets": 3}
  _offline_dataset(out["partitioner"], "validation", pack=True)  # training eval
  _offline_dataset(out["optimizer"], "validation", pack=False)  # inference eval
  restore = out["config"]
  assert (restore.path, restore.mode, restore.dtype) == ("/tmp/ckpt", "specific", "float32")
  assert restore.fallback_to_scratch
  (pattern, replacement), = restore.assignment_map
  assert replacement is None
  for top in ("hyperprompt", "prefix_tuning", "prompt_tuning", "adapters", "hyperformer"):
    assert re.match(pattern, f"target/{top}/task_embedding"), top
  assert not re.match(pattern, "target/encoder/layers_0/mlp/wi_0/kernel")
  optimizer = model.optimizer_def
  if job == "t5x/finetune.gin":
    assert isinstance(optimizer, adafactor.Adafactor)
    rules = optimizer.hyper_params.logical_factor_rules
    assert all(axis in rules for axis in partitioning.factor_rules())
    assert rules["task_embed"].name == "BATCH" and rules["vocab"].name == "COLUMN"
    return
  assert isinstance(optimizer, t5x_optimizers.MultiOptimizer)
  (traversal,), (sub,) = optimizer.traversals, optimizer.sub_optimizers
  assert isinstance(sub, adafactor.Adafactor)
  selected = traversal.iterate({"hyperprompt": {"task_embedding": 1},
                                "encoder": {"layers_0": {"mlp": {"wo": {"kernel": 2}}}}})
  assert list(selected) == [1]  # only the conditioning parameters are trained


def test_t5x_pretrain_job_file(monkeypatch):
  _parse_t5x_job(monkeypatch, "t5x/pretrain.gin", ["runs/demo_model.gin",
                                                   "conditioning/vanilla.gin"],
                 ["probe.model = %MODEL", "probe.dataset = @train/utils.DatasetConfig()",
                  "probe.config = @utils.RestoreCheckpointConfig()"])
  out = probe()
  assert out["model"].module.config.hyperprompt_variant == "none"
  _offline_dataset(out["dataset"], "train", pack=True)  # t5x's pre-training packs rows
  assert out["config"].path == []  # from scratch
  assert gin.get_bindings(sys.modules["__main__"].train)["infer_eval_dataset_cfg"] is None


@pytest.mark.parametrize("job", ["t5x/eval.gin", "t5x/infer.gin"])
def test_t5x_eval_and_infer_job_files(monkeypatch, job):
  _parse_t5x_job(monkeypatch, job, ["runs/demo_model.gin"],
                 ["probe.model = %MODEL", "probe.dataset = @utils.DatasetConfig()",
                  "probe.config = @utils.RestoreCheckpointConfig()"])
  out = probe()
  assert out["model"].module.config.dropout_rate == 0.0
  _offline_dataset(out["dataset"], "validation", pack=False)  # t5x's default split is 'test'
  restore = out["config"]
  # t5x's infer.gin restores in bfloat16: float32 makes eval and infer decode alike.
  assert (restore.path, restore.mode, restore.dtype) == ("/tmp/ckpt", "specific", "float32")


def test_t5x_job_file_names_do_not_collide_with_t5x(monkeypatch):
  """Each gin/t5x/ name resolves to our file whatever the search-path order."""
  pytest.importorskip("t5x.train", reason="t5x is not installed (not on PyPI)")
  import t5x  # pylint: disable=g-import-not-at-top
  package = os.path.dirname(t5x.__file__)
  ours = [f for f in ALL_FILES if f.startswith("t5x/")]
  assert set(T5X_JOBS) | {"t5x/offline_mixture.gin"} <= set(ours)
  for name in ours:
    # t5x's configs folder as a search path, and gin's lookup of `t5x/<file>` inside the
    # t5x package.
    for theirs in (os.path.join(package, "configs", name),
                   os.path.join(package, os.path.basename(name))):
      assert not os.path.exists(theirs), theirs
  # Our launcher's runs/ files do share t5x's names (they are its t5x-style twins): the
  # gin/t5x/ job files include t5x's by their package path instead.
  assert os.path.exists(os.path.join(package, "configs", "runs", "finetune.gin"))


def test_every_gin_file_is_covered():
  covered = {f for f in ALL_FILES if f.split("/")[0] in
             ("models", "conditioning", "optimizers", "partitioning", "precision", "runs")}
  covered |= {"t5x/model.gin", "t5x/task_conditioned_finetune.gin",
              "t5x/train_conditioning_only.gin"}
  covered |= set(T5X_JOBS) | {"t5x/offline_mixture.gin"}  # with t5x itself (above)
  covered |= {"testing/tiny_offline.gin"}  # trained by test_preflight / test_kill_resume / ...
  covered |= {"testing/tiny_offline_model.gin"}  # its model: test_multihost evaluates with it
  assert set(ALL_FILES) == covered, set(ALL_FILES) - covered
