"""DICOM films: recognising them, reading their identifiers, and rendering them as a viewer does.

pydicom (MIT) parses the file; the compressed transfer syntaxes hospitals send are decoded by
permissive-licence plugins it finds on its own (the project is Apache-2.0, so no GPL decoder:
pylibjpeg-libjpeg is GPL-3 and is deliberately not a dependency):

- uncompressed (implicit/explicit VR little endian, big endian, deflated): pydicom itself;
- JPEG baseline/extended, JPEG lossless (process 14, SV1), JPEG-LS: python-gdcm (Apache-2.0
  wheel of GDCM, BSD), the one permissive decoder of lossless JPEG on PyPI; Pillow also
  decodes 8-bit baseline;
- JPEG 2000 (and HTJ2K): pylibjpeg-openjpeg (MIT, OpenJPEG is BSD-2), gdcm as a fallback;
- RLE lossless: pylibjpeg-rle (MIT; pydicom's pure-Python RLE decoder as a fallback).

This module states facts about a file and raises ``DicomError`` naming a ``Problem``; whether
such a file is a usable film, and the words for each refusal, are ``pipeline.data.rules``'s
(which imports this module, so this one may not import it back).

Patient data never reaches a message or a log: every problem is a fixed ``Problem``; pydicom's
exceptions (which can quote a malformed date or name) are dropped, not chained; its logger
does not propagate to ours and its warnings are ignored; GDCM's C++ trace output is off.
``DicomIdentifiers``' repr shows no value, so logging one by mistake leaks nothing.

pydicom is imported on first use (about 0.7 s), not with this module: ``rules`` imports it,
and a process that only ever meets JPEGs and PNGs should not pay for it.
"""
from __future__ import annotations

import enum
import functools
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logging.getLogger("pydicom").propagate = False
warnings.filterwarnings("ignore", module=r"(pydicom|pipeline\.data\.dicom)(\.|$)")

#: Byte offset of the "DICM" magic in a DICOM Part 10 file (after the 128-byte preamble).
MAGIC_OFFSET = 128
MAGIC = b"DICM"
#: View Position values, and View Code Sequence codes (SNOMED RT and CT), of lateral views.
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LEFT LATERAL", "RIGHT LATERAL"})
LATERAL_CODES = frozenset({"R-10232", "R-10236", "399198007", "399173006"})
#: Words in Body Part Examined that mean the chest (an absent or empty value is accepted).
CHEST_WORDS = ("CHEST", "THORAX", "LUNG")
_GRAY = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class Problem(enum.Enum):
    """Why a DICOM file is not one frontal chest film this module can render."""

    UNREADABLE = "unreadable header"
    TRUNCATED = "truncated"
    NOT_AN_IMAGE = "not an image"
    NO_PIXEL_DATA = "no pixel data"
    MULTI_FRAME = "multi-frame"
    LATERAL = "lateral view"
    NOT_CHEST = "not chest"
    UNSUPPORTED_SYNTAX = "unsupported transfer syntax"
    UNSUPPORTED_COLOUR = "unsupported photometric interpretation"
    UNDECODABLE = "undecodable pixel data"


class DicomError(ValueError):
    """A DICOM file that cannot be used, and the ``Problem``; ``syntax`` is the transfer
    syntax's registered name (a standard's name, not patient data) for UNSUPPORTED_SYNTAX."""

    def __init__(self, problem: Problem, syntax: str | None = None) -> None:
        super().__init__(problem.value if syntax is None else f"{problem.value}: {syntax}")
        self.problem = problem
        self.syntax = syntax


