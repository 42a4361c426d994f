"""Wrong arguments and configuration: the job exits 2 with one clear ``error:`` line and no
stack trace; ``--verbose`` brings the trace back.

Most cases run ``run_job`` in this process (the entry point's own code, on the shared local
session); a few run ``spark-submit`` as a user does, which also shows what Spark itself prints.
"""
from __future__ import annotations

import contextlib
import shutil
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs import evaluate as evaluate_job
from jobs import train as train_job
from pipeline.cluster import conf
from tests.cli import unused_port
from tests.reliability.runner import assert_one_error_line, run_in_process, submit
from tests.trees import valid_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return valid_tree(tmp_path_factory.mktemp("args") / "chest_xray", splits=("train", "test"))


@pytest.fixture(scope="module")
def foreign_weights(tmp_path_factory) -> Path:
    """A real Keras weights file, of a two-layer network rather than InceptionV3."""
    import keras

    path = tmp_path_factory.mktemp("weights") / "dense.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save_weights(path)
    return path


def _train(tree: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(tree), "--model-out", str(out / "model"), "--weights", "none", *extra]


def test_missing_data_uri(spark, tmp_path):
    missing = tmp_path / "nowhere"
    code, err, _ = run_in_process(train_job, _train(missing, tmp_path))
    assert_one_error_line(code, err, f"data URI {missing} does not exist")


@pytest.mark.parametrize("uri,reason", [
    ("hdfs://bad host/chest_xray", "Incomplete HDFS URI"),
    ("foo://host/chest_xray", 'No FileSystem for scheme "foo"'),
])
def test_malformed_uri(spark, tmp_path, uri, reason):
    code, err, _ = run_in_process(train_job, ["--data", uri, "--model-out", str(tmp_path / "m")])
    assert_one_error_line(code, err, uri, reason)


@pytest.mark.parametrize("what", ["folder", "file"])
def test_model_path_that_is_not_a_model(spark, tree, tmp_path, what):
    model = tree if what == "folder" else next(tree.rglob("*.jpeg"))
    code, err, _ = run_in_process(evaluate_job, ["--data", str(tree), "--model", str(model),
                                                 "--out", str(tmp_path / "report")])
    assert_one_error_line(code, err, f"{model} is not a saved PipelineModel")
    assert not (tmp_path / "report").exists()


def test_unknown_model_name(spark, tree, tmp_path):
    code, err, _ = run_in_process(train_job, _train(tree, tmp_path, "--model-name", "ResNet9000"))
    assert_one_error_line(code, err, "unknown modelName 'ResNet9000'", "supported: InceptionV3")


def test_weights_for_another_architecture(spark, tree, tmp_path, foreign_weights):
    started = time.monotonic()
    code, err, logs = run_in_process(train_job, ["--data", str(tree), "--model-out",
                                                 str(tmp_path / "m"), "--weights",
                                                 str(foreign_weights)])
    assert_one_error_line(code, err, f"weights file {foreign_weights} does not fit InceptionV3")
    assert "step 'featurize train' started" not in logs  # refused before any Spark work
    assert time.monotonic() - started < 60


def test_missing_weights_file(spark, tree, tmp_path):
    code, err, _ = run_in_process(train_job, _train(tree, tmp_path)[:-1] + [
        str(tmp_path / "gone.weights.h5")])
    assert_one_error_line(code, err, f"{tmp_path / 'gone.weights.h5'}", "does not exist")


def test_output_on_a_namenode_nobody_runs(spark, tree, tmp_path):
    """Refused before featurization, naming the output URI."""
    out = f"hdfs://127.0.0.1:{unused_port()}/models/m"
    started = time.monotonic()
    code, err, logs = run_in_process(train_job, ["--data", str(tree), "--model-out", out,
                                                 "--weights", "none"])
    assert_one_error_line(code, err, f"cannot write {out}", "Connection refused")
    assert "featurize" not in logs and time.monotonic() - started < 30


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose listener never accepts and whose queue is full: further
    connection attempts hang, as to a host that is powered off or firewalled."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


def test_namenode_host_that_never_answers_fails_within_30s(spark, tmp_path, unanswered_port,
                                                           record_property):
    """Hadoop's defaults would try for 15 minutes (45 connection timeouts of 20 s)."""
    data = f"hdfs://127.0.0.1:{unanswered_port}/chest_xray"
    started = time.monotonic()
    code, err, _ = run_in_process(train_job, ["--data", data, "--model-out", str(tmp_path / "m")])
    line = assert_one_error_line(code, err, data, "ConnectTimeoutException")
    elapsed = time.monotonic() - started
    record_property("outcome", f"{elapsed:.1f} s: {line[:160]}")
    assert elapsed < 30


def test_spark_submit_error_is_one_line_and_verbose_shows_the_trace(tree, tmp_path):
    missing = tmp_path / "nowhere"
    assert_one_error_line(*submit("train", *_train(missing, tmp_path)),
                          f"data URI {missing} does not exist")
    code, output = submit("train", *_train(missing, tmp_path), "--verbose")
    assert code == 2
    assert "Traceback (most recent call last)" in output and "TreeError" in output


@pytest.mark.cluster
def test_yarn_without_a_resourcemanager_fails_within_a_minute(spark_env, tree, tmp_path,
                                                              record_property):
    """The cluster's own client configuration with the ResourceManager's port pointing where
    nothing listens (HDFS stays up): YARN's client would retry for 15 minutes."""
    hadoop, spark_conf = tmp_path / "hadoop", tmp_path / "spark"
    shutil.copytree(conf.hadoop_conf_dir(), hadoop)
    shutil.copytree(conf.spark_conf_dir(), spark_conf,
                    ignore=shutil.ignore_patterns("spark-env.sh"))  # it would reset HADOOP_CONF_DIR
    port = unused_port()
    core = ET.parse(hadoop / "core-site.xml")
    for prop in core.getroot().iter("property"):
        if prop.findtext("name") == "xray.port.resourcemanager":
            prop.find("value").text = str(port)
    core.write(hadoop / "core-site.xml")
    env = dict(spark_env, HADOOP_CONF_DIR=str(hadoop), YARN_CONF_DIR=str(hadoop),
               SPARK_CONF_DIR=str(spark_conf))
    started = time.monotonic()
    code, output = submit("train", *_train(tree, tmp_path), master="yarn", env=env, timeout=300)
    elapsed = time.monotonic() - started
    line = assert_one_error_line(code, output, "Spark could not start on yarn",
                                 f"localhost:{port}")
    record_property("outcome", f"{elapsed:.1f} s: {line[:160]}")
    assert elapsed < 60, f"took {elapsed:.0f} s"
