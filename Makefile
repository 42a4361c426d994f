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
SUBMIT := SPARK_LOCAL_IP=$${SPARK_LOCAL_IP:-127.0.0.1} TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/spark-submit --master '$(MASTER)' \
	--driver-java-options '-Dlog4j.configurationFile=$(abspath spark-conf/log4j2.properties)'

.PHONY: venv browser test test-compose demo demo-local sample-data clean best

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Headless Chromium for tests/test_browser.py: Debian's package, installed once (a no-op when a
# chromium, chromium-browser or google-chrome is already on PATH).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@command -v chromium || command -v chromium-browser || command -v google-chrome || { \
		command -v apt-get >/dev/null || { echo "install Chromium with your package manager" >&2; exit 1; }; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
			--no-install-recommends chromium fonts-dejavu-core; }

# kerberos: tests/cluster/test_secure.py runs a private secure cluster. The Docker Compose
# tests (marker `compose`, about 23 min on a quiet 2-core machine, 45 on a busy one, plus the
# engine's setup) and native mode's run of the shipped environment (marker `ship`, about 11
# min) run with `make test-compose` (.ci/run runs it after this, within its time budget), or
# here with COMPOSE=1 (docs/cluster.md#docker-compose-mode).
#
# Two pytest processes at once: one alone took 59 min on our 2-core machines, with a core idle
# about a third of the time while the cluster tests ran. The tests that start clusters and
# spark-submit jobs (much of it waiting on JVMs, YARN and timeouts; their log follows the
# other's) run beside the ones in the suite's own Spark session. Exit status: the worse one.
CLUSTER_TESTS := tests/cluster tests/ingest tests/reliability tests/compose tests/test_yarn_jobs.py \
	tests/test_pyenv.py
TEST_MARKS := $(if $(COMPOSE),,-m 'not compose and not ship')
test: venv browser kerberos
	@mkdir -p out/ci; \
	$(PY) -m pytest $(TEST_MARKS) -p no:cacheprovider $(CLUSTER_TESTS) > out/ci/cluster-tests.log 2>&1 & \
	cluster=$$!; echo "make test: cluster tests run beside these (log: out/ci/cluster-tests.log)"; \
	$(PY) -m pytest $(TEST_MARKS) $(addprefix --ignore=,$(CLUSTER_TESTS)); in_session=$$?; \
	wait $$cluster; clusters=$$?; echo "=== cluster tests (exit $$clusters) ==="; \
	cat out/ci/cluster-tests.log; exit $$(( in_session > clusters ? in_session : clusters ))

# The engine first (docker/engine.sh: needs root where none runs); without one they skip and
# say why.
test-compose: venv
	docker/engine.sh || echo "docker/engine.sh failed: the compose tests will skip"
	$(PY) -m pytest -m 'compose or ship'

sample-data: venv
	test -d demo-data/chest_xray || $(PY) -m pipeline.data.sample_data demo-data/chest_xray

# Both runs write a Spark event log (file://: a cluster's core-site.xml must not make it HDFS)
# for a History Server on 18081 (the cluster's own is on 18080), as the last lines print.
demo-local: EVENT_DIR := $(abspath $(OUT))/spark-events
demo-local: EVENT_LOG = --conf spark.eventLog.enabled=true --conf spark.eventLog.dir=file://$(EVENT_DIR)
demo-local: venv $(if $(DATA),,sample-data)
	mkdir -p $(EVENT_DIR)
	$(SUBMIT) $(EVENT_LOG) jobs/train.py --data $(DEMO_DATA) --model-out $(OUT)/model --weights $(WEIGHTS) \
		--model-name $(MODEL) --features-cache $(OUT)/features
	$(SUBMIT) $(EVENT_LOG) jobs/evaluate.py --data $(DEMO_DATA) --model $(OUT)/model --out $(OUT)/report --split $(SPLIT)
	@echo "report: $(abspath $(OUT))/report/report.html"
	@echo "Spark event logs: $(EVENT_DIR); to browse them at http://localhost:18081 run:"
	@echo "  SPARK_LOCAL_IP=127.0.0.1 SPARK_HISTORY_OPTS='-Dspark.history.fs.logDirectory=file://$(EVENT_DIR) -Dspark.history.ui.port=18081'" \
		"$$($(PY) -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/bin/spark-class org.apache.spark.deploy.history.HistoryServer"

