# smalldata: every target creates its own virtual environment first.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
NRANKS  ?= 2
TESTS   ?= tests

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# caches of the tests' tools (pint's, under EXtra) live in the venv: a cache another venv wrote names its files.
# The SLURM tests run against a single-node SLURM started here (tests/services/slurm.sh) and stopped
# when the tests end, whatever their result.
test: $(STAMP)
	bash tests/services/chromium.sh
	@dir=$$(mktemp -d /tmp/smalldata-slurm.XXXXXX); \
	trap 'bash tests/services/slurm.sh stop "$$dir"' EXIT; \
	bash tests/services/slurm.sh start "$$dir" > /dev/null; \
	if [ -f "$$dir/slurm.conf" ]; then export SLURM_CONF="$$dir/slurm.conf"; fi; \
	SMD_SLURM_DIR="$$dir" XDG_CACHE_HOME=$(abspath $(VENV))/cache $(VENV)/bin/pytest -q -ra $(TESTS)

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m smalldata.cli.demo --config configs/producer.yaml --ranks $(NRANKS)

bench: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_data .pytest_cache
