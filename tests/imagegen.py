"""Small image files for tests, written with Pillow (no dataset needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, width: int, height: int, mode: str = "L", seed: int = 0,
                fmt: str | None = None) -> Path:
    """A random-texture image of ``mode`` (L, RGB, RGBA, I;16, CMYK) at ``path``."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (height, width), dtype=np.uint16))
    else:
        bands = len(Image.new(mode, (1, 1)).getbands())
        arr = rng.integers(0, 255, (height, width, bands), dtype=np.uint8)
        img = Image.fromarray(arr[:, :, 0] if bands == 1 else arr, mode=None if bands > 1 else "L")
        if img.mode != mode:
            img = img.convert(mode)
    img.save(path, format=fmt)
    return path
