"""Turning stored images into model-ready RGB arrays, and describing them for the manifest.

Every image is opened by ``rules.open_image``, the one acceptance rule (a DICOM film comes
from it rendered in 8-bit gray, as a viewer shows it, and goes on like a gray PNG). Two inputs
reach the featurizer: compressed file bytes (Spark's ``binaryFile`` source) and the decoded
struct of Spark's ``image`` source (row-major BGR/BGRA or gray). Both end as ``uint8[size, size, 3]``
RGB resized with Pillow's bilinear filter, which is exactly what
``keras.utils.load_img(path, target_size=(size, size), interpolation="bilinear")`` returns,
so the Spark output can be checked against plain Keras.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.config import DRAFT_DECODE
from pipeline.data.rules import ImageError, check_pixel_limit, open_image


@dataclass(frozen=True)
class ImageInfo:
    """What the manifest records about an image: size and how its pixels are stored."""

    width: int
    height: int
    #: Pillow's mode: "L" (8-bit gray), "I;16" (16-bit gray PNG), "RGB", "CMYK", ...
    mode: str
    channels: int


def inspect_image(data: bytes, max_pixels: int | None = None) -> ImageInfo:
    """Check and describe an encoded image; ImageError saying why it is unusable."""
    with open_image(data, max_pixels) as img:
        return ImageInfo(*img.size, img.mode, len(img.getbands()))


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB as Keras' load_img makes it, but 16-bit gray scaled rather than clipped at 255."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(img, dtype=np.uint32)
        top = 65535 if img.mode.startswith("I;16") else max(int(wide.max()), 1)
        img = Image.fromarray((wide * 255 // top).astype(np.uint8), mode="L")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_bytes(data: bytes, size: int, draft: bool = DRAFT_DECODE) -> np.ndarray:
    """Decode an encoded film into ``uint8[size, size, 3]`` RGB; ImageError if unusable.

    ``draft`` (config.DRAFT_DECODE): a JPEG at least twice ``size`` is decoded by libjpeg at
    a reduced scale first (see ``rules.open_image``); otherwise, and with ``draft=False``
    always, exactly what Keras users get from ``load_img``. The featurizer and fine-tuning's
    pixel cache decode alike, so a fine-tuned model is scored on the pixels it learnt from.
    """
    with open_image(data, draft_size=size if draft else None) as img:
        return np.asarray(_to_rgb(img).resize((size, size), Image.BILINEAR))


def decode_display(data: bytes, max_side: int, draft: bool = DRAFT_DECODE) -> np.ndarray:
    """An encoded film as ``uint8[h, w, 3]`` RGB at its own aspect ratio, its longer side at
    most ``max_side``: what a reader sees in a worklist, not what a model is fed."""
    with open_image(data, draft_size=max_side if draft else None) as img:
        rgb = _to_rgb(img)
        rgb.thumbnail((max_side, max_side), Image.BILINEAR)
        return np.asarray(rgb)


def struct_to_rgb(height: int, width: int, n_channels: int, data: bytes, size: int) -> np.ndarray:
    """Spark image-source struct (BGR/BGRA/gray bytes) into ``uint8[size, size, 3]`` RGB."""
    if n_channels not in (1, 3, 4) or height <= 0 or width <= 0:
        raise ImageError("the image source could not decode this file")
    check_pixel_limit(width, height)
    pixels = np.frombuffer(data, dtype=np.uint8)
    if pixels.size != height * width * n_channels:
        raise ImageError(f"{pixels.size} bytes do not fill {width}x{height}x{n_channels}")
    pixels = pixels.reshape(height, width, n_channels)
    if n_channels == 1:
        img = Image.fromarray(pixels[:, :, 0], mode="L")
    else:
        img = Image.fromarray(np.ascontiguousarray(pixels[:, :, 2::-1]), mode="RGB")
    return np.asarray(_to_rgb(img).resize((size, size), Image.BILINEAR))
