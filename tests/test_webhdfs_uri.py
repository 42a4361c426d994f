"""Destination URIs: what is accepted, where it points, and what is refused as malformed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline import config
from pipeline.fs.webhdfs import DestinationError, parse_destination


@pytest.mark.parametrize(
    ("uri", "url", "path"),
    [
        ("hdfs:///data/chest_xray", "http://localhost:9870", "/data/chest_xray"),
        ("hdfs:///data/chest_xray/", "http://localhost:9870", "/data/chest_xray"),
        ("hdfs://localhost:9000/data/x", "http://localhost:9870", "/data/x"),
        ("hdfs://namenode/data/x", "http://namenode:9870", "/data/x"),
        ("webhdfs://127.0.0.1:50070/a b/ü", "http://127.0.0.1:50070", "/a b/ü"),
    ],
)
def test_accepted(uri: str, url: str, path: str) -> None:
    dest = parse_destination(uri, webhdfs_url="http://localhost:9870")
    assert (dest.webhdfs_url, dest.path) == (url, path)
    assert dest.child("train/NORMAL/a.jpeg") == f"{path}/train/NORMAL/a.jpeg"


def test_explicit_rpc_port_is_kept_for_the_reachability_check() -> None:
    assert parse_destination("hdfs://nn:9000/d").rpc_address == ("nn", 9000)
    assert parse_destination("hdfs://nn/d").rpc_address is None
    assert parse_destination("hdfs:///d").rpc_address is None
    assert parse_destination("webhdfs://nn:9870/d").rpc_address is None


def test_hdfs_without_host_uses_the_configured_endpoint() -> None:
    assert parse_destination("hdfs:///d", "http://nn:1234/").webhdfs_url == "http://nn:1234"


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("", "no scheme"),
        ("/data/x", "no scheme"),
        ("s3://bucket/x", "scheme 's3'"),
        ("hdfs://", "no absolute directory"),
        ("hdfs:///", "no absolute directory"),
        ("hdfs://host:9000", "no absolute directory"),
        ("hdfs:///a/../b", "'..'"),
        ("hdfs:///a//b", "'//'"),
        ("hdfs:///a?x=1", "query"),
        ("webhdfs:///a", "needs host:port"),
        ("webhdfs://host/a", "needs host:port"),
        ("hdfs://host:port/a", "malformed"),
    ],
)
def test_malformed(uri: str, problem: str) -> None:
    with pytest.raises(DestinationError, match="malformed") as err:
        parse_destination(uri)
    assert problem in str(err.value)
    assert "\n" not in str(err.value)


def test_default_webhdfs_url_follows_the_clusters_namenode_port():
    """One place of configuration: moving the NameNode's HTTP port moves ingest's endpoint."""
    env = {**os.environ, "XRAY_PORT_NAMENODE_HTTP": "19870"}
    env.pop("XRAY_WEBHDFS_URL", None)
    done = subprocess.run([sys.executable, "-c", "from pipeline import config; print(config.WEBHDFS_URL)"],
                          env=env, cwd=config.REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "http://localhost:19870"
