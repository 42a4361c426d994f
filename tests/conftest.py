"""Shared fixtures: one real local Spark session for the whole test run."""
from __future__ import annotations

import os
import sys

import pytest

from tests.budget import require

# The native cluster (HDFS + YARN + History Server) for every test marked `cluster`: started
# on first use by the same code as `make cluster-up`, reused when already running.
from tests.cluster_fixtures import JVM_OPTS, cli, cluster, make_isolated_env, spark_env

# The suite's own JVM must not inherit a cluster's client configuration from the shell (after
# `eval "$(python -m pipeline.cluster env)"`): its core-site.xml would make every plain local
# path mean HDFS. Tests that submit to the cluster pass that configuration explicitly.
for _var in ("HADOOP_CONF_DIR", "YARN_CONF_DIR", "SPARK_CONF_DIR"):
    os.environ.pop(_var, None)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# One local session serves every in-process job of the suite, and each job's listing stays
# persisted in it: 2 GB of driver heap, not Spark's default 1 GB (a CI run ran out of heap late
# in the suite). A job in production runs one listing per session.
os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--driver-memory 2g pyspark-shell")
# Every Spark JVM the suite starts works on a few dozen films and most live for a minute: the
# C1 compiler alone and the serial collector (the cluster daemons' options) spend far less CPU
# warming up on 2 cores (a local train job on the sample tree: 56 s of CPU instead of 95 s).
# spark-submit's launcher puts SPARK_SUBMIT_OPTS on each driver's command line, the suite's own
# session's too; YARN executors get them from tests.cluster_fixtures.YARN_JVM_CONF. Jobs run
# by users keep Java's defaults: C2 compiles the JVM's vectorised BLAS that fits the classifier.
os.environ.setdefault("SPARK_SUBMIT_OPTS", JVM_OPTS)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``budget(seconds)`` runs only if it can end before CI's deadline; this
    runs before its fixtures start anything."""
    marker = item.get_closest_marker("budget")
    if marker:
        require(marker.args[0], item.nodeid)


@pytest.fixture(scope="session")
def spark():
    from pipeline.runtime.session import get_session

    session = get_session("xray-tests", master="local[2]")
    yield session
    session.stop()


__all__ = ["cli", "cluster", "make_isolated_env", "spark_env"]  # fixtures, used by name
