# hyperprompt-jax: every target works in the virtual environment at $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: install test demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q tests

demo: install
	$(PY) -m hyperprompt_jax.smoke

bench: install
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info
