# `make demo` and `make test` work from a fresh clone: each creates .venv first if it is missing.
# The demo installs only the core package; the tests install the dev extra (pytest, ruff, notebooks, nlp).
# Both install the versions pinned in requirements/lock.txt, so a fresh clone tests what was tested;
# `make drift` installs the newest releases in .venv-latest and reports what changed and what broke.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PY) -m venv $(VENV)

LOCK := requirements/lock.txt

$(VENV)/.core: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -c $(LOCK) -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -c $(LOCK) -e ".[dev]"
	touch $@ $(VENV)/.core

.PHONY: venv demo test bench lock drift
venv: $(VENV)/.dev

demo: $(VENV)/.core
	$(BIN)/python -m lightning_ted.demo

test: $(VENV)/.dev
	$(BIN)/ruff check lightning_ted tests experiments tools
	$(BIN)/python -m pytest -q tests

bench: $(VENV)/.dev
	$(BIN)/python experiments/mnist_ted_vs_full.py

# Rewrite the lock from the test venv (after `make test` passed with newer versions installed there).
lock: $(VENV)/.dev
	python3 tools/lock.py write $(BIN)/python $(LOCK)

# The newest releases the extras admit, in a separate venv: which pins moved, then the whole suite on them.
drift:
	test -x .venv-latest/bin/python || $(PY) -m venv .venv-latest
	.venv-latest/bin/pip install --upgrade --upgrade-strategy eager -e ".[dev]"
	python3 tools/lock.py compare .venv-latest/bin/python $(LOCK)
	WANDB_MODE=offline .venv-latest/bin/python -m pytest -q tests
