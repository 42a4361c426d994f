"""Nothing listens beyond this machine unless the user opts in: Docker publishes on 127.0.0.1
by default, and the native cluster's daemons bind loopback only (docs/security.md)."""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from pipeline import config
from pipeline.cluster import docker, native

#: ${VAR:-default} as Compose expands it when VAR is unset.
_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def published_ports(compose: str) -> dict[str, list[str]]:
    """service -> its ``ports:`` entries, as written (short syntax, one per line)."""
    found: dict[str, list[str]] = {}
    service = None
    in_ports = False
    for line in compose.splitlines():
        if re.match(r"^  [\w-]+:\s*$", line):
            service, in_ports = line.strip().rstrip(":"), False
        elif re.match(r"^    ports:\s*$", line):
            in_ports = True
        elif in_ports and (item := re.match(r"^      - (.+)$", line)):
            found.setdefault(service, []).append(item.group(1).strip().strip("\"'"))
        elif in_ports and not line.startswith("      "):
            in_ports = False
    return found


def test_docker_publishes_every_port_on_loopback_unless_told_otherwise():
    compose = Path(docker.COMPOSE_FILE).read_text()
    assert "network_mode" not in compose  # host networking would bypass publishing
    ports = published_ports(compose)
    entries = [(service, entry) for service, items in ports.items() for entry in items]
    assert len(entries) >= 6, ports  # NameNode (2), DataNode, RM, NM, History
    for service, entry in entries:
        assert "XRAY_BIND_ADDRESS" in entry, (service, entry)  # the documented opt-in
        host, _, _ = _DEFAULT.sub(r"\2", entry).partition(":")
        assert host == "127.0.0.1", (service, entry)


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    """(local address, port) of every TCP socket in LISTEN state that ``pids`` own."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = fd.readlink().as_posix() if fd.is_symlink() else ""
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            address, port = fields[1].split(":")
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.append((_ip(words), int(port, 16)))
    return found


def _ip(packed: bytes) -> str:
    ip = ipaddress.ip_address(packed)
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


@pytest.mark.cluster
def test_native_daemons_listen_on_loopback_only(cluster):
    pids = {pid for pid in native.pids().values() if pid}
    sockets = _listening(pids)
    ports = {port for _, port in sockets}
    expected = {config.CLUSTER_PORTS[name] for daemon in native.daemons() for name in daemon.ports}
    assert expected <= ports, sorted(sockets)
    assert {address for address, _ in sockets} == {"127.0.0.1"}, sorted(sockets)
