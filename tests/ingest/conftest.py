"""Fixtures for the cluster tests: the real WebHDFS endpoint and a scratch folder on HDFS."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests
from hdfs import InsecureClient

from pipeline.config import HDFS_USER, WEBHDFS_URL


@pytest.fixture(scope="session")
def webhdfs_url(cluster) -> str:
    """The cluster's WebHDFS URL, once the session's cluster is up. Fails, rather than skips,
    when it does not answer: a cluster test that did not run must not look like one that
    passed."""
    try:
        response = requests.get(f"{WEBHDFS_URL}/webhdfs/v1/",
                                params={"op": "GETFILESTATUS", "user.name": HDFS_USER},
                                timeout=10)
        response.raise_for_status()
    except requests.RequestException as err:
        pytest.fail(f"WebHDFS does not answer at {WEBHDFS_URL} ({err}); start the cluster "
                    "(make cluster-up)")
    return WEBHDFS_URL


@pytest.fixture
def hdfs(webhdfs_url: str) -> InsecureClient:
    """A plain HdfsCLI client, to look at what ingest did."""
    return InsecureClient(webhdfs_url, user=HDFS_USER)


@pytest.fixture
def hdfs_dir(hdfs: InsecureClient) -> Iterator[str]:
    """A fresh HDFS folder path (not created), removed after the test."""
    path = f"/tmp/xray-ingest-tests/{uuid.uuid4().hex}"
    yield path
    hdfs.delete(path, recursive=True)
