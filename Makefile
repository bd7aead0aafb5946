# `make demo` and `make test` work from a fresh clone: each creates .venv first if it is missing.
# The demo installs only the core package; the tests install the dev extra (pytest, ruff, notebooks, nlp).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[dev]"
	touch $@ $(VENV)/.core

.PHONY: venv demo test bench
venv: $(VENV)/.dev

demo: $(VENV)/.core
	$(BIN)/python -m lightning_ted.demo

test: $(VENV)/.dev
	$(BIN)/ruff check lightning_ted tests experiments
	$(BIN)/python -m pytest -q tests

bench: $(VENV)/.dev
	$(BIN)/python experiments/mnist_ted_vs_full.py
