# smalldata: every target creates its own virtual environment first.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
NRANKS  ?= 2

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# caches of the tests' tools (pint's, under EXtra) live in the venv: a cache another venv wrote names its files
test: $(STAMP)
	bash tests/services/chromium.sh
	XDG_CACHE_HOME=$(abspath $(VENV))/cache $(VENV)/bin/pytest -q -ra tests

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m smalldata.cli.demo --config configs/producer.yaml --ranks $(NRANKS)

bench: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_data .pytest_cache
