"""`make bench`'s harness (bench/run.py) at tiny shapes: what it times and what it writes."""
import dataclasses
import os
import sys

import jax
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench import run  # pylint: disable=g-import-not-at-top,wrong-import-position
from hyperprompt_jax import conditioning  # pylint: disable=g-import-not-at-top

TINY = dataclasses.replace(run.QUICK, vocab=128, emb=16, heads=2, head_dim=8, mlp=32,
                           batch=2, input_len=8, target_len=4, steps=2)


def test_every_conditioning_method_is_benchmarked():
  configs = run.methods()
  for method in conditioning.param_prefixes():
    assert any(m == method or m.startswith(method + "_") for m in configs), method
  for name, overrides in configs.items():
    overrides = {k: v for k, v in overrides.items() if not k.startswith("_")}
    run.make_config(TINY, **overrides)  # valid T5Config


def test_frozen_backbone_step_does_less_work_and_trains_only_the_prompts():
  cfg = run.make_config(TINY, hyperprompt_variant="global", **run.HYPERPROMPT)
  full = run.prepare_train_step(cfg, TINY)
  frozen = run.prepare_train_step(cfg, TINY, trainable="hyperprompt")
  assert full["params"] == frozen["params"]  # the same model, counted whole
  assert frozen["flops"] < full["flops"]  # no backbone weight gradients
  losses = [float(frozen["run"]()) for _ in range(3)]
  assert all(l == l for l in losses) and losses[-1] < losses[0]  # the prompts do learn
  with pytest.raises(KeyError):
    run.prepare_train_step(cfg, TINY, trainable="no_such_collection")


def test_markdown_reports_ratios_against_the_same_run():
  cfg = run.make_config(TINY, hyperprompt_variant="none")
  prepared = {"vanilla": run.prepare_train_step(cfg, TINY),
              "hyperprompt_global": run.prepare_train_step(
                  run.make_config(TINY, hyperprompt_variant="global", **run.HYPERPROMPT), TINY)}
  step_s = run.time_interleaved({n: p["run"] for n, p in prepared.items()}, TINY.steps)
  results = {"shapes": dataclasses.asdict(TINY), "threads": 2, "machine": "test",
             "matmul_peak_gflops": 1.0, "methods": {}, "decode": {}, "decode_repeats": 1}
  for name, p in prepared.items():
    results["methods"][name] = dict(
        {k: v for k, v in p.items() if k != "run"}, step_s=step_s[name], added_pct=0.0,
        train_ratio_vs_vanilla=step_s[name] / step_s["vanilla"],
        mfu=p["flops"] / step_s[name] / 1e9)
  results["decode"] = run.bench_decode(TINY, repeats=1)
  text = run.render_markdown(results, "make bench")
  assert "Command: `make bench`" in text
  assert "| vanilla |" in text and "| hyperprompt_global |" in text
  assert {"vanilla", "hyperprompt_global", "exported_prompts"} <= set(results["decode"])
  assert all(r["tokens_per_s"] > 0 for r in results["decode"].values())
  assert jax.numpy.isfinite(results["methods"]["hyperprompt_global"]["train_ratio_vs_vanilla"])


def test_phases_report_their_page_faults_next_to_hf():
  phases = run.phase_times(run.make_config(TINY, hyperprompt_variant="none"), TINY)
  for phase in ("forward", "forward_backward", "optimizer"):
    assert phases[f"{phase}_s"] > 0 and phases[f"{phase}_page_fault_mib"] >= 0
  hf = {"train_step_s": 1.0, "forward_s": 0.5, "forward_backward_s": 1.5, "optimizer_s": 0.2,
        "matmul_peak_gflops": 1.5, "transformers": "x", "torch": "y"}
  results = {"shapes": dataclasses.asdict(TINY), "threads": 2, "machine": "test",
             "matmul_peak_gflops": 1.0, "decode": {"vanilla": {"tokens_per_s": 1.0}},
             "decode_repeats": 1,
             "methods": {"vanilla": {"step_s": 1.0, "train_ratio_vs_vanilla": 1.0, "params": 1,
                                     "added_pct": 0.0, "flops": 1.0, "mfu": 0.1}},
             "phases": phases, "hf": hf}
  text = run.render_markdown(results, "make bench")
  ratio = phases["forward_backward_s"] / phases["forward_s"]
  assert f"(forward + backward) / forward: ours {ratio:.2f}, HF 3.00" in text
  assert "minor page faults" in text
  assert "XLA:CPU 1.0, PyTorch 1.5 GFLOP/s; XLA / PyTorch time per matmul 1.50." in text
