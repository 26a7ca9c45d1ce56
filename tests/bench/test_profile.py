"""bench/profile.py's decode profile at tiny shapes: what it measures and reports."""
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench import profile  # pylint: disable=g-import-not-at-top,wrong-import-position
from bench import run  # pylint: disable=g-import-not-at-top,wrong-import-position

TINY = dataclasses.replace(run.QUICK, vocab=128, emb=16, heads=2, head_dim=8, mlp=32,
                           batch=2, input_len=8, target_len=4, steps=2)


def test_decode_profile_compares_every_decode_model_with_vanilla(tmp_path):
  result = profile.profile_decode(TINY, calls=1)
  models = result["models"]
  assert set(models) == {"vanilla", "hyperprompt_global", "exported_prompts", "prefix_tuning"}
  for name, m in models.items():
    assert m["call_s"] > 0 and m["ops_total_s"] > 0 and m["instructions"] > 0, name
    # The grouped ops add up to the op time; layers are summed into one row per op.
    assert abs(sum(m["grouped"].values()) - m["ops_total_s"]) < 1e-9
    assert not any("layers_0" in op for op in m["grouped"]), name
  assert models["vanilla"]["vs_vanilla"]["ops_ratio"] == 1.0
  assert models["vanilla"]["vs_vanilla"]["only_here_s"] == 0.0
  # Global runs its hypernetworks once per call: ops vanilla's program does not have.
  assert models["hyperprompt_global"]["vs_vanilla"]["only_here_s"] > 0
  assert any("hyperprompt" in op for op in models["hyperprompt_global"]["grouped"])
  text = profile.render_decode_markdown(dict(result, load="0.00"), TINY, 5, "cmd", "test")
  for name in models:
    assert f"| {name} |" in text
  assert "## hyperprompt_global: the ops that grew most against vanilla" in text
