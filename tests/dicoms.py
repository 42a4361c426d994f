"""DICOM test files made with pydicom from a real film's pixels (tests/fixtures/films), good
ones in every layout a hospital sends and bad ones for every refusal. Each ``*_bytes``
function returns the file's bytes; ``ids`` sets the identifiers and other patient data (the
defaults are made-up values, distinctive enough to search logs and messages for)."""
from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (MPEG2MPML, BasicTextSRStorage, DigitalXRayImageStorageForPresentation,
                         ExplicitVRLittleEndian, JPEGBaseline8Bit,
                         JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, UID)

FILMS = Path(__file__).parent / "fixtures" / "films"
#: The reference film: a real NORMAL film (224 px) converted to 8-bit gray PNG.
REFERENCE_PNG = FILMS / "NORMAL2-IM-0845-0001.png"
JPEG_FILMS = sorted(FILMS.glob("*.jpeg"))

#: Made-up patient data; none of it may ever appear in a message or a log.
PATIENT = {
    "PatientID": "PID-7F3A91-TEST",
    "PatientName": "Testpatient^Janina",
    "PatientBirthDate": "20190314",
    "AccessionNumber": "ACC-558120-TEST",
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.10011001",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.10022002",
    "SOPInstanceUID": "1.2.826.0.1.3680043.8.498.10033003",
    "StudyDate": "20240229",
    "InstitutionName": "Testhospital Nord",
}


def film(path: Path = REFERENCE_PNG) -> np.ndarray:
    """A film's pixels as ``uint8[rows, cols]`` gray, as Pillow reads them."""
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


def dataset(stored: np.ndarray, bits_stored: int = 8, photometric: str = "MONOCHROME2",
            signed: bool = False, **elements) -> Dataset:
    """A DX "for presentation" dataset holding ``stored`` (rows x cols, or frames x rows x
    cols) as native pixel data, with the patient data and ``elements`` (keyword=value)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.update({keyword: value for keyword, value in PATIENT.items()})
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.Rows, ds.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
    dtype = f"{'i' if signed else 'u'}{ds.BitsAllocated // 8}"
    ds.PixelData = stored.astype(dtype).tobytes()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def to_bytes(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    """A DICOM Part 10 file (preamble, "DICM", file meta) of ``ds`` in ``syntax``; lossless
    compressions via pydicom's encoders (RLE, JPEG 2000) or GDCM (JPEG lossless, JPEG-LS)."""
    syntax = UID(syntax)
    if syntax in (JPEGLossless, JPEGLosslessSV1, JPEGLSLossless):
        return _gdcm_transcode(to_bytes(ds), syntax)
    if syntax.is_compressed:
        ds.compress(syntax)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    return _save(ds)


def _save(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _gdcm_transcode(data: bytes, syntax: UID) -> bytes:
    """GDCM re-encodes the pixel data (pydicom has no JPEG lossless encoder, and its JPEG-LS
    one needs pyjpegls, which nothing else needs)."""
    import gdcm
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "in.dcm"), Path(tmp, "out.dcm")
        src.write_bytes(data)
        reader = gdcm.ImageReader()
        reader.SetFileName(str(src))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(syntax)))
        change.SetInput(reader.GetImage())
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(dst))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
        return dst.read_bytes()


# --- good films: each renders back to ``pixels`` within one grey level -----------------------
def stored_values(pixels: np.ndarray, bits: int) -> np.ndarray:
    """``pixels`` (8-bit) spread over ``bits``: as is, x16 (12-bit), x257 (16-bit)."""
    return pixels.astype(np.int64) * {8: 1, 12: 16, 16: 257}[bits]


def monochrome2_bytes(pixels: np.ndarray, bits: int = 8,
                      syntax: str = ExplicitVRLittleEndian, **elements) -> bytes:
    """No window: a viewer spans the BitsStored range."""
    return to_bytes(dataset(stored_values(pixels, bits), bits, **elements), syntax)


def monochrome1_bytes(pixels: np.ndarray, bits: int = 8,
                      syntax: str = ExplicitVRLittleEndian, **elements) -> bytes:
    """Stored inverted (white is 0), as CR plates often are."""
    stored = (2 ** bits - 1) - stored_values(pixels, bits)
    return to_bytes(dataset(stored, bits, "MONOCHROME1", **elements), syntax)


def windowed_bytes(pixels: np.ndarray, syntax: str = ExplicitVRLittleEndian,
                   **elements) -> bytes:
    """16-bit values 5000 + 64 x pixel; a linear window maps exactly 5000..21320 to the
    whole output range, so rendered it is ``pixels`` again (and ignoring the window is not)."""
    stored = 5000 + 64 * pixels.astype(np.int64)
    ds = dataset(stored, 16, **{"WindowCenter": 13160.5, "WindowWidth": 16321, **elements})
    return to_bytes(ds, syntax)


