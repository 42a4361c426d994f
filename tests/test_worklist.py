"""The worklist page's pictures, order, cap and escaping (tests/test_browser.py opens it)."""
from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
from PIL import Image

from pipeline.data.rules import Skipped
from pipeline.report.worklist import (WorklistFilm, WorklistStudy, order_studies, overlay_png,
                                      render_worklist, thumbnail_png, write_worklist)

PAGE = dict(model_name="InceptionV3", model_uri="file:/m", method="featurizer+lr",
            weights="none", threshold=0.5, data="file:/in")


def _png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG, in order."""
    names, at = [], 8
    while at < len(data):
        length, name = struct.unpack(">I4s", data[at:at + 8])
        names.append(name.decode())
        at += 12 + length
    return names


@pytest.mark.parametrize("shape,mode,size", [
    ((600, 900), "L", (256, 171)), ((900, 600, 3), "RGB", (171, 256)),
    ((120, 80, 1), "L", (80, 120)),  # small films are not enlarged
])
def test_thumbnail_keeps_the_aspect_ratio(shape, mode, size):
    film = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    image = _png(thumbnail_png(film))
    assert (image.mode, image.size) == (mode, size)
    # Pixels only: no text or other metadata chunk travels with a film's picture.
    assert set(_chunks(thumbnail_png(film))) <= {"IHDR", "PLTE", "IDAT", "IEND"}


def test_overlay_colours_the_hot_part_and_leaves_the_cold_part_alone():
    film = np.full((300, 600), 128, dtype=np.uint8)
    heat = np.zeros((4, 8))
    heat[:2, :4] = 1.0  # the top-left quarter, in the heatmap's own (smaller) grid
    data = overlay_png(film, heat)
    image = np.asarray(_png(data).convert("RGB"), dtype=int)
    assert image.shape == (128, 256, 3)
    assert set(_chunks(data)) <= {"IHDR", "PLTE", "IDAT", "IEND"}
    cold, hot = image[100:, 200:], image[:20, :50]
    assert np.abs(cold - 128).max() <= 2
    assert np.ptp(hot.mean(axis=(0, 1))) > 60  # turbo's red end, not grey


@pytest.mark.parametrize("film,heat,message", [
    (np.zeros((10, 10), np.float32), np.zeros((2, 2)), "uint8"),
    (np.zeros((10, 10, 4), np.uint8), np.zeros((2, 2)), "HxWx3"),
    (np.zeros((10, 10), np.uint8), np.full((2, 2), np.nan), "finite 2-D"),
    (np.zeros((10, 10), np.uint8), np.zeros((2, 2, 1)), "finite 2-D"),
])
def test_bad_arrays_are_refused(film, heat, message):
    with pytest.raises(ValueError, match=message):
        overlay_png(film, heat)


def _study(key: str, score: float, flagged: bool, *films: float, patient: str | None = None):
    return WorklistStudy(key, patient, None, None, score, flagged,
                         [WorklistFilm(f"{key}/{i}", s, s > 0.5) for i, s in enumerate(films)])


def test_flagged_studies_come_first_by_score_and_films_by_score():
    studies = [_study("low", 0.1, False, 0.1), _study("mid", 0.6, True, 0.2, 0.6),
               _study("top", 0.9, True, 0.9), _study("near", 0.45, False, 0.45)]
    ordered = order_studies(studies)
    assert [s.key for s in ordered] == ["top", "mid", "near", "low"]
    assert [f.score for f in ordered[1].films] == [0.6, 0.2]


def test_every_string_is_escaped():
    hostile = '"><script>x()</script>'
    studies = [WorklistStudy(hostile, hostile, hostile, hostile, 0.9, True,
                             [WorklistFilm(f"file:/in/{hostile}", 0.9, True)])]
    page = render_worklist(studies, **{**PAGE, "model_name": hostile, "model_uri": hostile,
                                       "data": hostile, "threshold_source": hostile},
                           skipped=[Skipped(hostile, hostile)], warnings=[hostile])
    assert "<script" not in page
    # title and heading's model name, model URI, data, threshold source, the three identifiers,
    # the film's URI, the skipped file and its reason, the warning
    assert page.count("&quot;&gt;&lt;script&gt;x()&lt;/script&gt;") == 12


def test_pictures_stop_at_max_images_and_the_page_says_so():
    png = thumbnail_png(np.zeros((20, 20), np.uint8))
    films = [WorklistFilm(f"file:/f{i}", 0.9 - i / 10, True, png, png) for i in range(3)]
    study = WorklistStudy("s", "P1", None, None, 0.9, True, films)
    capped = render_worklist([study], **PAGE, max_images=2)
    assert capped.count("<img") == 4 and "first 2 of the 3 films listed (max_images=2)" in capped
    full = render_worklist([study], **PAGE)
    assert full.count("<img") == 6 and "max_images" not in full


@pytest.mark.parametrize("method,weights,banner", [
    ("featurizer+lr", "none", True), ("featurizer+lr", "imagenet", False),
    ("finetune-cnn", "none", False),  # trained from random init: not frozen random features
])
def test_the_random_weights_banner_follows_the_report(method, weights, banner):
    page = render_worklist([], **{**PAGE, "method": method, "weights": weights})
    assert ("randomly initialised network" in page) is banner


def test_write_worklist_is_640_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        studies = iter([_study("a", 0.9, True, 0.9, 0.3), _study("b", 0.2, False, 0.2)])
        counts = write_worklist(tmp_path / "worklist.html", studies, **PAGE,
                                skipped=[Skipped("file:/x", "empty file (0 bytes)")])
    finally:
        os.umask(old)
    assert (tmp_path / "worklist.html").stat().st_mode & 0o777 == 0o640
    assert counts == {"films": 3, "films_flagged": 1, "studies": 2, "studies_flagged": 1,
                      "skipped": 1}


def test_run_counts_head_a_page_that_lists_only_the_first_rows():
    top = [_study("a", 0.9, True, 0.9)]
    run = {"films": 40, "films_flagged": 3, "studies": 30, "studies_flagged": 2, "skipped": 7}
    page = render_worklist(top, **PAGE, skipped=[Skipped("file:/x", "empty file (0 bytes)")],
                           counts=run)
    assert "Films scored: <b>40</b> (flagged <b>3</b>)" in page
    assert "the first 1 of 30 studies" in page and "the first 1 of 7 files" in page


@pytest.mark.parametrize("counts,message", [
    ({"films": 0, "films_flagged": 0, "studies": 1, "studies_flagged": 1, "skipped": 0},
     "films 0 < 1"),
    ({"films": 5}, "exactly the keys"),
])
def test_run_counts_below_the_rows_are_refused(counts, message):
    with pytest.raises(ValueError, match=message):
        render_worklist([_study("a", 0.9, True, 0.9)], **PAGE, counts=counts)
