"""HDFS's file checksum, computed from local bytes, to compare a local file with its HDFS copy.

HDFS keeps no whole-file hash: ``getFileChecksum`` combines the CRCs its DataNodes store with
every block (one CRC per ``bytes_per_crc`` chunk): MD5 over each block's CRCs, then MD5 over
the block MD5s ("MD5-of-<crcs per block>MD5-of-<bytes per crc><CRC type>"). Computing the same
value here checks an HDFS copy against local bytes without reading the copy back: one small
request instead of a download.
"""
from __future__ import annotations

import hashlib
import re
import struct
import sys
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass

import crc32c

_ALGORITHM = re.compile(r"MD5-of-(\d+)MD5-of-(\d+)(CRC32C?)")
_CRCS: dict[str, Callable[[bytes], int]] = {"CRC32C": crc32c.crc32c, "CRC32": zlib.crc32}


class UnsupportedChecksum(ValueError):
    """The cluster combines checksums in a way this module does not reproduce."""


@dataclass(frozen=True)
class ChecksumKind:
    """The cluster's checksum settings (dfs.bytes-per-checksum, dfs.checksum.type)."""

    bytes_per_crc: int = 512
    crc: str = "CRC32C"

    @classmethod
    def from_algorithm(cls, algorithm: str) -> ChecksumKind:
        """Parse the ``algorithm`` of a WebHDFS FileChecksum; UnsupportedChecksum for other
        kinds (e.g. dfs.checksum.combine.mode=COMPOSITE_CRC)."""
        match = _ALGORITHM.fullmatch(algorithm)
        if not match:
            raise UnsupportedChecksum(f"HDFS checksum algorithm {algorithm!r} is not MD5-of-MD5-of-CRC")
        return cls(int(match.group(2)), match.group(3))


def file_checksum(data: bytes, block_size: int, kind: ChecksumKind = ChecksumKind()) -> str:
    """The hex ``bytes`` WebHDFS's GETFILECHECKSUM (and ``hdfs dfs -checksum``) report for
    a file holding ``data`` written with ``block_size``."""
    crc = _CRCS[kind.crc]
    view = memoryview(data)
    block_md5s = []
    for start in range(0, len(data), block_size):
        block = view[start:start + block_size]
        crcs = array("I", (crc(block[i:i + kind.bytes_per_crc])
                           for i in range(0, len(block), kind.bytes_per_crc)))
        if sys.byteorder == "little":
            crcs.byteswap()  # HDFS stores CRCs big-endian
        block_md5s.append(hashlib.md5(crcs.tobytes()).digest())
    # HDFS reports the CRCs per block only for files of more than one block.
    crcs_per_block = block_size // kind.bytes_per_crc if len(block_md5s) > 1 else 0
    header = struct.pack(">iq", kind.bytes_per_crc, crcs_per_block)
    return (header + hashlib.md5(_as_buffered(b"".join(block_md5s))).digest()).hex()


def _as_buffered(block_md5s: bytes) -> bytes:
    """The block MD5s as HDFS hashes them: its client MD5s the whole backing array of the
    Java buffer they were collected in (32 bytes, doubling as needed), spare zeros included."""
    capacity = 32
    while capacity < len(block_md5s):
        capacity *= 2
    return block_md5s.ljust(capacity, b"\0")


def reported_checksum(file_checksum_json: dict) -> str:
    """A WebHDFS FileChecksum's value as ``hdfs dfs -checksum`` prints it. WebHDFS's hex
    runs past ``length`` into the spare zero bytes of the buffer it was serialised in."""
    return file_checksum_json["bytes"][: 2 * file_checksum_json["length"]]
