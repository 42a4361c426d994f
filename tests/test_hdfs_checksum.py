"""The local copy of HDFS's file checksum: answers recorded from the real cluster (Hadoop
3.5.0, CRC32C, 512 bytes per CRC; tests/ingest/ compares live for more sizes) and structure."""
from __future__ import annotations

import pytest

from pipeline.fs.hdfs_checksum import (
    ChecksumKind,
    UnsupportedChecksum,
    file_checksum,
    reported_checksum,
)

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("algorithm", "kind"),
    [
        ("MD5-of-0MD5-of-512CRC32C", ChecksumKind(512, "CRC32C")),
        ("MD5-of-262144MD5-of-512CRC32C", ChecksumKind(512, "CRC32C")),
        ("MD5-of-0MD5-of-1024CRC32", ChecksumKind(1024, "CRC32")),
    ],
)
def test_algorithm_names(algorithm: str, kind: ChecksumKind) -> None:
    assert ChecksumKind.from_algorithm(algorithm) == kind


@pytest.mark.parametrize("algorithm", ["COMPOSITE-CRC32C", "MD5-of-0MD5-of-512NULL", ""])
def test_other_algorithms_are_refused(algorithm: str) -> None:
    with pytest.raises(UnsupportedChecksum):
        ChecksumKind.from_algorithm(algorithm)


@pytest.mark.parametrize(
    ("data", "block_size", "expected"),
    [
        (bytes(range(256)) * 10, 128 * MIB,
         "0000020000000000000000003f25b25aff6b1f49e474dd849d9cdc74"),
        (bytes(range(256)) * 4096 * 3 + b"tail", MIB,
         "000002000000000000000800fca4bf9a145444a77cd6a39dd38cfd65"),
    ],
    ids=["one-block", "three-blocks"],
)
def test_known_answers_from_hdfs(data: bytes, block_size: int, expected: str) -> None:
    assert file_checksum(data, block_size) == expected


def test_webhdfs_hex_is_cut_to_its_length() -> None:
    assert reported_checksum({"algorithm": "MD5-of-0MD5-of-512CRC32C", "length": 28,
                              "bytes": "ab" * 28 + "00000000"}) == "ab" * 28


def test_header_states_bytes_per_crc_and_crcs_per_block() -> None:
    one_block = file_checksum(bytes(1000), block_size=MIB)
    assert len(one_block) == 2 * 28
    assert one_block[:24] == "00000200" + "0" * 16
    two_blocks = file_checksum(bytes(MIB + 1), block_size=MIB)
    assert two_blocks[:24] == "00000200" + f"{MIB // 512:016x}"


def test_every_byte_counts() -> None:
    data = bytearray(range(256)) * 9  # 2304 bytes: four whole chunks and a partial one
    reference = file_checksum(bytes(data), block_size=MIB)
    for position in (0, 511, 512, len(data) - 1):
        changed = bytearray(data)
        changed[position] ^= 1
        assert file_checksum(bytes(changed), block_size=MIB) != reference
    assert file_checksum(bytes(data[:-1]), block_size=MIB) != reference


def test_crc_type_and_chunk_size_matter() -> None:
    data = bytes(range(256)) * 8
    assert len({file_checksum(data, MIB, kind) for kind in
                (ChecksumKind(512, "CRC32C"), ChecksumKind(512, "CRC32"),
                 ChecksumKind(1024, "CRC32C"))}) == 3
