"""bench.wordnet_quality's statistics and tables on hand-made runs (no training here)."""
import numpy as np
import pytest
import scipy.stats

from bench import wordnet_quality as wq

TASKS = ("wordnet_wic_v1", "wordnet_pos_v1")


def _run(method, regime, seed, wic, pos, init=1.0):
  return {"method": method, "regime": regime, "seed": seed, "best": {TASKS[0]: wic, TASKS[1]: pos},
          "average": (wic + pos) / 2, "init_validation_loss": init if regime == "all" else None,
          "params": {"total": 10, "conditioning": 0 if method == "vanilla" else 2},
          "seconds": 1.0}


def test_t_interval_is_scipys_t_interval_of_the_mean():
  values = [1.0, 2.5, 4.0]
  got = wq.t_interval(values)
  low, high = scipy.stats.t.interval(0.95, 2, loc=2.5, scale=np.std(values, ddof=1) / np.sqrt(3))
  assert got["mean"] == pytest.approx(2.5) and got["std"] == pytest.approx(1.5)
  assert (got["low"], got["high"]) == (pytest.approx(low), pytest.approx(high))
  assert wq.t_interval([3.0, 3.0])["low"] == 3.0  # no spread: a point
  assert np.isnan(wq.t_interval([1.0])["low"])


def test_paired_differences_are_per_seed_against_vanilla_all_parameters():
  runs = [_run("vanilla", "all", s, 50 + s, 30 + 2 * s, init=2.0) for s in range(3)]
  runs += [_run("hyperprompt_global", "all", s, 52 + s, 30 + 2 * s + d, init=2.04)
           for s, d in zip(range(3), (1.0, 3.0, 2.0))]
  runs += [_run("hyperprompt_global", "frozen", s, 40.0, 20.0) for s in range(3)]
  summary = wq.summarize(runs)
  hp = summary["all/hyperprompt_global"]
  # Differences per seed: wic +2 every seed; pos +1, +3, +2; average +1.5, +2.5, +2.0.
  assert hp["paired_vs_vanilla"][TASKS[0]]["mean"] == pytest.approx(2.0)
  assert hp["paired_vs_vanilla"][TASKS[0]]["std"] == pytest.approx(0.0)
  avg = hp["paired_vs_vanilla"]["average"]
  assert avg["mean"] == pytest.approx(2.0) and avg["std"] == pytest.approx(0.5)
  assert avg["low"] == pytest.approx(2.0 - scipy.stats.t.ppf(0.975, 2) * 0.5 / np.sqrt(3))
  frozen = summary["frozen/hyperprompt_global"]
  assert frozen["paired_vs_vanilla"]["average"]["mean"] == pytest.approx(
      30.0 - np.mean([40 + 1.5 * s for s in range(3)]))
  assert frozen["init_validation_loss"] is None
  assert "average" not in summary["all/vanilla"]["paired_vs_vanilla"]
  table = "\n".join(wq.init_table(summary))
  assert "| backbone alone (vanilla) | 2.0000 |" in table and "+2.00%" in table
