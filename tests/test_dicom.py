"""DICOM films through the one acceptance rule (``rules.open_image``): every layout a hospital
sends renders as a viewer shows it, to within one grey level of the same film as PNG; every
file that is not one frontal chest film is refused with its reason; no header value ever
reaches a message or a log."""
from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, JPEG2000Lossless, JPEGLossless, JPEGLosslessSV1,
                         JPEGLSLossless, RLELossless)

from pipeline.data import dicom
from pipeline.data.images import ImageInfo, decode_bytes, inspect_image
from pipeline.data.rules import ImageError, open_image
from tests import dicoms as D
from tests import reasons as R

# pydicom's own warning about a cut file, which names no header value (test_no_header_value_...
# checks every warning), seen in every test that reads one
pytestmark = pytest.mark.filterwarnings("ignore:End of file reached before delimiter")

PIXELS = D.film()
PNG = D.REFERENCE_PNG.read_bytes()

GOOD = {
    "MONOCHROME2 8-bit": lambda: D.monochrome2_bytes(PIXELS, 8),
    "MONOCHROME2 12-bit": lambda: D.monochrome2_bytes(PIXELS, 12),
    "MONOCHROME2 16-bit": lambda: D.monochrome2_bytes(PIXELS, 16),
    "MONOCHROME1 8-bit": lambda: D.monochrome1_bytes(PIXELS, 8),
    "MONOCHROME1 12-bit": lambda: D.monochrome1_bytes(PIXELS, 12),
    "MONOCHROME1 16-bit": lambda: D.monochrome1_bytes(PIXELS, 16),
    "implicit VR 12-bit": lambda: D.monochrome2_bytes(PIXELS, 12, ImplicitVRLittleEndian),
    "deflated 12-bit": lambda: D.monochrome2_bytes(PIXELS, 12, DeflatedExplicitVRLittleEndian),
    "window centre/width": lambda: D.windowed_bytes(PIXELS),
    "VOI LUT over a window": lambda: D.voi_lut_bytes(PIXELS),
    "rescale slope/intercept": lambda: D.rescaled_bytes(PIXELS),
    "rescale and window": lambda: D.rescaled_bytes(PIXELS, windowed=True),
    "RLE 12-bit": lambda: D.monochrome2_bytes(PIXELS, 12, RLELossless),
    "RLE MONOCHROME1 16-bit": lambda: D.monochrome1_bytes(PIXELS, 16, RLELossless),
    "JPEG 2000 lossless MONOCHROME1": lambda: D.monochrome1_bytes(PIXELS, 16, JPEG2000Lossless),
    "JPEG 2000 lossless windowed": lambda: D.windowed_bytes(PIXELS, JPEG2000Lossless),
    "JPEG lossless SV1 12-bit": lambda: D.monochrome2_bytes(PIXELS, 12, JPEGLosslessSV1),
    "JPEG lossless SV1 windowed": lambda: D.windowed_bytes(PIXELS, JPEGLosslessSV1),
    "JPEG lossless process 14 MONOCHROME1": lambda: D.monochrome1_bytes(PIXELS, 12, JPEGLossless),
    "JPEG-LS lossless 16-bit": lambda: D.monochrome2_bytes(PIXELS, 16, JPEGLSLossless),
    "MONOCHROME1 with INVERSE presentation LUT (DX)":
        lambda: D.monochrome1_bytes(PIXELS, 12, PresentationLUTShape="INVERSE"),
    "MONOCHROME2 with INVERSE presentation LUT":
        lambda: D.monochrome1_bytes(PIXELS, 12, PhotometricInterpretation="MONOCHROME2",
                                    PresentationLUTShape="INVERSE"),
    "no body part": lambda: D.body_part_bytes(PIXELS, None),
    "body part THORAX": lambda: D.body_part_bytes(PIXELS, "THORAX"),
    "view AP": lambda: D.lateral_bytes(PIXELS, "AP"),
}


def _gray(data: bytes) -> np.ndarray:
    with open_image(data) as img:
        assert img.mode == "L"
        return np.asarray(img).astype(int)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_dicom_renders_as_the_png(name):
    data = GOOD[name]()
    assert dicom.is_dicom(data)
    assert np.abs(_gray(data) - _gray(PNG)).max() <= 1
    got, want = decode_bytes(data, 96).astype(int), decode_bytes(PNG, 96).astype(int)
    assert got.shape == want.shape == (96, 96, 3) and np.abs(got - want).max() <= 1
    assert inspect_image(data) == ImageInfo(224, 224, "L", 1)


