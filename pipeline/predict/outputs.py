"""What a screening run leaves in its output folder, all derived from ``predictions.parquet``:

- ``predictions.parquet`` and ``predictions.csv``: one row per film (URI, DICOM identifiers,
  score, flag, model, threshold, heatmap path, skip reason);
- ``studies.parquet`` and ``studies.csv``: one row per study, flagged if any of its frontal
  films is, with the highest score (a film without a StudyInstanceUID is its own study);
- ``worklist.html``: flagged studies first, by score, with thumbnails and heatmap overlays;
- ``summary.json``: counts, the model and its threshold, timings.

Every table is built by Spark and written by its tasks; the driver collects only the few
hundred studies the worklist shows, so its memory does not grow with the number of films.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline import config
from pipeline.data.images import decode_display
from pipeline.data.rules import ImageError, Skipped
from pipeline.fs.storage import HadoopFS
from pipeline.predict.models import ScreeningModel
from pipeline.report.worklist import (WorklistFilm, WorklistStudy, thumbnail_png,
                                      write_worklist)

log = logging.getLogger(__name__)

PREDICTIONS, STUDIES = "predictions", "studies"
WORKLIST, SUMMARY = "worklist.html", "summary.json"
#: Skipped files the page and summary list by name (all of them are in predictions.csv).
SKIPPED_SHOWN = 500
THUMBNAIL_SIDE = 256


@dataclass
class RunSummary:
    """``summary.json``: what was screened, with what, and how it went."""

    model: str
    model_uri: str
    weights: str
    threshold: float
    counts: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)
    heatmaps: str = ""
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    spark: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def study_rows(table: DataFrame) -> DataFrame:
    """One row per study with a scored film: any flagged film flags it; its highest score."""
    scored = table.filter(F.col("score").isNotNull())
    return (scored.withColumn("study", F.coalesce("study_instance_uid", "uri"))
            .groupBy("study")
            .agg(F.max("score").alias("score"), F.max(F.col("flagged").cast("int")).cast("boolean")
                 .alias("flagged"), F.count("*").alias("films"),
                 F.first("patient_id", ignorenulls=True).alias("patient_id"),
                 F.first("accession_number", ignorenulls=True).alias("accession_number"),
                 F.first("study_instance_uid", ignorenulls=True).alias("study_instance_uid"),
                 F.first("model").alias("model"), F.first("threshold").alias("threshold")))


def write_csv(spark: SparkSession, frame: DataFrame, uri: str) -> None:
    """``frame`` as one CSV file at ``uri`` (with a header even when empty), written by one
    task into a hidden folder and moved into place."""
    fs = HadoopFS(spark, uri)
    parts = f"{fs.parent(uri).rstrip('/')}/.{uri.rstrip('/').rpartition('/')[2]}.parts"
    frame.coalesce(1).write.mode("overwrite").option("header", "true").csv(parts)
    written = [e.path for e in fs.list_dir(parts) if e.path.rpartition("/")[2].startswith("part-")]
    if written:
        if fs.exists(uri):
            fs.delete(uri)
        fs.rename(written[0], uri)
    else:
        fs.write_bytes(uri, (",".join(frame.columns) + "\n").encode())
    fs.delete(parts)


def counts(table: DataFrame, studies: DataFrame) -> dict[str, int]:
    row = table.agg(F.count("*").alias("films"),
                    F.count("score").alias("scored"),
                    F.sum(F.col("flagged").cast("int")).alias("flagged"),
                    F.count("skip_reason").alias("skipped")).first()
    study = studies.agg(F.count("*").alias("studies"),
                        F.sum(F.col("flagged").cast("int")).alias("studies_flagged")).first()
    return {k: int(v or 0) for k, v in {**row.asDict(), **study.asDict()}.items()}


def _thumbnail(fs: HadoopFS, uri: str) -> bytes | None:
    try:
        return thumbnail_png(decode_display(fs.read_bytes(uri), THUMBNAIL_SIDE))
    except (ImageError, OSError):  # gone or changed since it was scored: listed without it
        return None


def worklist_studies(spark: SparkSession, folder: str, table: DataFrame, studies: DataFrame,
                     limit: int) -> list[WorklistStudy]:
    """The ``limit`` studies the worklist shows (flagged first, by score), with their films'
    thumbnails and overlays."""
    top = studies.orderBy(F.desc("flagged"), F.desc("score"), "study").limit(limit).collect()
    keys = spark.createDataFrame([(s["study"],) for s in top], "study string")
    films = (table.filter(F.col("score").isNotNull())
             .withColumn("study", F.coalesce("study_instance_uid", "uri"))
             .join(F.broadcast(keys), "study")
             .select("study", "uri", "score", "flagged", "heatmap").collect())
    by_study: dict[str, list] = {}
    for film in films:
        by_study.setdefault(film["study"], []).append(film)
    fs = HadoopFS(spark, folder)
    out = []
    for study in top:
        shown = sorted(by_study.get(study["study"], []), key=lambda f: -f["score"])
        out.append(WorklistStudy(
            key=study["study"], patient_id=study["patient_id"],
            accession_number=study["accession_number"], study_uid=study["study_instance_uid"],
            score=study["score"], flagged=study["flagged"],
            films=[WorklistFilm(uri=f["uri"], score=f["score"], flagged=f["flagged"],
                                thumbnail_png=_thumbnail(fs, f["uri"]),
                                overlay_png=fs.read_bytes(f"{folder.rstrip('/')}/{f['heatmap']}")
                                if f["heatmap"] else None)
                   for f in shown]))
    return out


def skipped_files(table: DataFrame) -> list[Skipped]:
    """The first ``SKIPPED_SHOWN`` files not scored, by URI, with their reasons."""
    rows = (table.filter(F.col("skip_reason").isNotNull()).orderBy("uri")
            .select("uri", "skip_reason").limit(SKIPPED_SHOWN).collect())
    return [Skipped(r["uri"], r["skip_reason"]) for r in rows]


def _page_counts(counts: dict[str, int]) -> dict[str, int]:
    """The worklist header's counts: of the whole run, not only the studies it shows."""
    return {"films": counts["scored"], "films_flagged": counts["flagged"],
            "studies": counts["studies"], "studies_flagged": counts["studies_flagged"],
            "skipped": counts["skipped"]}