# The main demo: the same jobs on the native (or Docker) cluster, data and outputs on HDFS.
HDFS_DIR ?= hdfs:///xray
CLUSTER_ENV = eval "$$($(PY) -m pipeline.cluster env)"
# SECURE=1: every step authenticates with the ticket `cluster env` names (KRB5CCNAME).
demo: venv $(if $(DATA),,sample-data) cluster-up
	$(CLUSTER_ENV); $(PY) jobs/ingest.py $(DEMO_DATA) $(HDFS_DIR)/chest_xray
	$(CLUSTER_ENV); TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/spark-submit --master yarn jobs/train.py \
		--data $(HDFS_DIR)/chest_xray --model-out $(HDFS_DIR)/model --weights $(WEIGHTS) \
		--model-name $(MODEL) --features-cache $(HDFS_DIR)/features
	$(CLUSTER_ENV); TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/spark-submit --master yarn jobs/evaluate.py \
		--data $(HDFS_DIR)/chest_xray --model $(HDFS_DIR)/model --out $(HDFS_DIR)/report --split $(SPLIT)
	$(CLUSTER_ENV); $(PY) -m pipeline.report.demo_summary $(HDFS_DIR) $(OUT)

clean:
	rm -rf out demo-data .pytest_cache

# `make best DATA=PATH OUT=DIR`: the recipe the cross-validation on train chose (README,
# "Choosing the recipe": G), end to end on a local tree with `local[2]` Spark: fine-tune the
# CNN on PATH/train (the validation part carved from it chooses the epoch and the threshold),
# then grade PATH/test, all in one job, into OUT (metrics.json, report.html, model.keras).
# Arguments are checked before anything runs: one `***` line if they are wrong.
BEST_FLAGS := --arch cnn --epochs 15 --augment scanner --schedule cosine --label-smoothing 0.1
BEST_DATA = $(patsubst file://%,%,$(DATA))
ifeq (best,$(filter best,$(MAKECMDGOALS)))
  ifeq ($(strip $(DATA)),)
    $(error make best needs DATA=PATH: a local chest_xray tree with train and test folders)
  endif
  ifeq ($(origin OUT),file)
    $(error make best needs OUT=DIR: where the model and the test report go)
  endif
  ifneq ($(findstring ://,$(BEST_DATA)),)
    $(error make best runs on this machine: DATA=$(DATA) must be a local path (use the jobs for HDFS))
  endif
  ifeq ($(wildcard $(BEST_DATA)/train/.),)
    $(error make best: $(BEST_DATA) has no train split (expected $(BEST_DATA)/train/NORMAL and PNEUMONIA))
  endif
  ifeq ($(wildcard $(BEST_DATA)/test/.),)
    $(error make best: $(BEST_DATA) has no test split to grade (expected $(BEST_DATA)/test/NORMAL and PNEUMONIA))
  endif
endif
best: venv
	@start=$$(date +%s); \
	$(SUBMIT) jobs/finetune.py --data $(BEST_DATA) --out $(OUT) $(BEST_FLAGS) --split test && \
	echo "make best: $$(( $$(date +%s) - start )) s; report: $(abspath $(OUT))/report.html"

# --- cluster: Hadoop/YARN + Spark History Server (pipeline/cluster, docs/cluster.md) -------
# Native Java processes on loopback; XRAY_CLUSTER=docker for Docker Compose (docker/), after
# `sudo docker/engine.sh` on a machine without an engine. SECURE=1: native, with a KDC and
# Kerberos (docs/security.md). `down`, `status` and the jobs follow the mode `up` recorded.
# KEEP_DATA=1: cluster-down keeps the Docker cluster's volumes.
.PHONY: cluster-up cluster-down cluster-status docker-engine kerberos

SECURE ?=
SECURE_ON := $(filter 1 yes true,$(SECURE))
KERBEROS_STAMP := $(VENV)/.kerberos

# MIT Kerberos' client tools (kinit, klist, ktutil) and headers, then requests-kerberos, which
# builds against them. Only for SECURE=1.
kerberos: $(KERBEROS_STAMP)

$(KERBEROS_STAMP): $(STAMP)
	command -v kinit >/dev/null && command -v ktutil >/dev/null && command -v krb5-config >/dev/null || \
		{ $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q krb5-user libkrb5-dev; }
	$(PY) -m pip install -q -e '.[dev,kerberos]'
	touch $@

cluster-up: venv $(if $(SECURE_ON),kerberos)
	$(PY) -m pipeline.cluster up $(if $(SECURE_ON),--secure)

cluster-down: venv
	$(PY) -m pipeline.cluster down $(if $(KEEP_DATA),--keep-data)

cluster-status: venv
	$(PY) -m pipeline.cluster status

docker-engine:
	docker/engine.sh
# --- end cluster ------------------------------------------------------------------------------
