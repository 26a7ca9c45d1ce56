"""`python -m hyperprompt_jax.convert`: HF <-> t5x conversions, outputs, and failure safety."""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hyperprompt_jax import convert  # pylint: disable=g-import-not-at-top
from hyperprompt_jax.formats import hf
from hyperprompt_jax.formats import restore as restore_lib
from hyperprompt_jax.formats import t5x as t5x_lib
from hyperprompt_jax.formats import tree as tree_lib
from hyperprompt_jax import params as params_lib

import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _assert_same_state_dict(a, b):
  a, b = a.state_dict(), b.state_dict()
  assert set(a) == set(b)
  for key in a:
    assert torch.equal(a[key], b[key]), key


def test_hf_to_t5x_writes_a_restorable_orbax_checkpoint_gin_and_config(tmp_path, capsys):
  hf_dir, out = str(tmp_path / "hf"), str(tmp_path / "out")
  helpers.hf_t5(hf_dir, "t5_1_1")
  assert convert.main(["--from", "hf", "--input", hf_dir, "--output", out]) == 0
  ckpt = os.path.join(out, "checkpoint_0")
  assert f"INITIAL_CHECKPOINT_PATH={ckpt}" in capsys.readouterr().out
  assert os.path.isfile(os.path.join(ckpt, "state", "_METADATA"))
  assert sorted(os.listdir(tmp_path)) == ["hf", "out"]  # no temporary folders left
  assert sorted(os.listdir(out)) == ["checkpoint_0", "model.gin", "model_config.json"]

  hf_config, hf_params = hf.load_hf_checkpoint(hf_dir)
  config = tree_lib.read_config(os.path.join(out, "model_config.json"))
  assert tree_lib.architecture_mismatches(config, hf_config) == []
  # t5x names under `target`, values exactly the HF tensors (transposed).
  stored = restore_lib.load_params(ckpt)
  assert "logits_dense" in stored["decoder"] and "wi_1" in stored["encoder"]["layers_0"]["mlp"]
  flat_hf = tree_lib.flatten(hf_params)
  for key, value in tree_lib.flatten(stored).items():
    np.testing.assert_array_equal(value, flat_hf[key], err_msg=key)

  # Restoring into a HyperPrompt model keeps the backbone and adds fresh prompts.
  hp_config = config.replace(hyperprompt_variant="share", num_tasks=2,
                             task_sentinel_id=helpers.HF_VOCAB - 1)
  restored = tree_lib.flatten(restore_lib.restore_params(ckpt, hp_config))
  assert any(k.startswith("hyperprompt/") for k in restored)
  for key, value in flat_hf.items():
    np.testing.assert_array_equal(restored[key], value, err_msg=key)

  # The gin file gives the same architecture through our gin files.
  gin_config = params_lib.config_from_gin([os.path.join(out, "model.gin")])
  assert tree_lib.architecture_mismatches(gin_config, config) == []
  assert f"INITIAL_CHECKPOINT_PATH=\"'{ckpt}'\"" in open(os.path.join(out, "model.gin")).read()


def test_t5x_to_hf_exports_what_transformers_loads(tmp_path, capsys):
  # A fine-tuned-style checkpoint of ours: backbone from HF plus HyperPrompt parameters.
  original = helpers.hf_t5(str(tmp_path / "hf"), "t5_1_1", seed=5)
  config, _ = hf.load_hf_checkpoint(str(tmp_path / "hf"))
  hp_config = config.replace(hyperprompt_variant="share", num_tasks=2,
                             task_sentinel_id=helpers.HF_VOCAB - 1)
  params = restore_lib.restore_params(str(tmp_path / "hf"), hp_config)
  model_dir = str(tmp_path / "model")
  ckpt = t5x_lib.save_orbax_checkpoint(model_dir, params, step=7)
  tree_lib.write_config(os.path.join(model_dir, tree_lib.CONFIG_FILENAME), hp_config)

  out = str(tmp_path / "export")
  assert convert.main(["--from", "t5x", "--to", "hf", "--input", ckpt, "--output", out]) == 0
  assert "dropped" in capsys.readouterr().out
  _assert_same_state_dict(original, transformers.T5ForConditionalGeneration.from_pretrained(out))


def test_legacy_t5x_without_config_infers_the_architecture(tmp_path, capsys):
  original = helpers.hf_t5(str(tmp_path / "hf"), "t5_1_0", seed=6,
                           relative_attention_max_distance=128)
  _, params = hf.load_hf_checkpoint(str(tmp_path / "hf"))
  legacy = t5x_lib.save_legacy_checkpoint(str(tmp_path / "legacy"), params)

  orbax_out = str(tmp_path / "orbax")
  assert convert.main(["--from", "t5x", "--input", legacy, "--output", orbax_out]) == 0
  assert "relative_attention_max_distance=128 (assumed" in capsys.readouterr().out
  for key, value in tree_lib.flatten(restore_lib.load_params(orbax_out)).items():
    np.testing.assert_array_equal(value, tree_lib.flatten(params)[key], err_msg=key)

  hf_out = str(tmp_path / "hf_out")
  assert convert.main(["--from", "t5x", "--to", "hf", "--input", legacy, "--output", hf_out]) == 0
  _assert_same_state_dict(original,
                          transformers.T5ForConditionalGeneration.from_pretrained(hf_out))


def test_failed_conversion_never_touches_the_output(tmp_path, capsys):
  hf_dir, out = tmp_path / "hf", tmp_path / "out"
  helpers.hf_t5(str(hf_dir), "t5_1_0")
  out.mkdir()
  (out / "keep.txt").write_text("previous run")
  args = ["--from", "hf", "--input", str(hf_dir), "--output", str(out)]

  assert convert.main(args) == 2
  err = capsys.readouterr().err
  assert "not empty" in err and "--overwrite" in err

  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / "config.json").write_text((hf_dir / "config.json").read_text())
  raw = (hf_dir / "model.safetensors").read_bytes()
  (broken / "model.safetensors").write_bytes(raw[:len(raw) - 100])
  assert convert.main(["--from", "hf", "--input", str(broken), "--output", str(out),
                       "--overwrite"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "model.safetensors" in err and "truncated" in err
  assert os.listdir(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "previous run"
  assert sorted(os.listdir(tmp_path)) == ["broken", "hf", "out"]

  assert convert.main(args + ["--overwrite"]) == 0
  assert "keep.txt" not in os.listdir(out) and (out / "checkpoint_0").is_dir()
  assert sorted(os.listdir(tmp_path)) == ["broken", "hf", "out"]

  # The module entry point: one error line, exit status 2, nothing created.
  missing_out = tmp_path / "never"
  proc = subprocess.run(
      [sys.executable, "-m", "hyperprompt_jax.convert", "--from", "hf", "--input",
       str(tmp_path / "missing"), "--output", str(missing_out)],
      cwd=REPO, capture_output=True, text=True, check=False,
      env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2, proc.stderr
  assert "error: Hugging Face checkpoint folder does not exist" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not missing_out.exists()
