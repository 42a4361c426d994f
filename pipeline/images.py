"""Turning stored images into model-ready RGB arrays.

Two inputs reach the featurizer: compressed file bytes (Spark's ``binaryFile`` source) and the
decoded struct of Spark's ``image`` source (row-major BGR/BGRA or gray). Both end as
``uint8[size, size, 3]`` RGB resized with Pillow's bilinear filter, which is exactly what
``keras.utils.load_img(path, target_size=(size, size), interpolation="bilinear")`` returns,
so the Spark output can be checked against plain Keras.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from pipeline.config import MAX_IMAGE_PIXELS

# Pillow's own bomb warning (fixed at 89 Mpx) would pre-empt the documented, configurable
# limit that every image opened here is checked against; its hard error (179 Mpx) still
# stands behind ours. Set once for the process: ingest opens images from many threads, and
# warnings.catch_warnings is not thread-safe.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(ValueError):
    """An input that cannot become a model input; the message is the reason, for reports."""


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB as Keras' load_img makes it, but 16-bit gray scaled rather than clipped at 255."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(img, dtype=np.uint32)
        top = 65535 if img.mode.startswith("I;16") else max(int(wide.max()), 1)
        img = Image.fromarray((wide * 255 // top).astype(np.uint8), mode="L")
    return img if img.mode == "RGB" else img.convert("RGB")


def check_pixel_limit(width: int, height: int, limit: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an image before decoding it if it would exceed the documented pixel limit."""
    if width * height > limit:
        raise ImageError(f"{width}x{height} = {width * height:,} pixels exceeds the limit of "
                         f"{limit:,} (XRAY_MAX_IMAGE_PIXELS)")


def decode_bytes(data: bytes, size: int) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ...) into ``uint8[size, size, 3]`` RGB.

    Always a full decode: libjpeg's reduced-scale decoding would be faster on large films but
    would no longer match what Keras users get from ``load_img``, and decoding costs a few
    percent of the CNN's time anyway.
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        check_pixel_limit(*img.size)
        img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"too many pixels ({exc})") from None
    # Pillow's parsers raise a zoo of types on hostile input (OSError, SyntaxError,
    # struct.error, ...): each one is this file's problem, reported, not the task's failure.
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"not a decodable image: {exc}") from None
    return np.asarray(_to_rgb(img).resize((size, size), Image.BILINEAR))


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
