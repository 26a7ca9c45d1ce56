"""Determinism: the same seed on the same mesh gives bit-identical losses for 20 steps.

(What changes across mesh shapes is measured by `python -m bench.determinism`;
see README, Reliability.)
"""
import numpy as np

import reliability_testlib as rl
from bench import determinism

rl.enable_compilation_cache()


def test_same_seed_same_mesh_is_bit_identical_for_20_steps(tmp_path):
  a = determinism.run_losses(str(tmp_path / "a"), steps=20, seed=0)
  b = determinism.run_losses(str(tmp_path / "b"), steps=20, seed=0)
  losses_a, losses_b = a[0], b[0]
  assert losses_a.shape == (20,) and np.all(np.isfinite(losses_a))
  assert losses_a[-1] < losses_a[0]  # it trains: the comparison is not of constants
  np.testing.assert_array_equal(losses_a, losses_b)
  result = determinism.compare(a, b)
  assert result["bit_identical"], result
  assert result["loss_max_rel_diff"] == 0.0 and result["param_max_elementwise_rel_diff"] == 0.0
