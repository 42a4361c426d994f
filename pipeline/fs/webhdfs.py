"""Talking to HDFS over WebHDFS (HdfsCLI): destination URIs, a client that fails fast, and the
few operations HdfsCLI does not offer the way ingest needs them.
"""
from __future__ import annotations

import posixpath
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from hdfs import HdfsError, InsecureClient
from requests.adapters import HTTPAdapter

from pipeline.config import (
    CLUSTER_PORTS,
    HDFS_CONNECT_TIMEOUT_S,
    HDFS_READ_TIMEOUT_S,
    HDFS_USER,
    WEBHDFS_URL,
)

#: Errors that mean "the cluster did not answer", as opposed to "it answered no".
CONNECTION_ERRORS = (requests.ConnectionError, requests.Timeout)

#: A reachability probe must give up well inside the 30 s a user waits for a clear error.
_PROBE_READ_TIMEOUT_S = 15.0


class DestinationError(ValueError):
    """A destination URI that cannot name an HDFS directory."""


class HdfsUnreachable(RuntimeError):
    """No WebHDFS answer at the URL; the message names it, for the one-line error."""


@dataclass(frozen=True)
class Destination:
    """Where a dataset goes: the WebHDFS endpoint and the absolute directory on HDFS."""

    uri: str
    webhdfs_url: str
    path: str
    #: (host, port) of the NameNode's RPC server when the URI names one (hdfs://host:port/).
    rpc_address: tuple[str, int] | None = None

    def child(self, rel_path: str) -> str:
        """The HDFS path of ``rel_path`` (POSIX, relative) under the destination."""
        return posixpath.join(self.path, rel_path)


def parse_destination(uri: str, webhdfs_url: str = WEBHDFS_URL) -> Destination:
    """Accept ``hdfs:///dir``, ``hdfs://host[:rpc-port]/dir`` or ``webhdfs://host:port/dir``.

    ``hdfs://`` names the NameNode's RPC address, which WebHDFS does not use: the host is kept
    and the HTTP port taken from ``webhdfs_url`` (config.WEBHDFS_URL by default); an explicit
    RPC port is kept to check that a NameNode listens there (see ``connect``).
    """
    expected = "expected hdfs:///absolute/dir or webhdfs://host:port/absolute/dir"
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as err:
        raise DestinationError(f"destination {uri!r} is malformed ({err}); {expected}") from None
    path = parts.path.rstrip("/")
    problem = None
    if parts.scheme not in ("hdfs", "webhdfs"):
        problem = f"scheme {parts.scheme!r} is not hdfs or webhdfs" if parts.scheme else "no scheme"
    elif parts.query or parts.fragment:
        problem = "it has a query or fragment"
    elif not path.startswith("/"):
        problem = "no absolute directory"
    elif ".." in path.split("/") or "//" in path or ":" in path:
        problem = "the directory has '..', '//' or ':' in it"
    elif parts.scheme == "webhdfs" and not (parts.hostname and port):
        problem = "webhdfs:// needs host:port"
    if problem:
        raise DestinationError(f"destination {uri!r} is malformed: {problem}; {expected}")
    if parts.scheme == "webhdfs":
        return Destination(uri, f"http://{parts.hostname}:{port}", path)
    if not parts.hostname:
        return Destination(uri, webhdfs_url.rstrip("/"), path)
    url = f"http://{parts.hostname}:{urlsplit(webhdfs_url).port or CLUSTER_PORTS['namenode_http']}"
    return Destination(uri, url, path, (parts.hostname, port) if port else None)


def connect(dest: Destination, user: str = HDFS_USER, threads: int = 1) -> InsecureClient:
    """A client for ``dest`` usable from ``threads`` threads, checked to answer.

    Raises HdfsUnreachable within about HDFS_CONNECT_TIMEOUT_S + 15 s when nothing answers,
    or when nothing listens at the RPC address the URI names: ``hdfs://host:port/`` that is
    not a NameNode must not quietly write to the cluster at ``host``'s WebHDFS port.
    """
    if dest.rpc_address:
        try:
            socket.create_connection(dest.rpc_address, timeout=HDFS_CONNECT_TIMEOUT_S).close()
        except OSError as err:
            raise HdfsUnreachable(
                f"HDFS unreachable: no NameNode listens at {dest.uri} "
                f"({err.strerror or type(err).__name__})") from err
    session = requests.Session()
    # One pooled connection per thread and per server (NameNode and DataNode), so keep-alive
    # connections are reused rather than discarded ("connection pool is full").
    session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=threads + 2))
    probe = InsecureClient(dest.webhdfs_url, user=user, session=session,
                           timeout=(HDFS_CONNECT_TIMEOUT_S, _PROBE_READ_TIMEOUT_S))
    try:
        probe.status("/")
    except CONNECTION_ERRORS as err:
        raise HdfsUnreachable(
            f"HDFS unreachable: no WebHDFS answer at {dest.webhdfs_url} for {dest.uri} "
            f"({type(err).__name__})"
        ) from err
    except (HdfsError, ValueError) as err:
        raise HdfsUnreachable(
            f"HDFS unreachable: {dest.webhdfs_url} (for {dest.uri}) does not answer as a "
            f"WebHDFS NameNode ({str(err)[:120]})"
        ) from err
    return InsecureClient(dest.webhdfs_url, user=user, session=session,
                          timeout=(HDFS_CONNECT_TIMEOUT_S, HDFS_READ_TIMEOUT_S))


def list_dir(client: InsecureClient, path: str) -> dict[str, dict] | None:
    """``name -> FileStatus`` of a directory in one request; None if it does not exist."""
    try:
        return dict(client.list(path, status=True))
    except HdfsError as err:
        if err.exception == "FileNotFoundException":
            return None
        raise


def rename_replacing(client: InsecureClient, src: str, dst: str) -> None:
    """Move ``src`` onto ``dst`` in one atomic step, replacing an existing ``dst`` file.

    HdfsCLI's ``rename`` refuses an existing destination, which would force a delete first and
    leave a moment with no file at all; WebHDFS's RENAME with ``renameoptions=OVERWRITE``
    (HDFS rename2) swaps atomically. ``_rename`` is HdfsCLI's raw endpoint for that operation.
    """
    client._rename(src, destination=client.resolve(dst), renameoptions="OVERWRITE")
