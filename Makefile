# `make demo` and `make test` work from a fresh clone: each creates .venv first if it is missing.
# The demo installs only the core package; the tests install the dev extra (pytest, ruff, notebooks, nlp, mkdocs).
# The suite runs one test file per core (pytest-xdist, --dist loadfile keeps a file's module fixtures in one
# process) with one torch thread each, so the cores are not oversubscribed.
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

.PHONY: venv demo test docs bench lock drift
venv: $(VENV)/.dev

demo: $(VENV)/.core
	$(BIN)/python -m lightning_ted.demo

test: $(VENV)/.dev
	$(BIN)/ruff check lightning_ted tests experiments tools
	$(BIN)/mkdocs build --strict --site-dir site
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto --dist loadfile tests

# The documentation site (mkdocs.yml, docs/; the API pages from the docstrings) into site/; warnings are errors,
# so a broken link or a docstring the reference cannot render fails it (make test builds it too).
docs: $(VENV)/.dev
	$(BIN)/mkdocs build --strict --site-dir site

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
