"""Talking to HDFS over WebHDFS (HdfsCLI): destination URIs, a client that fails fast, and the
few operations HdfsCLI does not offer the way ingest needs them.

A Kerberized NameNode answers an unauthenticated request with 401 and ``WWW-Authenticate:
Negotiate``; ``connect`` notices and authenticates with SPNEGO (HdfsCLI's KerberosClient, on
requests-kerberos: the ``kerberos`` extra) using the caller's ticket (``kinit``, KRB5CCNAME).
The HDFS user is then the ticket's principal, not ``user``. No ticket, or an expired one, is a
one-line HdfsRefused that says to kinit.
"""
from __future__ import annotations

import logging
import posixpath
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from hdfs import Client, HdfsError, InsecureClient
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


class HdfsRefused(RuntimeError):
    """WebHDFS answered but will not let this caller in (Kerberos: no valid ticket)."""


#: What to do about a missing ticket, for the one-line error.
_KINIT_HINT = ("run `kinit <principal>` (or `kinit -kt <keytab> <principal>`); for the "
               "project's own secure cluster `eval \"$(python -m pipeline.cluster env)\"` "
               "points KRB5CCNAME at its ticket")


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


def asks_for_kerberos(session: requests.Session, webhdfs_url: str, timeout: tuple) -> bool:
    """The NameNode at webhdfs_url refuses anonymous requests with a SPNEGO challenge."""
    answer = session.get(f"{webhdfs_url}/webhdfs/v1/?op=GETFILESTATUS", timeout=timeout,
                         allow_redirects=False)
    challenge = answer.headers.get("WWW-Authenticate", "")
    return answer.status_code == 401 and challenge.lower().startswith("negotiate")


def make_client(webhdfs_url: str, user: str = HDFS_USER, kerberos: bool = False,
           session: requests.Session | None = None, timeout: tuple | None = None) -> Client:
    """HdfsCLI's client for the NameNode: SPNEGO with the caller's ticket when ``kerberos``
    (the HDFS user is the ticket's principal), else the ``user`` name as given."""
    if not kerberos:  # InsecureClient takes session=None as a session: pass only what is set
        options = {k: v for k, v in (("session", session), ("timeout", timeout)) if v is not None}
        return InsecureClient(webhdfs_url, user=user, **options)
    try:
        from hdfs.ext.kerberos import KerberosClient
    except ImportError as err:
        raise HdfsRefused(f"WebHDFS at {webhdfs_url} asks for Kerberos (SPNEGO), and this "
                          f"Python lacks requests-kerberos ({err}): pip install -e "
                          "'.[kerberos]' (it builds against MIT Kerberos: apt-get install "
                          "libkrb5-dev)") from err
    # requests-kerberos logs an ERROR for every 404 (a status probe) that carries no mutual
    # authentication token, and a trace when it has no ticket: the latter is our HdfsRefused.
    logging.getLogger("requests_kerberos").setLevel(logging.CRITICAL)
    return KerberosClient(webhdfs_url, session=session, timeout=timeout)


def ticket_problem() -> str:
    """Why this process has no usable Kerberos ticket, in MIT's words ("" if it has one)."""
    try:
        import gssapi  # requests-kerberos' own dependency (through pyspnego) on Linux
        gssapi.Credentials(usage="initiate")
    except ImportError:
        return ""
    except gssapi.exceptions.GSSError as err:
        return str(err).rsplit("): ", 1)[-1]
    return ""


def connect(dest: Destination, user: str = HDFS_USER, threads: int = 1) -> Client:
    """A client for ``dest`` usable from ``threads`` threads, checked to answer.

    Raises HdfsUnreachable within about HDFS_CONNECT_TIMEOUT_S + 15 s when nothing answers,
    or when nothing listens at the RPC address the URI names: ``hdfs://host:port/`` that is
    not a NameNode must not quietly write to the cluster at ``host``'s WebHDFS port. A
    Kerberized NameNode is spoken to with SPNEGO; without a valid ticket, HdfsRefused.
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
    probe_timeout = (HDFS_CONNECT_TIMEOUT_S, _PROBE_READ_TIMEOUT_S)
    kerberos = False
    try:
        kerberos = asks_for_kerberos(session, dest.webhdfs_url, probe_timeout)
        probe = make_client(dest.webhdfs_url, user, kerberos, session, probe_timeout)
        probe.status("/")
    except CONNECTION_ERRORS as err:
        raise HdfsUnreachable(
            f"HDFS unreachable: no WebHDFS answer at {dest.webhdfs_url} for {dest.uri} "
            f"({type(err).__name__})"
        ) from err
    except (HdfsError, ValueError, requests.RequestException) as err:
        if kerberos:  # requests-kerberos made no token (no ticket, expired), or it was refused
            why = ticket_problem() or str(err)[:160]
            raise HdfsRefused(
                f"HDFS refused: WebHDFS at {dest.webhdfs_url} (for {dest.uri}) needs Kerberos "
                f"and this process has no valid ticket ({why}); {_KINIT_HINT}"
            ) from err
        raise HdfsUnreachable(
            f"HDFS unreachable: {dest.webhdfs_url} (for {dest.uri}) does not answer as a "
            f"WebHDFS NameNode ({str(err)[:120]})"
        ) from err
    return make_client(dest.webhdfs_url, user, kerberos, session,
                  (HDFS_CONNECT_TIMEOUT_S, HDFS_READ_TIMEOUT_S))


def list_dir(client: Client, path: str) -> dict[str, dict] | None:
    """``name -> FileStatus`` of a directory in one request; None if it does not exist."""
    try:
        return dict(client.list(path, status=True))
    except HdfsError as err:
        if err.exception == "FileNotFoundException":
            return None
        raise


def rename_replacing(client: Client, src: str, dst: str) -> None:
    """Move ``src`` onto ``dst`` in one atomic step, replacing an existing ``dst`` file.

    HdfsCLI's ``rename`` refuses an existing destination, which would force a delete first and
    leave a moment with no file at all; WebHDFS's RENAME with ``renameoptions=OVERWRITE``
    (HDFS rename2) swaps atomically. ``_rename`` is HdfsCLI's raw endpoint for that operation.
    """
    client._rename(src, destination=client.resolve(dst), renameoptions="OVERWRITE")
