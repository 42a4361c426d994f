"""The screening worklist: one self-contained HTML page a clinician opens after a predict run.

Flagged studies come first, highest score first, then the rest; each study shows its
identifiers, its score and flag, and for each film a thumbnail and, when there is one, the
heatmap over it. Pictures are inline PNGs (``data:`` URIs): no external resource, no script,
so the page can be mailed or opened offline. ``max_images`` caps how many films get pictures,
so a run over thousands of films stays a page a browser opens.

The page holds patient identifiers and pixels: it is an output (written 640), and nothing
here logs either; ``write_worklist`` logs counts and sizes only.
"""
from __future__ import annotations

import html
import io
import logging
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image

from pipeline.data.rules import Skipped
from pipeline.report.page import DISCLAIMER, STYLE, png_src, random_weights_banner

log = logging.getLogger(__name__)

#: How strongly the hottest part of a heatmap covers the film (0: invisible, 1: opaque).
HEAT_ALPHA = 0.55
HEAT_COLORMAP = "turbo"


# --- pictures -----------------------------------------------------------------------------------
def _film_image(film: np.ndarray) -> Image.Image:
    """``film`` (uint8, HxW, HxWx1 or HxWx3) as a Pillow image, grey ("L") when its three
    channels are equal (a grey film decoded to RGB: a third of the pixels to encode); ValueError
    for anything else."""
    film = np.asarray(film)
    if film.ndim == 3 and film.shape[2] == 1:
        film = film[:, :, 0]
    if film.dtype != np.uint8 or not (film.ndim == 2 or (film.ndim == 3 and film.shape[2] == 3)) \
            or 0 in film.shape:
        raise ValueError(f"a film must be a non-empty uint8 HxW or HxWx3 array, "
                         f"not {film.dtype} {film.shape}")
    if film.ndim == 3 and (film[:, :, 0] == film[:, :, 1]).all() \
            and (film[:, :, 1] == film[:, :, 2]).all():
        film = film[:, :, 0]
    return Image.fromarray(film)


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` scaled so its longer side is at most ``max_side``, aspect ratio kept."""
    scale = min(1.0, max_side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    # zlib level 1: 3-6x faster than the default 6 for 10-15% more bytes (pictures are made
    # for every scored film); optimize=True would be 0.5% smaller for 1.6x the time.
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _thumbnail(film: np.ndarray, max_side: int) -> Image.Image:
    image = _film_image(film)
    size = _fit(image.size, max_side)
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def thumbnail_png(film: np.ndarray, max_side: int = 256) -> bytes:
    """A PNG of ``film`` whose longer side is at most ``max_side`` (grey stays 1 channel)."""
    return _png(_thumbnail(film, max_side))


#: turbo's 256 colours: looking a heat up here is matplotlib's own lookup, a third the time.
_HEAT_COLOURS = np.asarray(colormaps[HEAT_COLORMAP].colors, dtype=np.float32)


def overlay_png(film: np.ndarray, heatmap: np.ndarray, max_side: int = 256) -> bytes:
    """The thumbnail of ``film`` with ``heatmap`` over it: 2-D, finite, 1 = most evidence
    (values are clipped to [0, 1]); stretched to the film's shape whatever its own, coloured
    with turbo, and blended with an opacity that grows with the heat, so cold areas show the
    film untouched."""
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2 or 0 in heat.shape or not np.isfinite(heat).all():
        raise ValueError(f"a heatmap must be a non-empty, finite 2-D array, not {heat.shape}")
    base = _thumbnail(film, max_side).convert("RGB")
    heat = np.asarray(Image.fromarray(np.clip(heat, 0, 1)).resize(base.size,
                                                                 Image.Resampling.BILINEAR))
    heat = np.clip(heat, 0, 1)
    n = len(_HEAT_COLOURS)
    colour = _HEAT_COLOURS[np.minimum((heat * n).astype(np.intp), n - 1)]
    alpha = HEAT_ALPHA * heat[:, :, None]
    blended = (1 - alpha) * (np.asarray(base, dtype=np.float32) / 255) + alpha * colour
    # A 256-colour palette looks the same at thumbnail size and is 2-3x smaller than RGB;
    # the octree quantizer takes milliseconds where median cut takes a quarter of a second.
    image = Image.fromarray(np.round(blended * 255).astype(np.uint8))
    return _png(image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE))


# --- the page -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorklistFilm:
    """One scored film of a study; ``flagged`` means its score is above the threshold."""

    uri: str
    score: float
    flagged: bool
    #: ``thumbnail_png`` / ``overlay_png`` of the film, None when there is none.
    thumbnail_png: bytes | None = None
    overlay_png: bytes | None = None


@dataclass(frozen=True)
class WorklistStudy:
    """One study: its films and identifiers (None when the film did not say); ``score`` and
    ``flagged`` are the study's as the caller decides them (e.g. its highest film score)."""

    key: str
    patient_id: str | None
    accession_number: str | None
    study_uid: str | None
    score: float
    flagged: bool
    films: list[WorklistFilm] = field(default_factory=list)


def worklist_counts(studies: Sequence[WorklistStudy], skipped: Sequence[Skipped]) -> dict[str, int]:
    """The counts of the rows a page lists: its header's, unless the whole run's are given."""
    return {"films": sum(len(s.films) for s in studies),
            "films_flagged": sum(f.flagged for s in studies for f in s.films),
            "studies": len(studies),
            "studies_flagged": sum(s.flagged for s in studies),
            "skipped": len(skipped)}


def order_studies(studies: Iterable[WorklistStudy]) -> list[WorklistStudy]:
    """The page's order: flagged studies first, then the rest, each highest score first, and
    films likewise. The first ``max_images`` films in it get pictures: make thumbnails and
    heatmaps for those only."""
    ordered = sorted(studies, key=lambda s: (not s.flagged, -s.score, s.key))
    return [replace(s, films=sorted(s.films, key=lambda f: (-f.score, f.uri))) for s in ordered]


def _identifiers(study: WorklistStudy) -> str:
    esc = html.escape
    known = [(label, value) for label, value in (("Patient ID", study.patient_id),
                                                  ("Accession", study.accession_number),
                                                  ("Study UID", study.study_uid)) if value]
    if not known:  # the key is then the caller's own grouping, often the film's URI
        shown = {film.uri for film in study.films}
        key = "" if study.key in shown else f"<br><code>{esc(study.key)}</code>"
        return f'<span class="none">no study identifiers</span>{key}'
    return "<br>".join(f"{label} <b>{esc(value)}</b>" for label, value in known)


def _picture(png: bytes | None, alt: str, missing: str) -> str:
    if png is None:
        return f'<span class="none">{missing}</span>'
    return f'<img alt="{alt}" src="{png_src(png)}">'


def _film(film: WorklistFilm, pictures: bool) -> str:
    flag = "flagged" if film.flagged else "not flagged"
    if pictures:
        shown = (_picture(film.thumbnail_png, "film", "no thumbnail")
                 + _picture(film.overlay_png, "heatmap over the film", "no heatmap"))
    else:
        shown = '<span class="none">no pictures (past max_images)</span>'
    return (f'<figure class="{"flag" if film.flagged else "clear"}">{shown}<figcaption>'
            f"<code>{html.escape(film.uri)}</code><br>score {film.score:.3f} ({flag})"
            "</figcaption></figure>")


#: The worklist's look, over the evaluation report's (``page.STYLE``).
_STYLE = """body{max-width:80rem}td{vertical-align:top}
tr.flag>td:first-child{border-left:6px solid #c0392b}.flagtext{color:#c0392b}
figure{display:inline-block;margin:.2rem .4rem .4rem 0;vertical-align:top}
figure img{max-width:256px;max-height:256px;margin-right:.2rem;vertical-align:top}
figcaption{font-size:.8rem;max-width:520px;overflow-wrap:anywhere}
figure.flag figcaption{color:#c0392b;font-weight:bold}.none{color:#777;font-size:.8rem}
.counts{font-size:1.2rem}"""


def _run_counts(listed: dict[str, int], counts: Mapping[str, int] | None) -> dict[str, int]:
    """The header's counts: ``counts`` (the whole run's) when given, else those of the rows."""
    if counts is None:
        return listed
    if set(counts) != set(listed):
        raise ValueError(f"worklist counts must have exactly the keys {sorted(listed)}, "
                         f"not {sorted(counts)}")
    short = [k for k in listed if counts[k] < listed[k]]
    if short:
        raise ValueError("worklist counts below what the page lists: "
                         + ", ".join(f"{k} {counts[k]} < {listed[k]}" for k in short))
    return dict(counts)


def _listed(what: str, listed: int, total: int) -> str:
    """A line saying the page lists only the first of a longer list, or nothing."""
    return ("" if listed == total else
            f'<p class="warn">Listed here: the first {listed} of {total} {what}; '
            "the run's tables hold them all.</p>")


def render_worklist(studies: Iterable[WorklistStudy], *, model_name: str, model_uri: str,
                    method: str, weights: str, threshold: float, data: str,
                    threshold_source: str | None = None, skipped: Sequence[Skipped] = (),
                    warnings: Sequence[str] = (), created: str | None = None,
                    max_images: int = 200, counts: Mapping[str, int] | None = None) -> str:
    """The worklist page of ``studies`` scored by the model at ``model_uri`` on ``data``.

    ``method`` and ``weights`` decide the random-weights banner as on the evaluation report;
    ``created`` is the run's time (now, UTC, when None); the first ``max_images`` films in page
    order get pictures, the rest are listed without them and the page says so. ``counts``
    (``worklist_counts``' keys) are the whole run's when ``studies`` and ``skipped`` are only
    its first rows: the header shows them and the page says how many it lists; ValueError if
    they are below what it lists.
    """
    esc = html.escape
    rows = order_studies(studies)
    listed = worklist_counts(rows, skipped)
    counts = _run_counts(listed, counts)
    created = created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    pictured = min(listed["films"], max_images)
    body, seen = [], 0
    for rank, study in enumerate(rows, 1):
        films = []
        for film in study.films:
            films.append(_film(film, seen < max_images))
            seen += 1
        flag = '<b class="flagtext">FLAGGED</b>' if study.flagged else "not flagged"
        row_class = "flag" if study.flagged else "clear"
        body.append(f'<tr class="{row_class}"><td>{rank}</td><td>{_identifiers(study)}</td>'
                    f"<td>{study.score:.3f}<br>{flag}</td><td>{''.join(films)}</td></tr>")
    study_rows = "".join(body)
    cap = ("" if pictured == listed["films"] else
           f'<p class="warn">Pictures are shown for the first {pictured} of the {listed["films"]} '
           f"films listed (max_images={max_images}); the films after them are listed without "
           "pictures.</p>")
    studies_cut = _listed("studies", listed["studies"], counts["studies"])
    skipped_cut = _listed("files", listed["skipped"], counts["skipped"])
    skipped_rows = "".join(f"<tr><td><code>{esc(s.path)}</code></td><td>{esc(s.reason)}</td></tr>"
                           for s in skipped)
    notes = "".join(f"<li>{esc(note)}</li>" for note in warnings)
    source = f" ({esc(threshold_source)})" if threshold_source else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Pneumonia screening worklist: {esc(model_name)}</title>
<style>{STYLE}{_STYLE}</style></head><body>
<h1>Pneumonia screening worklist</h1>{random_weights_banner(weights, method)}
<p>{esc(method)} &middot; model <b>{esc(model_name)}</b> <code>{esc(model_uri)}</code> &middot;
weights <b>{esc(weights)}</b> &middot; films from <code>{esc(data)}</code> &middot;
run {esc(created)}</p>
<p class="counts">Films scored: <b>{counts['films']}</b> (flagged <b>{counts['films_flagged']}</b>)
&middot; studies: <b>{counts['studies']}</b> (flagged <b>{counts['studies_flagged']}</b>)
&middot; files skipped: <b>{counts['skipped']}</b></p>
<p>The score is the model's estimate, from 0 to 1, that a film shows pneumonia. A film is
flagged when its score is above the threshold <b>{threshold:.4f}</b>{source}; a study is flagged
when one of its films is, and ranked by its highest score. Flagged studies come first, highest
score first, then the others. The heatmap marks the parts of the film that weighed most in the
score.</p>
<h2>Studies ({counts['studies']})</h2>{studies_cut}{cap}
<table><tr><th>#</th><th>Study</th><th>Score</th><th>Films</th></tr>{study_rows}</table>
<h2>Files not scored ({counts['skipped']})</h2>{skipped_cut}
<table><tr><th>File</th><th>Reason</th></tr>{skipped_rows}</table>
<h2>Warnings ({len(warnings)})</h2><ul>{notes}</ul>
<p><small>{DISCLAIMER}</small></p></body></html>"""


def write_worklist(path: Path, studies: Iterable[WorklistStudy], **page) -> dict[str, int]:
    """Write ``render_worklist(studies, **page)`` to ``path`` (mode 640); returns the counts
    of what it lists."""
    studies = list(studies)
    text = render_worklist(studies, **page).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o640)
        out.write(text)
    listed = worklist_counts(studies, page.get("skipped", ()))
    log.info("wrote %s: %d studies listed (%d flagged), %d films, %.1f MB", path,
             listed["studies"], listed["studies_flagged"], listed["films"], len(text) / 1e6)
    return listed
