"""Small X-ray-like trees for tests, generated with Pillow (tests never read /work/shared)."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(width: int = 32, height: int = 24, mode: str = "L", fmt: str = "JPEG",
                seed: int = 0) -> bytes:
    """Encoded noise image; different seeds give different bytes."""
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (height, width), dtype=np.uint16))
    else:
        bands = len(Image.new(mode, (1, 1)).getbands())
        pixels = rng.integers(0, 255, (height, width, bands), dtype=np.uint8)
        img = Image.fromarray(pixels.squeeze(-1) if bands == 1 else pixels, mode=mode)
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (8-bit gray) but whose pixel data is
    16 zero bytes: it passes any check of the header and fails when decoded."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(bytes(16))) + chunk(b"IEND", b""))


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` at ``path``, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_image(path: Path, width: int, height: int, mode: str = "L", seed: int = 0,
                fmt: str | None = None) -> Path:
    """``image_bytes`` at ``path``, in the format its suffix names unless ``fmt`` says."""
    fmt = fmt or Image.registered_extensions()[path.suffix.lower()]
    return write(path, image_bytes(width, height, mode, fmt, seed))


def valid_tree(root: Path, per_class: int = 2, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """``root/<split>/<class>/`` with ``per_class`` distinct valid JPEGs named like the dataset."""
    seed = 0
    for split in splits:
        for i in range(per_class):
            seed += 1
            write(root / split / "NORMAL" / f"IM-{seed:04d}-0001.jpeg", image_bytes(seed=seed))
            seed += 1
            write(root / split / "PNEUMONIA" / f"person{seed}_bacteria_{i}.jpeg",
                  image_bytes(seed=seed))
    return root
