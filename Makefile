# Entry points. `make demo` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

# Demo knobs: `make demo DATA=/path/to/chest_xray` runs the same on a real tree.
DATA ?=
WEIGHTS ?= none
MODEL ?= InceptionV3
SPLIT ?= test
OUT ?= out/demo
MASTER ?= local[2]
DEMO_DATA := $(if $(DATA),$(DATA),demo-data/chest_xray)
SUBMIT := SPARK_LOCAL_IP=$${SPARK_LOCAL_IP:-127.0.0.1} TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/spark-submit --master '$(MASTER)'

.PHONY: venv test demo demo-local sample-data clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: venv
	$(PY) -m pytest

sample-data: venv
	test -d demo-data/chest_xray || $(PY) -m pipeline.sample_data demo-data/chest_xray

demo-local: venv $(if $(DATA),,sample-data)
	$(SUBMIT) jobs/train.py --data $(DEMO_DATA) --model-out $(OUT)/model --weights $(WEIGHTS) \
		--model-name $(MODEL) --features-cache $(OUT)/features
	$(SUBMIT) jobs/evaluate.py --data $(DEMO_DATA) --model $(OUT)/model --out $(OUT)/report --split $(SPLIT)
	@echo "report: $(abspath $(OUT))/report/report.html"

demo: demo-local

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
