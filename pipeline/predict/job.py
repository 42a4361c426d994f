"""Screening: score new, unlabeled films with a trained model, in one batch or as they arrive.

Batch: every film under ``--input`` is scored once and the whole output folder appears
atomically (``atomic_output``). ``--watch``: a Structured Streaming query over the folder;
each micro-batch of new films is written as ``predictions.parquet/batch=N`` (replaced whole
if Spark replays that batch after a failure, so no film is counted twice), and the CSV twin,
study tables, worklist and summary are then rebuilt from the table. The query's checkpoint
(``_checkpoint`` in the output, hidden from readers) remembers which films were scored, so a
restarted watch goes on where it stopped.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline import config
from pipeline.data.dataset import unread
from pipeline.data.rules import Skipped
from pipeline.fs.storage import HadoopFS, atomic_output, prepare_output
from pipeline.fs.task_files import task_target
from pipeline.predict.inputs import read_films
from pipeline.predict.models import ScreeningModel, load_screening_model
from pipeline.predict.outputs import PREDICTIONS, RunSummary, counted, read_table, write_views
from pipeline.predict.scoring import (HEATMAP_CHOICES, HEATMAP_DIR, PICTURES_DIR, RESULT, ScoringTask,
                                      scoring_column)
from pipeline.report.document import spark_run
from pipeline.runtime.session import await_stream, step

log = logging.getLogger(__name__)

CHECKPOINT = "_checkpoint"
#: Spark's binaryFile source's columns: a stream cannot infer them from a folder.
BINARY_FILE_SCHEMA = "path string, modificationTime timestamp, length long, content binary"


@dataclass
class PredictConfig:
    model: str
    input: str
    out: str
    watch: bool = False
    heatmaps: str = "flagged"
    #: None: the precision the model was saved with.
    precision: str | None = None
    max_images: int = config.WORKLIST_MAX_IMAGES
    trigger_s: float = config.WATCH_TRIGGER_S
    max_files_per_batch: int = config.WATCH_MAX_FILES_PER_BATCH

    def check(self) -> None:
        if self.heatmaps not in HEATMAP_CHOICES:
            raise ValueError(f"--heatmaps must be one of {', '.join(HEATMAP_CHOICES)}")


def _scored(films: DataFrame, model: ScreeningModel, task: ScoringTask) -> DataFrame:
    return (films.select(F.col("path").alias("uri"), scoring_column(task).alias("r"))
            .select("uri", "r.*")
            .withColumn("model", F.lit(model.uri))
            .withColumn("threshold", F.lit(model.threshold)))


def _lost_rows(spark: SparkSession, lost: list[Skipped], model: ScreeningModel) -> DataFrame:
    """Rows of the prediction table for films listed but never read, with the reason."""
    frame = spark.createDataFrame([(s.path, s.reason) for s in lost], "uri string, reason string")
    return (frame.select("uri", *(F.col("reason").alias(f.name) if f.name == "skip_reason"
                                  else F.lit(None).cast(f.dataType).alias(f.name) for f in RESULT))
            .withColumn("model", F.lit(model.uri)).withColumn("threshold", F.lit(model.threshold)))


def _setup(spark: SparkSession, cfg: PredictConfig) -> tuple[ScreeningModel, RunSummary]:
    cfg.check()
    model = load_screening_model(spark, cfg.model, cfg.precision)
    heatmaps = cfg.heatmaps
    warnings = []
    if model.no_heatmaps and heatmaps != "none":
        warnings.append(f"no heatmaps: {model.no_heatmaps}")
        log.warning("no heatmaps: %s", model.no_heatmaps)
        heatmaps = "none"
    log.info("model %s (%s, weights %s), threshold %.4f, heatmaps %s", model.uri, model.name,
             model.weights, model.threshold, heatmaps)
    return model, RunSummary(model=model.name, model_uri=model.uri, weights=model.weights,
                             threshold=model.threshold, counts={}, heatmaps=heatmaps,
                             warnings=warnings, spark=spark_run(spark))


def predict(spark: SparkSession, cfg: PredictConfig) -> RunSummary:
    """Score every film under ``cfg.input`` into ``cfg.out`` (or keep watching it)."""
    model, summary = _setup(spark, cfg)
    prepare_output(spark, cfg.out)
    if cfg.watch:
        return _watch(spark, cfg, model, summary)
    started = time.monotonic()
    timings = summary.timings_s
    with atomic_output(spark, cfg.out) as tmp:
        films = read_films(spark, cfg.input)
        fs = _output_folders(spark, tmp)
        task = ScoringTask(model.worker, model.threshold, summary.heatmaps, task_target(spark, tmp))
        table = f"{tmp}/{PREDICTIONS}.parquet"
        with step(spark, "score films", timings):
            scored, rows = counted(_scored(films.frame, model, task), "scored", films=F.count("*"))
            scored.write.parquet(table)
            lost = list(films.missing)
            if rows()["films"] < films.listed_count():  # a listed film was not read: which?
                lost += unread(spark, films.listed,
                               read_table(spark, tmp).select(F.col("uri").alias("path")))
            if lost:  # a row each, with the reason
                _lost_rows(spark, lost, model).write.mode("append").parquet(table)
        with step(spark, "write tables and worklist", timings):
            timings["total"] = round(time.monotonic() - started, 3)
            write_views(spark, tmp, cfg.input, model, summary, cfg.max_images)
        fs.delete(f"{tmp}/{PICTURES_DIR}")  # the worklist has the pictures it shows
    _log_counts(summary, cfg.out)
    return summary


def _output_folders(spark: SparkSession, out: str) -> HadoopFS:
    """The folders the scoring tasks write into, created here 750 as every output folder."""
    fs = HadoopFS(spark, out)
    for name in (HEATMAP_DIR, PICTURES_DIR):
        fs.mkdirs(f"{out}/{name}")
    return fs


def _log_counts(summary: RunSummary, out: str) -> None:
    c = summary.counts
    log.info("%d films: %d scored, %d flagged, %d skipped; %d studies, %d flagged -> %s",
             c["films"], c["scored"], c["flagged"], c["skipped"], c["studies"],
             c["studies_flagged"], out)


def _watch(spark: SparkSession, cfg: PredictConfig, model: ScreeningModel,
           summary: RunSummary) -> RunSummary:
    """Score films as they land under ``cfg.input`` until stopped (SIGTERM, Ctrl-C)."""
    out = cfg.out.rstrip("/")
    _output_folders(spark, out)
    task = ScoringTask(model.worker, model.threshold, summary.heatmaps, task_target(spark, out))
    stream = (spark.readStream.format("binaryFile").schema(BINARY_FILE_SCHEMA)
              .option("recursiveFileLookup", "true")
              .option("maxFilesPerTrigger", cfg.max_files_per_batch)
              .load(cfg.input))

    def write_batch(films: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        with step(spark, f"score batch {batch_id}"):
            _scored(films, model, task).write.mode("overwrite") \
                .parquet(f"{out}/{PREDICTIONS}.parquet/batch={batch_id}")
            write_views(spark, out, cfg.input, model, summary, cfg.max_images)
        summary.timings_s[f"batch {batch_id}"] = round(time.monotonic() - started, 3)
        _log_counts(summary, out)

    query = (stream.writeStream.foreachBatch(write_batch)
             .option("checkpointLocation", f"{out}/{CHECKPOINT}")
             .trigger(processingTime=f"{cfg.trigger_s} seconds")
             .queryName("xray-screening").start())
    log.info("watching %s every %.0fs; stop with SIGTERM or Ctrl-C", cfg.input, cfg.trigger_s)
    await_stream(query)
    return summary

