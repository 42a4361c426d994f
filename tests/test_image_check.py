"""Content validation (the one rule, ``rules.open_image``, as ingest describes a film):
decodable JPEG/PNG within the pixel limit, checked before decoding."""
from __future__ import annotations

import re
import struct
import zlib

import pytest

from pipeline.data.images import ImageInfo, inspect_image
from pipeline.data.rules import ImageError
from tests import reasons as R
from tests.trees import image_bytes


@pytest.mark.parametrize(
    ("mode", "fmt", "expected"),
    [
        ("L", "JPEG", ImageInfo(32, 24, "L", 1)),
        ("RGB", "JPEG", ImageInfo(32, 24, "RGB", 3)),
        ("CMYK", "JPEG", ImageInfo(32, 24, "CMYK", 4)),
        ("L", "PNG", ImageInfo(32, 24, "L", 1)),
        ("RGB", "PNG", ImageInfo(32, 24, "RGB", 3)),
        ("I;16", "PNG", ImageInfo(32, 24, "I;16", 1)),
    ],
)
def test_valid_images_are_described(mode: str, fmt: str, expected: ImageInfo) -> None:
    assert inspect_image(image_bytes(mode=mode, fmt=fmt)) == expected


def test_text_named_jpeg_is_rejected() -> None:
    with pytest.raises(ImageError, match=R.NOT_JPEG_OR_PNG):
        inspect_image(b"this is a text file, not an X-ray\n")


def test_other_image_formats_are_rejected() -> None:
    with pytest.raises(ImageError, match=R.NOT_JPEG_OR_PNG):
        inspect_image(image_bytes(fmt="GIF"))


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg_is_rejected(keep: float) -> None:
    data = image_bytes(width=200, height=150)
    with pytest.raises(ImageError, match=re.escape(R.UNDECODABLE)):
        inspect_image(data[: int(len(data) * keep)])


def test_jpeg_cut_inside_its_header_is_rejected() -> None:
    with pytest.raises(ImageError, match=re.escape(R.UNREADABLE_HEADER)):
        inspect_image(image_bytes()[:200])


def test_truncated_png_is_rejected() -> None:
    data = image_bytes(width=200, height=150, fmt="PNG")
    with pytest.raises(ImageError, match=re.escape(R.UNDECODABLE)):
        inspect_image(data[: len(data) // 2])


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC."""
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but holds almost no pixel data: only the header is good."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(bytes(16))) + png_chunk(b"IEND", b""))


def test_pixel_limit_is_checked_before_decoding() -> None:
    # 9000 x 8000 = 72 Mpx: over the limit, and with no pixel data a decode would fail with a
    # different message; the limit must win.
    with pytest.raises(ImageError, match=re.escape(R.over_pixel_limit(9000, 8000))):
        inspect_image(png_header_only(9000, 8000), max_pixels=64_000_000)


def test_pixel_limit_boundary() -> None:
    data = image_bytes(width=10, height=10)
    assert inspect_image(data, max_pixels=100).width == 10
    with pytest.raises(ImageError, match="exceeds"):
        inspect_image(data, max_pixels=99)


def test_decompression_bomb_is_rejected_not_raised() -> None:
    with pytest.raises(ImageError, match=re.escape(R.TOO_MANY_PIXELS)):
        inspect_image(png_header_only(20000, 20000), max_pixels=10**10)
