"""What a screening run leaves in its output folder, all derived from ``predictions.parquet``:

- ``predictions.parquet`` and ``predictions.csv``: one row per film (URI, DICOM identifiers,
  score, flag, model, threshold, heatmap path, skip reason);
- ``studies.parquet`` and ``studies.csv``: one row per study, flagged if any of its frontal
  films is, with the highest score (a film without a StudyInstanceUID is its own study);
- ``worklist.html``: flagged studies first, by score, with thumbnails and heatmap overlays;
- ``summary.json``: counts, the model and its threshold, timings.

Every table is built by Spark and written by its tasks; the driver collects only the few
hundred studies the worklist shows, and their films' pictures, which the scoring tasks made
(``scoring.PICTURES_DIR``), so its memory does not grow with the number of films.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from pipeline import config
from pipeline.data.rules import Skipped
from pipeline.fs.storage import HadoopFS
from pipeline.predict.models import ScreeningModel
from pipeline.predict.scoring import PICTURES, PICTURES_DIR, RESULT
from pipeline.report.worklist import WorklistFilm, WorklistStudy, order_studies, write_worklist
from pipeline.runtime.session import in_parallel

log = logging.getLogger(__name__)

PREDICTIONS, STUDIES = "predictions", "studies"
#: ``predictions.parquet``'s columns (a watch's ``batch=N`` folders add ``batch``). Reading it
#: back with them spares Spark the job that would infer them from the files' footers.
TABLE = StructType([StructField("uri", StringType()), *RESULT.fields,
                    StructField("model", StringType()), StructField("threshold", DoubleType())])
WORKLIST, SUMMARY = "worklist.html", "summary.json"
#: Skipped files the page and summary list by name (all of them are in predictions.csv).
SKIPPED_SHOWN = 500


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


def _study() -> Column:
    """A film's study: its StudyInstanceUID, else the film itself."""
    return F.coalesce("study_instance_uid", "uri")


def read_table(spark: SparkSession, folder: str) -> DataFrame:
    """The ``predictions.parquet`` in ``folder``."""
    return spark.read.schema(TABLE).parquet(f"{folder.rstrip('/')}/{PREDICTIONS}.parquet")


def study_rows(table: DataFrame) -> DataFrame:
    """One row per study with a scored film: any flagged film flags it; its highest score."""
    scored = table.filter(F.col("score").isNotNull())
    return (scored.withColumn("study", _study())
            .groupBy("study")
            .agg(F.max("score").alias("score"), F.max(F.col("flagged").cast("int")).cast("boolean")
                 .alias("flagged"), F.count("*").alias("films"),
                 F.first("patient_id", ignorenulls=True).alias("patient_id"),
                 F.first("accession_number", ignorenulls=True).alias("accession_number"),
                 F.first("study_instance_uid", ignorenulls=True).alias("study_instance_uid"),
                 F.first("model").alias("model"), F.first("threshold").alias("threshold")))


def write_csv(spark: SparkSession, frame: DataFrame, uri: str, *order: Column) -> None:
    """``frame`` as one CSV file at ``uri`` (with a header even when empty), sorted by
    ``order``, written by one task into a hidden folder and moved into place. The one task
    sorts its rows itself: one Spark job, not a global sort's sampling job and then the write."""
    fs = HadoopFS(spark, uri)
    parts = f"{fs.parent(uri).rstrip('/')}/.{uri.rstrip('/').rpartition('/')[2]}.parts"
    frame.coalesce(1).sortWithinPartitions(*order).write.mode("overwrite") \
        .option("header", "true").csv(parts)
    written = [e.path for e in fs.list_dir(parts) if e.path.rpartition("/")[2].startswith("part-")]
    if written:
        if fs.exists(uri):
            fs.delete(uri)
        fs.rename(written[0], uri)
    else:
        fs.write_bytes(uri, (",".join(frame.columns) + "\n").encode())
    fs.delete(parts)


def counted(frame: DataFrame, name: str, **exprs: Column) -> tuple[DataFrame, Callable[[], dict[str, int]]]:
    """``frame`` counting ``exprs`` (aggregates) as its one action runs, and what returns the
    counts once it has (Spark's observed metrics: no job of their own)."""
    seen = Observation(name)
    observed = frame.observe(seen, *(e.alias(k) for k, e in exprs.items()))
    return observed, lambda: {k: int(v or 0) for k, v in seen.get.items()}


