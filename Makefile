# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run cluster test lint typecheck unit bench compat soak chaos clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

## run: serve ./data (Redis protocol, HTTP, KV text); Ctrl-C stops it
run: $(STAMP)
	$(VENV)/bin/amber serve --data ./data

## cluster: a local 3-node Raft cluster (RESP 7400/7410/7420, HTTP +1); Ctrl-C stops it
cluster: $(STAMP)
	$(VENV)/bin/amber cluster up --nodes 3 --data ./cluster-data

## test: lint, type-check, then the test suite (under 15 minutes)
test: lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

## bench: benchmarks, printed as tables
bench: $(STAMP)
	$(PY) bench/embedded.py
	$(PY) bench/watch.py
	$(PY) bench/redis_compare.py
	$(PY) bench/resp_path.py
	$(PY) bench/http_load.py
	$(PY) bench/backends.py
	$(PY) bench/cluster.py

## compat: redis-py 8.1.0's own tests for the commands Amber claims, vs redis-server (a gate)
compat: $(STAMP)
	$(PY) bench/redis_py_compat.py

## soak: the long runs (500 crash cycles, …)
soak: $(STAMP)
	AMBER_CRASH_CYCLES=500 $(PY) -m pytest -q -m slow

## chaos: randomized fault-injection rounds for CHAOS_MINUTES (15); failing seeds kept in chaos-runs/
CHAOS_MINUTES ?= 15
chaos: $(STAMP)
	$(PY) -m amber.chaos.soak --minutes $(CHAOS_MINUTES) --out chaos-runs

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
