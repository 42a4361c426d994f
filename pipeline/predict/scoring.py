"""Scoring films on the workers: decode by content, one forward pass, the flag, the heatmap.

Each Python worker builds its model once (``_scorer``) and reuses it for every later task and
micro-batch, so a stream of a few films at a time pays for the network only once. A film that
cannot be used gets its reason in ``skip_reason`` and no score; the others in its batch go on.
Heatmap overlays are written by the task that computed them (``fs.task_files``), named by a
hash of the film's URI, so no file name carries a patient's name. The same task, which has the
film's bytes at hand, also makes the worklist's pictures of every scored film (its thumbnail and
overlay) and writes them as one small Parquet file per batch in ``PICTURES_DIR``: the driver
then takes the few hundred it shows from there instead of reading and decoding films itself.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column
from pyspark.sql.functions import pandas_udf
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import (BinaryType, BooleanType, DoubleType, StringType, StructField,
                               StructType)

from pipeline.data import dicom
from pipeline.data.images import decode_bytes, decode_display
from pipeline.data.preprocess import model_input
from pipeline.data.rules import ImageError, dicom_reason
from pipeline.featurizer.folding import fold_batch_norms
from pipeline.featurizer.models import load_model_file
from pipeline.featurizer.transformer import _local, runner_for, worker_object
from pipeline.fs.task_files import FileTarget, upload
from pipeline.predict.heatmaps import class_activation_maps, grad_cam, split_at_maps
from pipeline.predict.models import FEATURIZER, WorkerModel
from pipeline.report.worklist import overlay_png, thumbnail_png

log = logging.getLogger(__name__)

#: ``--heatmaps``: overlays for flagged films only (the default: what a reader opens), every
#: scored film, or none.
HEATMAP_CHOICES = ("flagged", "all", "none")
#: Folder of the overlays inside the output; the longest side of overlays and thumbnails.
HEATMAP_DIR = "heatmaps"
PICTURE_SIDE = 256
#: The worklist's pictures of the scored films, read back for the page: a batch run deletes
#: it at the end, a watch keeps it for the next rebuild. Not ``_``-named: Spark warns "All
#: paths were ignored" when it reads such a folder.
PICTURES_DIR = "worklist-pictures"

#: One row per film, besides its URI: what the output tables hold.
RESULT = StructType([
    StructField("format", StringType()),
    *(StructField(f.name, StringType()) for f in fields(dicom.DicomIdentifiers)),
    StructField("score", DoubleType()),
    #: The score calibrated to a probability (the model's stored Platt scaling), when it has one.
    StructField("probability", DoubleType()),
    StructField("flagged", BooleanType()),
    StructField("heatmap", StringType()),
    StructField("skip_reason", StringType()),
])
#: A row of ``PICTURES_DIR``: a scored film, its thumbnail and, when it has one, its heatmap
#: overlay (PNG bytes).
PICTURES = StructType([
    StructField("uri", StringType()),
    StructField("thumbnail", BinaryType()),
    StructField("overlay", BinaryType()),
])


@dataclass(frozen=True)
class ScoringTask:
    """Everything a task needs: the model, its threshold, and where overlays go."""

    model: WorkerModel
    threshold: float
    heatmaps: str
    target: FileTarget | None


def film_format(data: bytes) -> str | None:
    """``jpeg``, ``png`` or ``dicom`` by content (a PACS export often has no suffix)."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return "dicom" if dicom.is_dicom(data) else None


class _Scorer:
    """One worker's model: films in, (scores, heatmaps) out."""

    def __init__(self, model: WorkerModel) -> None:
        self.model = model
        if model.kind == FEATURIZER:
            cfg = model.featurizer
            self.runner = runner_for(cfg)
            self.size = self.runner.size
            self.coef = np.asarray(model.coef)
            self.spatial = cfg.pooling == "avg" and not cfg.model_file
        else:
            network = load_model_file(_local(model.model_file))
            self.size = int(network.input_shape[1])
            body, self.head = split_at_maps(network)
            self.body = fold_batch_norms(body)[0]  # as the featurizer's networks infer

    def score(self, films: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray | None]]:
        if self.model.kind != FEATURIZER:
            scores, maps = grad_cam(self.body, self.head, np.stack(films).astype(np.float32))
            return scores, list(maps)
        if not self.spatial:  # pooled (or fine-tuned) features: a score, no map
            logits = self.runner.features(films).astype(np.float64) @ self.coef + self.model.intercept
            return 1 / (1 + np.exp(-logits)), [None] * len(films)
        logits, cams = class_activation_maps(self.runner.outputs(films), self.coef,
                                             self.model.intercept)
        return 1 / (1 + np.exp(-logits)), list(cams)