def test_the_reference_is_far_from_a_naive_read():
    """The comparisons above can fail: read without its window (its BitsStored range), the
    windowed film is far from the PNG, and a MONOCHROME1 film read as MONOCHROME2 is its
    negative."""
    windowed = D.windowed_bytes(PIXELS, WindowCenter=32768, WindowWidth=65536)
    assert np.abs(_gray(windowed) - _gray(PNG)).max() > 10
    negative = D.monochrome1_bytes(PIXELS, 8, PhotometricInterpretation="MONOCHROME2")
    assert np.abs(_gray(negative) - _gray(PNG)).max() > 200


@pytest.mark.parametrize("film", D.JPEG_FILMS, ids=lambda path: path.name)
def test_jpeg_baseline_renders_as_its_jpeg(film):
    """A lossy export: the DICOM renders as the same JPEG read as a JPEG (a real film of
    each class, as an 8-bit gray JPEG)."""
    jpeg = D.gray_jpeg(D.film(film))
    assert np.abs(_gray(D.jpeg_baseline_bytes(jpeg)) - _gray(jpeg)).max() <= 1


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, RLELossless])
def test_colour_dicom_renders_as_pillow_makes_it_gray(syntax):
    """A colour secondary capture (a real film, tinted so that its channels differ) becomes
    its luminance, as Pillow's convert("L") makes it of the same pixels."""
    rgb = np.stack([PIXELS, PIXELS // 2 + 60, 255 - PIXELS], axis=-1)
    want = np.asarray(Image.fromarray(rgb, "RGB").convert("L")).astype(int)
    assert np.abs(_gray(D.rgb_bytes(rgb, syntax)) - want).max() <= 1


BAD = {
    "truncated in the pixel data": (lambda: D.truncated_bytes(PIXELS, 0.6), R.DICOM_TRUNCATED),
    "truncated in the header": (lambda: D.truncated_bytes(PIXELS, 0.005), R.DICOM_TRUNCATED),
    "truncated RLE": (lambda: D.truncated_bytes(PIXELS, 0.5, RLELossless), R.DICOM_TRUNCATED),
    "truncated JPEG 2000": (lambda: D.truncated_bytes(PIXELS, 0.9, JPEG2000Lossless),
                            R.DICOM_TRUNCATED),
    "no pixel data": (lambda: D.no_pixel_data_bytes(PIXELS), R.DICOM_NO_PIXEL_DATA),
    "multi-frame": (lambda: D.multi_frame_bytes(PIXELS), R.DICOM_MULTI_FRAME),
    "lateral LL": (lambda: D.lateral_bytes(PIXELS, "LL"), R.DICOM_LATERAL),
    "lateral RL": (lambda: D.lateral_bytes(PIXELS, "RL"), R.DICOM_LATERAL),
    "lateral LATERAL": (lambda: D.lateral_bytes(PIXELS, "LATERAL"), R.DICOM_LATERAL),
    "lateral by view code": (lambda: D.lateral_by_code_bytes(PIXELS), R.DICOM_LATERAL),
    "body part SKULL": (lambda: D.body_part_bytes(PIXELS, "SKULL"), R.DICOM_NOT_CHEST),
    "body part HAND": (lambda: D.body_part_bytes(PIXELS, "HAND"), R.DICOM_NOT_CHEST),
    "MPEG-2 video": (lambda: D.unsupported_syntax_bytes(PIXELS),
                     R.unsupported_transfer_syntax("MPEG2 Main Profile / Main Level")),
    "structured report": (D.structured_report_bytes, R.DICOM_NOT_AN_IMAGE),
    "palette colour": (
        lambda: D.monochrome2_bytes(PIXELS, PhotometricInterpretation="PALETTE COLOR"),
        R.DICOM_UNSUPPORTED_COLOUR),
    "pixel data too short for its header": (
        lambda: D.monochrome2_bytes(PIXELS, 8, Rows=300), R.DICOM_UNDECODABLE),
    "corrupt RLE stream": (lambda: _corrupt_rle(), R.DICOM_UNDECODABLE),
    "garbage after the magic": (lambda: bytes(128) + b"DICM" + b"\xff" * 64, R.DICOM_UNREADABLE),
}


def _corrupt_rle() -> bytes:
    """An RLE film whose header puts its one segment far past the end of the data."""
    data = bytearray(D.monochrome2_bytes(PIXELS, 8, RLELossless))
    table = data.index(b"\xfe\xff\x00\xe0")  # the basic offset table, then the fragment
    header = data.index(b"\xfe\xff\x00\xe0", table + 8) + 8
    data[header + 4:header + 8] = (0xFFFFFF).to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_dicom_is_refused_with_its_reason(name):
    make, reason = BAD[name]
    data = make()
    assert dicom.is_dicom(data)
    for read in (open_image, inspect_image, lambda d: decode_bytes(d, 64)):
        with pytest.raises(ImageError, match=f"^{re.escape(reason)}$") as refused:
            read(data)
        assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_pixel_limit_checked_before_decoding(monkeypatch):
    """A header that declares 9000x8000 (72 Mpx) over 224x224 pixels' worth of data: refused
    by the limit, named by its size; decoded first, it would fail with another reason."""
    from pipeline import config
    monkeypatch.setattr(config, "MAX_IMAGE_PIXELS", 64_000_000)
    data = D.monochrome2_bytes(PIXELS, 8, Rows=8000, Columns=9000)
    with pytest.raises(ImageError, match=f"^{re.escape(R.over_pixel_limit(9000, 8000))}$"):
        decode_bytes(data, 64)
    with pytest.raises(ImageError, match=re.escape(R.DICOM_UNDECODABLE)):
        inspect_image(D.monochrome2_bytes(PIXELS, 8, Rows=300, Columns=300))
    good = D.monochrome2_bytes(PIXELS, 12)
    assert inspect_image(good, max_pixels=224 * 224).width == 224
    with pytest.raises(ImageError, match=re.escape(R.over_pixel_limit(224, 224, 224 * 224 - 1))):
        inspect_image(good, max_pixels=224 * 224 - 1)


def test_is_dicom_by_content():
    assert dicom.is_dicom(D.monochrome2_bytes(PIXELS))
    for other in (PNG, D.JPEG_FILMS[0].read_bytes(), b"", b"DICM", bytes(128) + b"DIC"):
        assert not dicom.is_dicom(other)
    assert dicom.is_dicom(bytes(128) + b"DICM")


def test_identifiers_are_read_from_the_header():
    data = D.voi_lut_bytes(PIXELS, PatientID="P-0042", AccessionNumber="A-77")
    ids = dicom.read_identifiers(data)
    assert ids == dicom.DicomIdentifiers(
        patient_id="P-0042", accession_number="A-77",
        study_instance_uid=D.PATIENT["StudyInstanceUID"],
        series_instance_uid=D.PATIENT["SeriesInstanceUID"],
        sop_instance_uid=D.PATIENT["SOPInstanceUID"])
    for value in ("P-0042", "A-77", D.PATIENT["StudyInstanceUID"]):
        assert value not in repr(ids) and value not in str(ids)
    bare = D.monochrome2_bytes(PIXELS, AccessionNumber="")
    assert dicom.read_identifiers(bare).accession_number is None
    # A header alone is enough: a file cut in its pixel data still names its patient.
    cut = D.truncated_bytes(PIXELS, 0.6)
    assert dicom.read_identifiers(cut).patient_id == D.PATIENT["PatientID"]
    with pytest.raises(dicom.DicomError):
        dicom.read_identifiers(bytes(128) + b"DICM" + b"\xff" * 16)


def _every_bad_file() -> list[bytes]:
    return [make() for make, _ in BAD.values()]


def test_no_header_value_reaches_a_message_or_a_log(caplog, capfd, recwarn):
    """Patient data (tests.dicoms.PATIENT, and malformed values pydicom would complain
    about, quoting them) is in no exception message, log record, warning or output."""
    caplog.set_level(logging.DEBUG)
    odd = {"PatientBirthDate": "2019-03-14-Q9", "StudyDate": "DATE-X-1234", "PatientSex": "QQQ-77"}
    secrets = [str(value) for value in [*D.PATIENT.values(), *odd.values()]]
    for data in [*_every_bad_file(), D.monochrome2_bytes(PIXELS, 12, **odd),
                 D.monochrome2_bytes(PIXELS, 12, JPEGLosslessSV1, **odd)]:
        try:
            open_image(data)
            dicom.read_identifiers(data)
        except (ImageError, dicom.DicomError) as err:
            assert not [s for s in secrets if s in str(err) or s in repr(err)], err
    out, err = capfd.readouterr()
    seen = "\n".join([caplog.text, out, err, *(str(w.message) for w in recwarn)])
    assert not [s for s in secrets if s in seen], seen
    assert [s for s in secrets if s in D.monochrome2_bytes(PIXELS, **odd).decode("latin-1")]
