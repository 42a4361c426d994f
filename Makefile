# Entry points. `make demo` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.PHONY: venv test demo clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: venv
	$(PY) -m pytest

clean:
	rm -rf out demo-data .pytest_cache

# --- cluster: Hadoop/YARN + Spark History Server (pipeline/cluster, docs/cluster.md) -------
# Docker Compose when a Docker engine answers, else native Java processes on loopback.
.PHONY: cluster-up cluster-down cluster-status

cluster-up: venv
	$(PY) -m pipeline.cluster up

cluster-down: venv
	$(PY) -m pipeline.cluster down

cluster-status: venv
	$(PY) -m pipeline.cluster status
# --- end cluster ------------------------------------------------------------------------------
