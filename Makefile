# The README's two commands: `make demo` (the main job) and `make test` (what CI runs).
# Both create the virtual environment on first use: the CPU torch wheel first, then the project.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[train,dev]"
	touch $@

demo: install
	$(PY) -m training.demo

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
