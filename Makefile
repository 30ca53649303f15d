# The README's two commands: `make demo` (the main job) and `make test` (what CI runs).
# Both create the virtual environment on first use: the CPU torch wheel first, then the project, every
# version pinned by constraints.txt so a release upstream cannot change the demo's numbers or break the suite.
# The canary (tests/test_transformers_releases.py) tracks the newest transformers; `make lock` moves the pins.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
LOCK ?= constraints.txt
# torchao lives beside the venv, not in it: see the `quantization` extra in pyproject.toml.
TORCHAO_SITE = $(VENV)/torchao-site

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo demo-images demo-translation test lint install compat works-with lock

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -c $(LOCK) -e ".[train,dev,serving,ecosystem]"
	$(PY) -m pip install -q -c $(LOCK) --no-deps --upgrade --target $(TORCHAO_SITE) torchao
	touch $@

demo: install
	$(PY) -m training.demo

# The image path on Fashion-MNIST, fetched from Debian (apt-get download) into ~/.cache/custom_transformer/debian
demo-images: install
	$(PY) -m training.image_demo

# The translation path on the Bible es->en (Debian sword-text-sparv, sword-text-web; public domain)
demo-translation: install
	$(PY) -m training.translation_demo

test: install
	$(PY) tests/helpers/transformers_test_suite.py
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The checkpoint contract under the newest patch of every transformers 5.x minor (release sites, ~220 MB each)
compat: install
	$(PY) tests/helpers/compat_matrix.py

# The README's "Works with" rows under the newest patch of every transformers 5.x minor: which release lacks what
works-with: install
	CT_WORKS_WITH_EVERY_RELEASE=1 $(PY) -m pytest tests/test_works_with.py -rfE --tb=line

# Re-pin to the newest releases on the index: a fresh venv, the whole suite on it, and only then a new lock.
lock:
	rm -rf $(VENV)-lock && $(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install -q --upgrade pip
	$(VENV)-lock/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(VENV)-lock/bin/python -m pip install -q -e ".[train,dev,serving,ecosystem]"
	$(VENV)-lock/bin/python -m pip install -q --no-deps --target $(VENV)-lock/torchao-site torchao
	{ echo "# Pinned by 'make lock' on $$(date -u +%F), after the suite passed on exactly these versions."; \
	  { $(VENV)-lock/bin/python -m pip freeze --exclude-editable; \
	    $(VENV)-lock/bin/python -m pip freeze --path $(VENV)-lock/torchao-site; } | sed 's/+cpu$$//' | LC_ALL=C sort -f; } > $(LOCK).new
	$(VENV)-lock/bin/python tests/helpers/transformers_test_suite.py
	CT_LOCK=$(LOCK).new $(VENV)-lock/bin/python -m pytest
	mv $(LOCK).new $(LOCK)
	rm -rf $(VENV)-lock
