"""What counts as a usable film, and the words every program uses to say why one is not.

One rule set for ingest (a local tree), train, evaluate and fine-tune (any Hadoop URI):
- **where a file sits**: ``<split>/<CLASS>/<name>`` below the tree's root, nothing hidden,
  a regular file with an image suffix, not empty; symbolic links are never followed;
- **what its bytes are**: a JPEG, PNG or DICOM file (by content, whatever the suffix says)
  whose header is within the pixel limit, checked before any pixel is decoded, and that
  decodes to the end; a DICOM file must hold one frontal chest film (``pipeline.data.dicom``
  reads it; the rule and its words are here), which is rendered as a viewer shows it, in
  8-bit gray.

Each refusal is a ``Skipped(path, reason)`` whose reason comes from this module, so a file
refused by ingest reads the same when a job meets it.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pipeline import config
from pipeline.data import dicom

# Pillow's own bomb warning (fixed at 89 Mpx) would pre-empt the documented, configurable
# limit that every image opened here is checked against; its hard error (179 Mpx) still
# stands behind ours. Set once for the process: ingest opens images from many threads, and
# warnings.catch_warnings is not thread-safe.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# --- the vocabulary -----------------------------------------------------------------------------
HIDDEN = "hidden file or folder"
EMPTY = "empty file (0 bytes)"
NOT_REGULAR = "not a regular file"
NESTED_FOLDER = "folder inside a class folder (not scanned)"
OUTSIDE_CLASS_FOLDER = "file outside a class folder"
NOT_UTF8 = "file name is not valid UTF-8"
COLON = "file name contains ':' (not allowed in HDFS paths)"
LINK_OUTSIDE = "symbolic link pointing outside the tree (not followed)"
LINK_BROKEN = "broken symbolic link"
LINK = "symbolic link (not followed)"
NOT_JPEG_OR_PNG = f"not a {', '.join(config.IMAGE_FORMATS)} or DICOM image"
NOT_A_SPLIT = f"not a split folder (expected one of {', '.join(config.SPLITS)})"
NO_IMAGES = "no images in class folder"
CLASS_MISSING = "class folder missing"
# DICOM files: fixed words, never a header value (names, IDs, UIDs, dates are patient data).
DICOM_UNREADABLE = "unreadable DICOM header"
DICOM_TRUNCATED = "truncated DICOM file"
DICOM_NOT_AN_IMAGE = "DICOM file holds no image (a report or other non-image object)"
DICOM_NO_PIXEL_DATA = "DICOM image without pixel data"
DICOM_MULTI_FRAME = "multi-frame DICOM file (one film per file expected)"
DICOM_LATERAL = "lateral view (frontal chest films only)"
DICOM_NOT_CHEST = "DICOM body part is not the chest"
DICOM_UNSUPPORTED_COLOUR = "DICOM image is neither grayscale nor RGB"
DICOM_UNDECODABLE = "cannot be decoded (DICOM pixel data corrupt or inconsistent with its header)"
#: The pipeline's own files at a tree's root (ingest's manifest and state): not films, and
#: not worth a line in any report.
OWN_FILES = frozenset({config.MANIFEST_NAME, config.STATE_NAME})


def unknown_class_folder(name: str) -> str:
    return f"unknown class folder {name!r} (expected {', '.join(config.CLASSES)})"


def bad_suffix() -> str:
    return f"not an image file name (expected {', '.join(config.IMAGE_EXTENSIONS)})"


def unreadable_header(detail: object) -> str:
    return f"unreadable image header ({detail})"


def undecodable(detail: object) -> str:
    return f"cannot be decoded ({detail})"


def unsupported_transfer_syntax(name: str) -> str:
    """``name``: the transfer syntax UID's registered name (a standard's, not patient data)."""
    return f"unsupported DICOM transfer syntax ({name})"


def dicom_reason(err: dicom.DicomError) -> str:
    """The words for a DICOM file ``pipeline.data.dicom`` could not use."""
    if err.problem is dicom.Problem.UNSUPPORTED_SYNTAX:
        return unsupported_transfer_syntax(err.syntax or "unknown")
    return _DICOM_REASONS[err.problem]


def over_pixel_limit(width: int, height: int, limit: int) -> str:
    return (f"{width}x{height} = {width * height:,} pixels exceeds the limit of {limit:,} "
            "(XRAY_MAX_IMAGE_PIXELS)")


_DICOM_REASONS = {
    dicom.Problem.UNREADABLE: DICOM_UNREADABLE,
    dicom.Problem.TRUNCATED: DICOM_TRUNCATED,
    dicom.Problem.NOT_AN_IMAGE: DICOM_NOT_AN_IMAGE,
    dicom.Problem.NO_PIXEL_DATA: DICOM_NO_PIXEL_DATA,
    dicom.Problem.MULTI_FRAME: DICOM_MULTI_FRAME,
    dicom.Problem.LATERAL: DICOM_LATERAL,
    dicom.Problem.NOT_CHEST: DICOM_NOT_CHEST,
    dicom.Problem.UNSUPPORTED_COLOUR: DICOM_UNSUPPORTED_COLOUR,
    dicom.Problem.UNDECODABLE: DICOM_UNDECODABLE,
}

#: A film the storage could not hand over: every replica of a block failed its checksum or
#: none could be reached (HDFS's ChecksumException, BlockMissingException).
HDFS_CHECKSUM = "unreadable from HDFS (checksum error or missing block)"


def unreadable(detail: object) -> str:
    """A film whose read failed for another reason (gone since it was listed, permissions)."""
    return f"cannot be read ({detail})"


# --- the types ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Skipped:
    """A file (or folder) left out, and why: the one shape of every report's skip list."""

    path: str
    reason: str


