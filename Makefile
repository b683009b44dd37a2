# One-command entry points. Both create .venv and install the package on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test bench docs lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

## The main job: the embedded default run (MProtoNet+KML on synthetic data).
run: $(STAMP)
	$(PY) scripts/train.py

## The whole test suite (CPU, < 10 minutes on 2 cores): one pytest worker per core (at most
## 4), each test file on one worker (its session fixtures are built once per worker).
test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses=4 --dist loadfile tests

bench: $(STAMP)
	$(PY) scripts/bench.py

## The documentation site (site/): the docs/ pages and the API reference from the docstrings.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict

## ruff on the whole tree (configured in pyproject.toml; also a pre-commit hook).
lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache site