@dataclass(frozen=True, repr=False)
class DicomIdentifiers:
    """What links a film to its patient and study, for the screening output: patient data,
    so the repr shows which fields are set, never their values."""

    patient_id: str | None
    accession_number: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    sop_instance_uid: str | None

    def __repr__(self) -> str:
        present = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        return f"DicomIdentifiers(<redacted; set: {', '.join(present) or 'none'}>)"


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` is a DICOM Part 10 file: "DICM" after the 128-byte preamble."""
    return data[MAGIC_OFFSET:MAGIC_OFFSET + len(MAGIC)] == MAGIC


def read_identifiers(data: bytes) -> DicomIdentifiers:
    """The film's identifiers from its header only (pixel data is not read); None for each
    one absent or empty. DicomError(UNREADABLE) if the header cannot be parsed."""
    ds = _parse(data, header_only=True)

    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        return (str(value).strip() or None) if value is not None else None

    return DicomIdentifiers(text("PatientID"), text("AccessionNumber"),
                            text("StudyInstanceUID"), text("SeriesInstanceUID"),
                            text("SOPInstanceUID"))


def decode(data: bytes, check_size: Callable[[int, int], None]) -> Image.Image:
    """The film in ``data`` as an 8-bit gray image (mode "L"), as a viewer shows it.

    The file is parsed (pixel data sliced, not decoded) and refused with a DicomError if it
    is truncated, not an image, without pixel data, multi-frame, a lateral view, of another
    body part than the chest (an absent Body Part Examined is accepted), in a transfer syntax
    or colour model no installed decoder handles. ``check_size(width, height)`` is called with
    the header's Columns x Rows before any pixel is decoded (the pixel limit: it raises).
    """
    ds = _parse(data, header_only=False)
    if _truncated(ds, len(data)):
        raise DicomError(Problem.TRUNCATED)
    has_pixels = any(tag in ds for tag in _PIXEL_TAGS)
    if not has_pixels and "Rows" not in ds:
        raise DicomError(Problem.NOT_AN_IMAGE)
    if _int(ds, "NumberOfFrames", 1) > 1:
        raise DicomError(Problem.MULTI_FRAME)
    if _is_lateral(ds):
        raise DicomError(Problem.LATERAL)
    if not _is_chest(ds):
        raise DicomError(Problem.NOT_CHEST)
    if not has_pixels:
        raise DicomError(Problem.NO_PIXEL_DATA)
    _check_syntax(ds)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in _GRAY + _COLOUR:
        raise DicomError(Problem.UNSUPPORTED_COLOUR)
    check_size(_int(ds, "Columns", 0), _int(ds, "Rows", 0))
    try:
        return _render(ds, photometric)
    except Exception:  # noqa: BLE001  decoders raise many types; the message may quote values
        raise DicomError(Problem.UNDECODABLE) from None


# --- reading ----------------------------------------------------------------------------------
@functools.cache
def _pydicom():
    """pydicom, imported once, not validating values as it reads (its complaints quote
    them), with GDCM's traces (straight to stderr from C++) off."""
    import pydicom
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        import gdcm
    except ImportError:  # a dependency in setup.cfg; without it decode says the syntax
        return pydicom
    for switch_off in (gdcm.Trace.WarningOff, gdcm.Trace.ErrorOff, gdcm.Trace.DebugOff):
        switch_off()
    return pydicom


def _parse(data: bytes, header_only: bool) -> Dataset:
    """The dataset; UNREADABLE if pydicom fails, or finds neither a file meta group nor any
    element (it reads garbage after "DICM" as an empty dataset, without complaint)."""
    try:
        ds = _pydicom().dcmread(io.BytesIO(data), stop_before_pixels=header_only)
    except Exception:  # noqa: BLE001  (as in decode: any parser failure, never its words)
        raise DicomError(Problem.UNREADABLE) from None
    if not ds and not ds.file_meta:
        raise DicomError(Problem.UNREADABLE)
    return ds


def _truncated(ds: Dataset, size: int) -> bool:
    """Whether the file ends inside an element. pydicom reads a cut file without complaint:
    a value shorter than its declared length, or, for encapsulated pixel data cut before
    its delimiter, no Pixel Data element at all (the bytes after the last element whole)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.uid import DeflatedExplicitVRLittleEndian
    if not ds:
        return True
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return False  # offsets are in the inflated stream; zlib refuses a cut one (UNREADABLE)
    last = ds.get_item(max(ds.keys()))
    if not isinstance(last, RawDataElement) or last.length == 0xFFFFFFFF:
        return False  # a sequence or encapsulated pixel data: pydicom parsed it whole
    end = last.value_tell + last.length
    return end > size or (end < size and not any(tag in ds for tag in _PIXEL_TAGS))


def _int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        return int(ds.get(keyword, default))
    except (TypeError, ValueError):
        return default


def _is_lateral(ds: Dataset) -> bool:
    if str(ds.get("ViewPosition", "")).strip().upper() in LATERAL_VIEWS:
        return True
    return any(str(item.get("CodeValue", "")).strip() in LATERAL_CODES
               for item in ds.get("ViewCodeSequence", []))


def _is_chest(ds: Dataset) -> bool:
    part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    return not part or any(word in part for word in CHEST_WORDS)


def _check_syntax(ds: Dataset) -> None:
    uid = ds.file_meta.get("TransferSyntaxUID")
    if uid is None:
        raise DicomError(Problem.UNREADABLE)
    if not uid.is_compressed:
        return
    from pydicom.pixels import get_decoder
    try:
        available = get_decoder(uid).is_available
    except NotImplementedError:  # pydicom knows no decoder for it at all (MPEG, JPIP, private)
        available = False
    if not available:
        raise DicomError(Problem.UNSUPPORTED_SYNTAX, uid.name)


# --- rendering --------------------------------------------------------------------------------
def _render(ds: Dataset, photometric: str) -> Image.Image:
    """Modality LUT (rescale), then VOI LUT or window, then 0-255 over the output range;
    MONOCHROME1 (or an INVERSE presentation LUT) inverted. Colour films (rare secondary
    captures) become luminance."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
    arr = ds.pixel_array
    if photometric in _COLOUR:  # pydicom returns RGB for every YBR flavour
        top = 2 ** _int(ds, "BitsStored", 8) - 1
        rgb = np.clip(np.rint(arr.astype(np.float64) * 255 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(rgb, "RGB").convert("L")
    lo, hi = _modality_range(ds)
    arr = apply_modality_lut(arr, ds)
    voi = ds.get("VOILUTSequence")
    if voi and "LUTDescriptor" in voi[0] and "LUTData" in voi[0]:
        lo, hi = 0, 2 ** int(voi[0].LUTDescriptor[2]) - 1
    arr = apply_voi_lut(arr, ds)  # the LUT if there is one, else the window, else unchanged
    gray = np.array(arr, dtype=np.float32)  # a copy, worked on in place: a 64 Mpx film is big
    gray -= lo
    gray *= 255 / max(hi - lo, 1)
    np.clip(np.rint(gray, out=gray), 0, 255, out=gray)
    # MONOCHROME1 is shown inverted; so is an INVERSE presentation LUT, which DX files also
    # carry with MONOCHROME1 to say the same thing (not a second inversion)
    inverse = str(ds.get("PresentationLUTShape", "")).strip() == "INVERSE"
    if photometric == "MONOCHROME1" or inverse:
        np.subtract(255, gray, out=gray)
    return Image.fromarray(gray.astype(np.uint8), "L")


def _modality_range(ds: Dataset) -> tuple[float, float]:
    """The range of values after the modality LUT: the stored range (BitsStored, signed or
    not) through slope and intercept, or the Modality LUT's output range. pydicom's
    windowing maps into this same range, and a film without a window spans it."""
    if ds.get("ModalityLUTSequence"):
        return 0, 2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    bits = _int(ds, "BitsStored", 8)
    lo, hi = (0, 2 ** bits - 1) if not _int(ds, "PixelRepresentation", 0) else (
        -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    return lo, hi
