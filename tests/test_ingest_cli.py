"""jobs/ingest.py's failures that need no cluster: one clear line, non-zero, quickly."""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import assert_one_line_error, run_cli, unused_port
from tests.trees import valid_tree


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_missing_tree(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path / "nope"), "hdfs:///data/x")
    assert_one_line_error(result, "local tree", "nope", "does not exist")


def test_malformed_destination(tmp_path: Path) -> None:
    result = run_cli(str(valid_tree(tmp_path)), "hdfs:/relative?x")
    assert_one_line_error(result, "destination 'hdfs:/relative?x' is malformed")


def test_missing_required_split_is_named(tmp_path: Path) -> None:
    result = run_cli(str(valid_tree(tmp_path)), "hdfs:///data/x", "--splits", "train,test")
    assert_one_line_error(result, "missing split folder(s)", ": test")


def test_refused_connection_fails_fast(tmp_path: Path) -> None:
    port = unused_port()
    uri = f"webhdfs://127.0.0.1:{port}/data/x"
    started = time.monotonic()
    result = run_cli(str(valid_tree(tmp_path)), uri)
    assert time.monotonic() - started < 30
    assert_one_line_error(result, "HDFS unreachable", f"http://127.0.0.1:{port}", uri)


def test_namenode_port_nothing_listens_on_fails_fast(tmp_path: Path) -> None:
    uri = f"hdfs://127.0.0.1:{unused_port()}/data/x"
    started = time.monotonic()
    result = run_cli(str(valid_tree(tmp_path)), uri)
    assert time.monotonic() - started < 30
    assert_one_line_error(result, "HDFS unreachable: no NameNode listens at", uri)


def test_silent_server_fails_within_30s(tmp_path: Path, silent_server: int) -> None:
    uri = f"webhdfs://127.0.0.1:{silent_server}/data/x"
    started = time.monotonic()
    result = run_cli(str(valid_tree(tmp_path)), uri)
    assert time.monotonic() - started < 30
    assert_one_line_error(result, "HDFS unreachable", uri)


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path / "nope"), "hdfs:///data/x", "--verbose")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "TreeError" in result.stderr
