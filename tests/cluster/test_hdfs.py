"""HDFS round trips through both ways the pipeline talks to it: WebHDFS (the hdfs package,
which the ingestion tool uses) and Spark's Hadoop client on hdfs://localhost:9000 (the
suite's local[2] session, addressing HDFS by full URI as the jobs' --data does)."""
from __future__ import annotations

import getpass
import uuid

import pytest
from hdfs import InsecureClient

from pipeline import config
from pipeline.cluster import health

pytestmark = pytest.mark.cluster

HDFS_URL = f"hdfs://{config.CLUSTER_HOST}:{config.CLUSTER_PORTS['namenode_rpc']}"


@pytest.fixture
def webhdfs(cluster):
    return InsecureClient(health.url("namenode_http"), user=getpass.getuser())


@pytest.fixture
def scratch(webhdfs):
    path = f"/tmp/xray-cluster-test-{uuid.uuid4().hex[:8]}"
    webhdfs.makedirs(path)
    yield path
    webhdfs.delete(path, recursive=True)


def test_webhdfs_write_read_rename(webhdfs, scratch):
    payload = uuid.uuid4().bytes * 4096  # 64 KiB
    webhdfs.write(f"{scratch}/a.bin", payload)
    with webhdfs.read(f"{scratch}/a.bin") as reader:
        assert reader.read() == payload
    webhdfs.rename(f"{scratch}/a.bin", f"{scratch}/b.bin")
    assert webhdfs.status(f"{scratch}/a.bin", strict=False) is None
    assert webhdfs.status(f"{scratch}/b.bin")["length"] == len(payload)
    with webhdfs.read(f"{scratch}/b.bin") as reader:
        assert reader.read() == payload


def test_spark_local_reads_and_writes_hdfs(spark, cluster, webhdfs, scratch):
    webhdfs.write(f"{scratch}/lines.txt", b"normal\npneumonia\n")
    lines = [r.value for r in spark.read.text(f"{HDFS_URL}{scratch}/lines.txt").collect()]
    assert lines == ["normal", "pneumonia"]

    spark.range(500).write.parquet(f"{HDFS_URL}{scratch}/ids")
    assert spark.read.parquet(f"{HDFS_URL}{scratch}/ids").count() == 500

    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path
    fs = path(HDFS_URL).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    assert fs.rename(path(f"{scratch}/ids"), path(f"{scratch}/ids-renamed"))
    assert spark.read.parquet(f"{HDFS_URL}{scratch}/ids-renamed").count() == 500
    assert webhdfs.status(f"{scratch}/ids", strict=False) is None


def test_new_directories_are_750_through_the_hadoop_client(spark, webhdfs, scratch):
    """The umask (027) of the cluster's client configuration: data written with Spark is not
    world-readable. (A client-side setting: WebHDFS callers pass permission= themselves.)"""
    spark.range(3).write.parquet(f"{HDFS_URL}{scratch}/private")
    assert webhdfs.status(f"{scratch}/private")["permission"] == "750"


def test_shared_directories_exist_with_their_modes(webhdfs):
    assert webhdfs.status("/spark-logs")["permission"] == "1777"
    assert webhdfs.status("/tmp")["permission"] == "1777"
    archive = webhdfs.status("/spark/spark-jars.zip")
    assert archive["length"] > 100_000_000 and archive["permission"] == "644"
