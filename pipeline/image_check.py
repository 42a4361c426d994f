"""Is a file a usable X-ray image? Checked once, at ingest, so later stages can trust the data.

The header is read first and the pixel count checked against ``MAX_IMAGE_PIXELS`` before any
decoding, so a decompression bomb costs nothing; then the whole image is decoded, because a
truncated JPEG has a perfectly good header and only fails at the end of the scan.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from pipeline.config import IMAGE_FORMATS, MAX_IMAGE_PIXELS
from pipeline.images import ImageError, check_pixel_limit


class InvalidImage(ValueError):
    """The bytes are not an image we accept; the message is the reason shown to the user."""


@dataclass(frozen=True)
class ImageInfo:
    """What the manifest records about an image: size and how its pixels are stored."""

    width: int
    height: int
    #: Pillow's mode: "L" (8-bit gray), "I;16" (16-bit gray PNG), "RGB", "CMYK", ...
    mode: str
    channels: int


def inspect_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageInfo:
    """Check and describe an encoded image; raise InvalidImage saying why it is unusable."""
    try:
        img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except UnidentifiedImageError:
        raise InvalidImage(f"not a {' or '.join(IMAGE_FORMATS)} image") from None
    except Image.DecompressionBombError as err:
        raise InvalidImage(f"too many pixels ({err})") from None
    # Pillow's parsers raise a zoo of types on hostile input (OSError, SyntaxError,
    # struct.error, ...); any of them means "unusable", with the message as the reason.
    except Exception as err:  # noqa: BLE001
        raise InvalidImage(f"unreadable image header ({err})") from None
    with img:
        width, height = img.size
        try:
            check_pixel_limit(width, height, max_pixels)
        except ImageError as err:
            raise InvalidImage(str(err)) from None
        try:
            img.load()
        except Exception as err:  # noqa: BLE001  (as above)
            raise InvalidImage(f"cannot be decoded ({err})") from None
        return ImageInfo(width, height, img.mode, len(img.getbands()))
