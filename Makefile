# hyperprompt-jax: every target works in the virtual environment at $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: install test demo bench profile precision scale quality offline_quality adaptation clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q --durations=25 tests

# A fresh small HyperPrompt-Global run on the offline mixture (CPU, a few minutes):
# checkpoints, TensorBoard summaries, metrics.png and the per-task table in $(DEMO_DIR).
DEMO_DIR ?= /tmp/hyperprompt_demo
demo: install
	@if [ -e "$(DEMO_DIR)" ] && [ ! -e "$(DEMO_DIR)/task_table.json" ]; then \
	  echo "$(DEMO_DIR) exists and is not a demo run: set DEMO_DIR=..."; exit 1; fi
	rm -rf "$(DEMO_DIR)"
	$(PY) -m hyperprompt_jax.train --gin_file=runs/demo.gin --gin.MODEL_DIR=\"$(DEMO_DIR)\"

bench: install
	$(PY) -m bench.run
	$(PY) -m bench.packing

# Scan over layers and remat (issue 14): compile time, XLA memory estimate, step time
# -> bench/scale.{md,json} (~15 min on the shared 2-core machine).
scale: install
	$(PY) -m bench.scale

# Op-level profiles: the train step (forward / backward / optimizer) -> bench/profile.md,
# greedy decoding of the decode models against vanilla -> bench/profile_decode.md.
profile: install
	$(PY) -m bench.profile
	$(PY) -m bench.profile --decode

# 200 steps on the offline mixture, float32 vs gin/precision/bf16.gin -> bench/precision.md.
precision: install
	$(PY) -m bench.precision

# Real-data quality (docs/wordnet.md): WordNet 3.0 (installed with apt when missing and run
# as root, else the error says how to get it), the span-corruption pretraining of the small
# backbone (resumed if interrupted), then every method fine-tuned from it, 3 seeds, both
# regimes -> bench/wordnet_quality.{md,json} and bench/wordnet_attention.{md,json,png}.
WORDNET_BACKBONE_DIR ?= /tmp/hyperprompt_wordnet_backbone
WORDNET_PRETRAIN_STEPS ?= 3000
QUALITY_ARGS ?=
quality: install
	$(PY) -m hyperprompt_tasks.wordnet_data
	test -e "$(WORDNET_BACKBONE_DIR)/checkpoint_$(WORDNET_PRETRAIN_STEPS)" || \
	  $(PY) -m hyperprompt_jax.train --gin_file=models/t5_1_1/base.gin \
	    --gin_file=conditioning/vanilla.gin --gin_file=runs/wordnet_pretrain.gin \
	    --gin.MODEL_DIR=\"$(WORDNET_BACKBONE_DIR)\" --gin.TRAIN_STEPS=$(WORDNET_PRETRAIN_STEPS)
	$(PY) -m bench.wordnet_quality \
	  --checkpoint=$(WORDNET_BACKBONE_DIR)/checkpoint_$(WORDNET_PRETRAIN_STEPS) $(QUALITY_ARGS)

# The synthetic offline comparison (from scratch, hyperprompt_offline_v1, 3 seeds)
# -> bench/quality.{md,json} (~1 h on 2 cores).
offline_quality: install
	$(PY) -m bench.quality

# Add a held-out task to a trained HyperPrompt-Global model -> bench/adaptation.{md,json}.
adaptation: install
	$(PY) -m bench.adaptation

clean:
	rm -rf $(VENV) build *.egg-info