def heatmap_name(uri: str) -> str:
    """The overlay's path inside the output: a hash of the film's URI, not its name."""
    return f"{HEATMAP_DIR}/{hashlib.sha256(uri.encode()).hexdigest()[:24]}.png"


def _upload(task: ScoringTask, name: str, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(suffix=".tmp") as tmp:
        tmp.write(data)
        tmp.flush()
        upload(task.target, tmp.name, name)


def _pictures(task: ScoringTask, uri: str, row: dict, data: bytes,
              heatmap: np.ndarray | None) -> dict:
    """The worklist's pictures of one scored film, from one decode at thumbnail size; its
    overlay, when it gets one, is also written to ``HEATMAP_DIR``."""
    film = decode_display(data, PICTURE_SIDE, task.model.draft_decode)
    overlay = None
    if heatmap is not None:
        overlay = overlay_png(film, heatmap, PICTURE_SIDE)
        row["heatmap"] = heatmap_name(uri)
        _upload(task, row["heatmap"], overlay)
    return {"uri": uri, "thumbnail": thumbnail_png(film, PICTURE_SIDE), "overlay": overlay}


def _write_pictures(task: ScoringTask, pictures: list[dict]) -> None:
    """One Parquet file of a batch's pictures (a retried task's copy only repeats rows)."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(pictures, schema=to_arrow_schema(PICTURES)), sink,
                   compression="none")  # PNGs are compressed already
    _upload(task, f"{PICTURES_DIR}/part-{uuid.uuid4().hex}.parquet", sink.getvalue().to_pybytes())


def score_films(task: ScoringTask, uris: list[str], contents: list[bytes]) -> pd.DataFrame:
    """The RESULT rows of one batch of films, in order (and their pictures, written)."""
    scorer = worker_object(task.model, lambda: _Scorer(task.model))
    rows = [dict.fromkeys(RESULT.fieldNames()) for _ in uris]
    films, kept = [], []
    for i, data in enumerate(contents):
        row = rows[i]
        row["format"] = film_format(data)
        try:
            if row["format"] == "dicom":
                row.update(asdict(dicom.read_identifiers(data)))
            films.append(model_input(decode_bytes(data, scorer.size, task.model.draft_decode),
                                     task.model.clahe))
            kept.append(i)
        except dicom.DicomError as err:
            row["skip_reason"] = dicom_reason(err)
        except ImageError as err:
            row["skip_reason"] = str(err)
    if films:
        scores, maps = scorer.score(films)
        calibrator = task.model.calibrator
        probabilities = calibrator.apply(scores) if calibrator else [None] * len(kept)
        pictures = []
        for i, score, probability, heatmap in zip(kept, scores, probabilities, maps):
            flagged = bool(score > task.threshold)
            rows[i].update(score=float(score), flagged=flagged,
                           probability=None if probability is None else float(probability))
            shown = heatmap is not None and (task.heatmaps == "all" or
                                             (task.heatmaps == "flagged" and flagged))
            pictures.append(_pictures(task, uris[i], rows[i], contents[i],
                                      heatmap if shown else None))
        _write_pictures(task, pictures)
    return pd.DataFrame(rows, columns=RESULT.fieldNames())


def scoring_column(task: ScoringTask, path: str = "path", content: str = "content") -> Column:
    """A struct column of RESULT for the films in ``path``/``content``."""
    @pandas_udf(RESULT)
    def score(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        for uris, contents in batches:
            yield score_films(task, list(uris), list(contents))

    # Non-deterministic: Spark must not run the network once per extracted field.
    return score.asNondeterministic()(path, content)