def worklist_studies(spark: SparkSession, folder: str, table: DataFrame, studies: DataFrame,
                     limit: int) -> list[WorklistStudy]:
    """The ``limit`` studies the worklist shows (flagged first, by score), with their films
    and, for the first ``limit`` films in page order, their pictures. The top studies and
    their films come back in one query: the ranked studies (``limit`` rows, broadcast) joined
    to the table's films. Keys never travel as literals: a literal list (``isin``) would
    print the study UIDs in the query plan, which Spark writes to the event log and its UI."""
    top = studies.orderBy(F.desc("flagged"), F.desc("score"), "study").limit(limit)
    films = (table.filter(F.col("score").isNotNull()).withColumn("study", _study())
             .select("study", "uri", F.col("score").alias("film_score"),
                     F.col("flagged").alias("film_flagged")))
    rows = F.broadcast(top).join(films, "study").collect()
    if not rows:
        return []
    by_key: dict[str, WorklistStudy] = {}
    for row in rows:
        study = by_key.setdefault(row["study"], WorklistStudy(
            key=row["study"], patient_id=row["patient_id"],
            accession_number=row["accession_number"], study_uid=row["study_instance_uid"],
            score=row["score"], flagged=row["flagged"]))
        study.films.append(WorklistFilm(uri=row["uri"], score=row["film_score"],
                                        flagged=row["film_flagged"]))
    page = order_studies(by_key.values())
    shown = [f.uri for s in page for f in s.films][:limit]
    pictures = _pictures(spark, folder, shown)
    return [replace(s, films=[replace(f, **pictures.get(f.uri, {})) for f in s.films])
            for s in page]


def _pictures(spark: SparkSession, folder: str, uris: list[str]) -> dict[str, dict[str, bytes]]:
    """The thumbnails and overlays the scoring tasks made of ``uris`` (a film gone or changed
    since it was scored is simply shown without them)."""
    wanted = spark.createDataFrame([(u,) for u in uris], "uri string")  # data, not plan: above
    rows = (spark.read.schema(PICTURES).parquet(f"{folder.rstrip('/')}/{PICTURES_DIR}")
            .join(F.broadcast(wanted), "uri").select("uri", "thumbnail", "overlay").collect())
    return {r["uri"]: {"thumbnail_png": r["thumbnail"], "overlay_png": r["overlay"]} for r in rows}


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
    counts, observed while the tables are written. The CSV twin and the study tables
    (then the studies' CSV and the worklist's rows, both from the written study table: the
    studies are aggregated once) are written at the same time: ``in_parallel``."""
    base = folder.rstrip("/")
    table = read_table(spark, base)
    twin, film_counts = counted(table, "films", films=F.count("*"), scored=F.count("score"),
                                flagged=F.sum(F.col("flagged").cast("int")),
                                skipped=F.count("skip_reason"))
    per_study, study_counts = counted(study_rows(table), "studies", studies=F.count("*"),
                                      studies_flagged=F.sum(F.col("flagged").cast("int")))

    def study_views() -> list[WorklistStudy]:
        per_study.write.mode("overwrite").parquet(f"{base}/{STUDIES}.parquet")
        studies = spark.read.schema(per_study.schema).parquet(f"{base}/{STUDIES}.parquet")
        return in_parallel(
            lambda: worklist_studies(spark, folder, table, studies, max_images),
            lambda: write_csv(spark, studies, f"{base}/{STUDIES}.csv", F.desc("flagged"),
                              F.desc("score")))[0]

    _, shown = in_parallel(lambda: write_csv(spark, twin, f"{base}/{PREDICTIONS}.csv", F.col("uri")),
                           study_views)
    summary.counts = {**film_counts(), **study_counts()}
    skipped = skipped_files(table) if summary.counts["skipped"] else []
    summary.skipped = [{"path": s.path, "reason": s.reason} for s in skipped]
    fs = HadoopFS(spark, folder)
    with tempfile.TemporaryDirectory() as local:
        page = Path(local) / WORKLIST
        write_worklist(page, shown,
                       model_name=model.name, model_uri=model.uri, method=model.method,
                       weights=model.weights, threshold=model.threshold, data=data,
                       skipped=skipped, warnings=summary.warnings, max_images=max_images,
                       counts=_page_counts(summary.counts))
        fs.write_bytes(f"{base}/{WORKLIST}", page.read_bytes())
    fs.write_bytes(f"{base}/{SUMMARY}", summary.to_json().encode())
    return summary
