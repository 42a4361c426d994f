"""Decoding rules for every kind of file a hospital export can hold."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from pipeline import config
from pipeline.data.images import ImageError, decode_bytes, struct_to_rgb
from tests.trees import image_bytes, png_header_only, write_image


def _bytes(tmp_path, name, *args, **kw) -> bytes:
    return write_image(tmp_path / name, *args, **kw).read_bytes()


@pytest.mark.parametrize("mode,name", [("L", "g.png"), ("RGB", "c.png"), ("RGBA", "a.png"),
                                       ("L", "g.jpg"), ("RGB", "c.jpeg")])
def test_decode_equals_keras_load_img(tmp_path, mode, name):
    data = _bytes(tmp_path, name, 200, 150, mode)
    want = keras.utils.img_to_array(keras.utils.load_img(
        tmp_path / name, target_size=(64, 64), interpolation="bilinear")).astype(np.uint8)
    got = decode_bytes(data, 64, draft=False)
    assert got.shape == (64, 64, 3) and got.dtype == np.uint8
    assert np.array_equal(got, want)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.full((32, 32), 40000, dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "w.png")
    got = decode_bytes((tmp_path / "w.png").read_bytes(), 16)
    assert got.shape == (16, 16, 3) and int(got[0, 0, 0]) == 40000 * 255 // 65535


def test_cmyk_jpeg_decodes(tmp_path):
    got = decode_bytes(_bytes(tmp_path, "k.jpg", 80, 60, "CMYK"), 32)
    assert got.shape == (32, 32, 3)


@pytest.mark.parametrize("data,reason", [(b"", "empty file"), (b"hello", "not a JPEG, PNG or DICOM image")])
def test_bad_bytes_raise_with_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_bytes(data, 32)


def test_truncated_jpeg_is_rejected(tmp_path):
    data = _bytes(tmp_path, "t.jpg", 300, 300, "RGB")
    with pytest.raises(ImageError, match=r"cannot be decoded \("):
        decode_bytes(data[: len(data) // 2], 32)


def test_pixel_limit_checked_before_decoding(monkeypatch):
    """decode_bytes refuses by the header's size before decoding: these bytes declare
    9000x8000 = 72 Mpx, over the 64 Mpx default, and hold no pixel data, so a decode first
    would fail with another reason."""
    data = png_header_only(9000, 8000)
    monkeypatch.setattr(config, "MAX_IMAGE_PIXELS", 64_000_000)  # the default, whatever the env
    with pytest.raises(ImageError, match=r"^9000x8000 = 72,000,000 pixels exceeds the limit "
                                         r"of 64,000,000 "):
        decode_bytes(data, 32)
    # Such bytes with a size under the limit reach the decoder and fail there, differently.
    with pytest.raises(ImageError) as decoded:
        decode_bytes(png_header_only(90, 80), 32)
    assert "exceeds the limit" not in str(decoded.value)


def test_struct_bgr_becomes_rgb():
    bgr = np.zeros((4, 4, 3), dtype=np.uint8)
    bgr[..., 0] = 255  # blue in BGR order
    got = struct_to_rgb(4, 4, 3, bgr.tobytes(), 4)
    assert got[0, 0].tolist() == [0, 0, 255]


def test_struct_from_failed_decode_is_rejected():
    with pytest.raises(ImageError, match="could not decode"):
        struct_to_rgb(-1, -1, -1, b"", 8)


def test_large_film_is_refused_by_the_documented_limit(tmp_path):
    """12000x12000 is past Pillow's own bomb warning (89 Mpx): the reason must still be ours,
    and naming the limit a user can change."""
    path = tmp_path / "huge.jpeg"
    Image.new("L", (12000, 12000), 128).save(path, quality=50)
    with pytest.raises(ImageError, match=r"12000x12000 = 144,000,000 pixels exceeds the limit "
                                         r"of 64,000,000 \(XRAY_MAX_IMAGE_PIXELS\)"):
        decode_bytes(path.read_bytes(), 32)


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "TIFF"])
def test_other_formats_named_jpeg_are_refused_as_ingest_refuses_them(tmp_path, fmt):
    """One acceptance rule: a BMP named .jpeg is not a film for training either."""
    data = image_bytes(40, 30, "L", fmt)
    with pytest.raises(ImageError, match="not a JPEG, PNG or DICOM image"):
        decode_bytes(data, 32)


def test_draft_decode_reads_a_large_jpeg_at_reduced_scale(tmp_path):
    """Draft mode (the default): close to the full decode (same film, a DCT-scaled read), and not applied to
    a JPEG under twice the size, nor to a PNG; a truncated large JPEG is still refused."""
    gradient = np.add.outer(np.arange(900), np.arange(1200)) * 255 // 2100
    Image.fromarray(gradient.astype(np.uint8), "L").save(tmp_path / "big.jpeg", quality=92)
    data = (tmp_path / "big.jpeg").read_bytes()
    full, draft = decode_bytes(data, 299, draft=False), decode_bytes(data, 299, draft=True)
    assert draft.shape == full.shape == (299, 299, 3)
    assert not np.array_equal(draft, full) and np.array_equal(decode_bytes(data, 299), draft)
    assert np.abs(draft.astype(int) - full.astype(int)).mean() < 2.0
    small = _bytes(tmp_path, "small.jpeg", 500, 400)
    assert np.array_equal(decode_bytes(small, 299, draft=True), decode_bytes(small, 299, draft=False))
    png = _bytes(tmp_path, "big.png", 1200, 900)
    assert np.array_equal(decode_bytes(png, 299, draft=True), decode_bytes(png, 299, draft=False))
    with pytest.raises(ImageError, match=r"cannot be decoded \("):
        decode_bytes(data[: len(data) // 2], 299, draft=True)
