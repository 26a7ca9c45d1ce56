# hyperprompt-jax: every target works in the virtual environment at $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: install test demo bench quality adaptation clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q tests

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

# Offline quality comparison of every method (3 seeds) -> bench/quality.{md,json} (~1 h on 2 cores).
quality: install
	$(PY) -m bench.quality

# Add a held-out task to a trained HyperPrompt-Global model -> bench/adaptation.{md,json}.
adaptation: install
	$(PY) -m bench.adaptation

clean:
	rm -rf $(VENV) build *.egg-info
