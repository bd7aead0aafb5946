# `make demo` and `make test` work from a fresh clone: each creates .venv first if it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/activate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -e ".[dev]"
	touch $(BIN)/activate

.PHONY: venv demo test lint bench
venv: $(BIN)/activate

demo: venv
	$(BIN)/python -m lightning_ted.demo

test: venv
	$(BIN)/ruff check lightning_ted tests experiments
	$(BIN)/python -m pytest -q tests

bench: venv
	$(BIN)/python experiments/mnist_ted_vs_full.py