def voi_lut_bytes(pixels: np.ndarray, syntax: str = ExplicitVRLittleEndian,
                  **elements) -> bytes:
    """12-bit values 7 + 16 x pixel and a 16-bit VOI LUT that maps them back, plus a window
    that would give a very different image: the LUT is what a viewer applies."""
    stored = 7 + 16 * pixels.astype(np.int64)
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.add_new("LUTData", "US", [int(np.clip((x - 7) // 16, 0, 255)) * 257 for x in range(4096)])
    ds = dataset(stored, 12, **{"WindowCenter": 100, "WindowWidth": 50, **elements})
    ds.VOILUTSequence = Sequence([lut])
    return to_bytes(ds, syntax)


def rescaled_bytes(pixels: np.ndarray, windowed: bool = False,
                   syntax: str = ExplicitVRLittleEndian, **elements) -> bytes:
    """16-bit values 257 x pixel with slope 0.5 and intercept -1024 (so values are -1024 to
    31743.5), without a window (spans the rescaled range) or with one over that range."""
    window = {"WindowCenter": -1024 + 32767.5 / 2 + 0.5, "WindowWidth": 32768.5} if windowed else {}
    ds = dataset(stored_values(pixels, 16), 16,
                 **{"RescaleSlope": 0.5, "RescaleIntercept": -1024, **window, **elements})
    return to_bytes(ds, syntax)


def jpeg_baseline_bytes(jpeg: bytes, **elements) -> bytes:
    """An 8-bit gray JPEG (a hospital's lossy export) encapsulated as it is."""
    with Image.open(io.BytesIO(jpeg)) as img:
        assert img.mode == "L", img.mode
        pixels = np.asarray(img)
    ds = dataset(pixels, 8, **elements)
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    return _save(ds)


def rgb_bytes(rgb: np.ndarray, syntax: str = ExplicitVRLittleEndian) -> bytes:
    """A colour secondary capture (``uint8[rows, cols, 3]``, RGB, interleaved)."""
    ds = dataset(rgb[..., 0], 8, "RGB", SamplesPerPixel=3, PlanarConfiguration=0)
    ds.PixelData = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return to_bytes(ds, syntax)


def gray_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, "JPEG", quality=quality)
    return out.getvalue()


# --- bad files ------------------------------------------------------------------------------
def truncated_bytes(pixels: np.ndarray, keep: float = 0.6,
                    syntax: str = ExplicitVRLittleEndian) -> bytes:
    """A good file cut at ``keep`` of its length (an interrupted transfer)."""
    data = monochrome2_bytes(pixels, syntax=syntax)
    return data[:int(len(data) * keep)]


def no_pixel_data_bytes(pixels: np.ndarray) -> bytes:
    """An image's header (Rows, Columns, ...) with the Pixel Data element left out."""
    ds = dataset(pixels)
    del ds.PixelData
    return to_bytes(ds)


def multi_frame_bytes(pixels: np.ndarray) -> bytes:
    return to_bytes(dataset(np.stack([pixels, pixels[::-1]])))


def lateral_bytes(pixels: np.ndarray, view: str = "LL") -> bytes:
    return to_bytes(dataset(pixels, ViewPosition=view))


def lateral_by_code_bytes(pixels: np.ndarray) -> bytes:
    """A frontal View Position left empty, the view given only as a code (SNOMED CT's
    'left lateral'), as some modalities write it."""
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "399173006", "SCT"
    code.CodeMeaning = "left lateral"
    return to_bytes(dataset(pixels, ViewPosition="", ViewCodeSequence=Sequence([code])))


def body_part_bytes(pixels: np.ndarray, part: str | None) -> bytes:
    """``part`` as Body Part Examined; None leaves the element out."""
    ds = dataset(pixels)
    if part is None:
        del ds.BodyPartExamined
    else:
        ds.BodyPartExamined = part
    return to_bytes(ds)


def unsupported_syntax_bytes(pixels: np.ndarray, syntax: str = MPEG2MPML) -> bytes:
    """Encapsulated pixel data in a syntax nothing here decodes (MPEG-2 video)."""
    ds = dataset(pixels)
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    return _save(ds)


def structured_report_bytes() -> bytes:
    """A Basic Text SR: a DICOM file with the patient's data and no image at all."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = BasicTextSRStorage
    ds.update(dict(PATIENT))
    ds.Modality, ds.ValueType = "SR", "CONTAINER"
    item = Dataset()
    item.RelationshipType, item.ValueType, item.TextValue = "CONTAINS", "TEXT", "No acute findings."
    ds.ContentSequence = Sequence([item])
    return _save(ds)
