# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HASH   := $(shell cksum < pyproject.toml | cut -d' ' -f1)
# Serving needs the package alone; the test extras (pytest, mypy, moto, boto3,
# matplotlib, … ~680 MB) are installed only for the targets that use them.
RUN_STAMP  := $(VENV)/.installed-run-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)

.PHONY: run cluster test lint typecheck unit bench compat soak soak-memory chaos clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	rm -f $(VENV)/.installed-run-* && touch $@

# The test extras include everything serving needs: they satisfy `run` too.
$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-run-* $(VENV)/.installed-test-* && touch $@ $(RUN_STAMP)

## run: serve ./data (Redis protocol, HTTP, KV text); Ctrl-C stops it. More flags: make run ARGS='--port 7479'
ARGS ?=
run: $(RUN_STAMP)
	$(VENV)/bin/amber serve --data ./data $(ARGS)

## cluster: a local 3-node Raft cluster (RESP 7400/7410/7420, HTTP +1); Ctrl-C stops it
cluster: $(RUN_STAMP)
	$(VENV)/bin/amber cluster up --nodes 3 --data ./cluster-data

## test: lint, type-check, then the test suite (under 15 minutes)
test: lint typecheck unit

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(TEST_STAMP)
	$(VENV)/bin/mypy

unit: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not slow"

## bench: benchmarks, printed as tables
bench: $(TEST_STAMP)
	$(PY) bench/embedded.py
	$(PY) bench/watch.py
	$(PY) bench/redis_compare.py
	$(PY) bench/resp_path.py
	$(PY) bench/http_load.py
	$(PY) bench/backends.py
	$(PY) bench/cluster.py
	$(PY) bench/eventual.py

## compat: redis-py 8.1.0's own tests for the commands Amber claims, vs redis-server (a gate)
compat: $(TEST_STAMP)
	$(PY) bench/redis_py_compat.py

## soak: the long runs (500 crash cycles, …)
soak: $(TEST_STAMP)
	AMBER_CRASH_CYCLES=500 $(PY) -m pytest -q -m slow

## soak-memory: 1M overwrites of one key on a real server, RSS every 100k (flat once the history is full; 15 min at most)
soak-memory: $(TEST_STAMP)
	$(PY) tests/adversarial/soak_memory.py --writes 1000000 --every 100000 --max-seconds 900

## chaos: randomized fault-injection rounds for CHAOS_MINUTES (15); failing seeds kept in chaos-runs/
CHAOS_MINUTES ?= 15
chaos: $(TEST_STAMP)
	$(PY) -m amber.chaos.soak --minutes $(CHAOS_MINUTES) --out chaos-runs

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
