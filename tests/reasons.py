"""The one list of reasons the tests expect, word for word. Ingest, train, evaluate and
fine-tune give the same reason for the same file (``pipeline.data.rules``); these are written
out here, not imported, so that a change of wording is a change the tests see."""
from __future__ import annotations

HIDDEN = "hidden file or folder"
EMPTY = "empty file (0 bytes)"
BAD_SUFFIX = "not an image file name (expected .jpeg, .jpg, .png)"
NESTED_FOLDER = "folder inside a class folder (not scanned)"
OUTSIDE_CLASS_FOLDER = "file outside a class folder"
NOT_A_SPLIT = "not a split folder (expected one of train, val, test)"
COLON = "file name contains ':' (not allowed in HDFS paths)"
NOT_UTF8 = "file name is not valid UTF-8"
NOT_REGULAR = "not a regular file"
LINK_OUTSIDE = "symbolic link pointing outside the tree (not followed)"
LINK_BROKEN = "broken symbolic link"
LINK = "symbolic link (not followed)"
NOT_JPEG_OR_PNG = "not a JPEG, PNG or DICOM image"
#: Prefixes: Pillow's own words follow in parentheses.
UNDECODABLE = "cannot be decoded ("
UNREADABLE_HEADER = "unreadable image header ("
TOO_MANY_PIXELS = "too many pixels ("
#: DICOM files (pipeline.data.dicom): fixed words, never a header value.
DICOM_UNREADABLE = "unreadable DICOM header"
DICOM_TRUNCATED = "truncated DICOM file"
DICOM_NOT_AN_IMAGE = "DICOM file holds no image (a report or other non-image object)"
DICOM_NO_PIXEL_DATA = "DICOM image without pixel data"
DICOM_MULTI_FRAME = "multi-frame DICOM file (one film per file expected)"
DICOM_LATERAL = "lateral view (frontal chest films only)"
DICOM_NOT_CHEST = "DICOM body part is not the chest"
DICOM_UNSUPPORTED_COLOUR = "DICOM image is neither grayscale nor RGB"
DICOM_UNDECODABLE = "cannot be decoded (DICOM pixel data corrupt or inconsistent with its header)"


def unknown_class_folder(name: str) -> str:
    return f"unknown class folder {name!r} (expected NORMAL, PNEUMONIA)"


def unsupported_transfer_syntax(name: str) -> str:
    return f"unsupported DICOM transfer syntax ({name})"


def over_pixel_limit(width: int, height: int, limit: int = 64_000_000) -> str:
    return (f"{width}x{height} = {width * height:,} pixels exceeds the limit of {limit:,} "
            "(XRAY_MAX_IMAGE_PIXELS)")


HDFS_CHECKSUM = "unreadable from HDFS (checksum error or missing block)"
#: Prefix: the storage's own words follow in parentheses.
UNREADABLE = "cannot be read ("