@dataclass(frozen=True)
class Duplicate:
    """A film whose bytes equal an earlier one's (in path order); kept, but reported."""

    path: str
    duplicate_of: str


class ImageError(ValueError):
    """Bytes that are not a usable film; the message is the reason, in this vocabulary."""


# --- where a file sits --------------------------------------------------------------------------
def name_problem(name: str) -> str | None:
    """Why an entry cannot be used whatever folder it is in (its own name); None if it can."""
    if name.startswith("."):
        return HIDDEN
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return NOT_UTF8
    if ":" in name:
        return COLON
    return None


def link_reason(path: Path, real_root: Path) -> str:
    """Why a symbolic link at ``path`` is skipped: links are never followed, and the reason
    says whether one would have led out of the tree (``real_root``, resolved) or nowhere."""
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(real_root):
        return LINK_OUTSIDE
    if not target.exists():
        return LINK_BROKEN
    return LINK


def file_problem(name: str, size: int) -> str | None:
    """Why a regular file in a class folder is not a film candidate; None if it is one."""
    if not name.lower().endswith(config.IMAGE_EXTENSIONS):
        return bad_suffix()
    if size == 0:
        return EMPTY
    return None


# --- what its bytes are ---------------------------------------------------------------------
def check_pixel_limit(width: int, height: int, limit: int | None = None) -> None:
    """Refuse an image before decoding it if it would exceed the documented pixel limit."""
    limit = config.MAX_IMAGE_PIXELS if limit is None else limit
    if width * height > limit:
        raise ImageError(over_pixel_limit(width, height, limit))


def open_image(data: bytes, max_pixels: int | None = None,
               draft_size: int | None = None) -> Image.Image:
    """The fully decoded image in ``data``, or ImageError with the reason it is unusable.

    A DICOM file (by its "DICM" magic) comes back rendered as an 8-bit gray image (mode "L",
    ``pipeline.data.dicom.decode``), so every reader of films reads DICOM unchanged.

    The header is read first and the pixel count checked before any decoding, so a
    decompression bomb costs nothing; then the whole image is decoded, because a truncated
    JPEG has a perfectly good header and only fails at the end of the scan. ``draft_size``:
    a JPEG at least twice that size on both sides is decoded at 1/2, 1/4 or 1/8 scale, no
    smaller than it (libjpeg's DCT scaling: every scan is still read to the end).
    """
    if not data:
        raise ImageError(EMPTY)
    if dicom.is_dicom(data):
        try:
            return dicom.decode(data, lambda width, height: check_pixel_limit(width, height,
                                                                              max_pixels))
        except dicom.DicomError as err:
            raise ImageError(dicom_reason(err)) from None
    try:
        img = Image.open(io.BytesIO(data), formats=config.IMAGE_FORMATS)
    except UnidentifiedImageError:
        raise ImageError(NOT_JPEG_OR_PNG) from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"too many pixels ({err})") from None
    # Pillow's parsers raise a zoo of types on hostile input (OSError, SyntaxError,
    # struct.error, ...): each one is this file's problem, reported, not the task's failure.
    except Exception as err:  # noqa: BLE001
        raise ImageError(unreadable_header(err)) from None
    check_pixel_limit(*img.size, max_pixels)
    if draft_size and img.format == "JPEG" and min(img.size) >= 2 * draft_size:
        img.draft(img.mode, (draft_size, draft_size))
    try:
        img.load()
    except Exception as err:  # noqa: BLE001  (as above)
        raise ImageError(undecodable(err)) from None
    return img