def write_views(spark: SparkSession, folder: str, data: str, model: ScreeningModel,
                summary: RunSummary, max_images: int = config.WORKLIST_MAX_IMAGES) -> RunSummary:
    """Write the CSV twin, the study tables, the worklist and the summary from the
    ``predictions.parquet`` in ``folder`` (films from ``data``); returns the summary with its
    counts."""
    base = folder.rstrip("/")
    table = spark.read.parquet(f"{base}/{PREDICTIONS}.parquet")
    write_csv(spark, table.orderBy("uri"), f"{base}/{PREDICTIONS}.csv")
    studies = study_rows(table)
    studies.write.mode("overwrite").parquet(f"{base}/{STUDIES}.parquet")
    studies = spark.read.parquet(f"{base}/{STUDIES}.parquet")
    write_csv(spark, studies.orderBy(F.desc("flagged"), F.desc("score")), f"{base}/{STUDIES}.csv")
    summary.counts = counts(table, studies)
    skipped = skipped_files(table)
    summary.skipped = [{"path": s.path, "reason": s.reason} for s in skipped]
    fs = HadoopFS(spark, folder)
    with tempfile.TemporaryDirectory() as local:
        page = Path(local) / WORKLIST
        write_worklist(page, worklist_studies(spark, folder, table, studies, max_images),
                       model_name=model.name, model_uri=model.uri, method=model.method,
                       weights=model.weights, threshold=model.threshold, data=data,
                       skipped=skipped, warnings=summary.warnings, max_images=max_images,
                       counts=_page_counts(summary.counts))
        fs.write_bytes(f"{base}/{WORKLIST}", page.read_bytes())
    fs.write_bytes(f"{base}/{SUMMARY}", summary.to_json().encode())
    return summary
