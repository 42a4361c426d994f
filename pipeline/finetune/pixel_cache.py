"""The decoded-pixel cache that the training task streams: Spark decodes every image once.

Spark reads the tree's files, decodes and resizes them in parallel (``decode_bytes``, as the
featurizer decodes them) and writes Parquet to a Hadoop URI: per film the listing's
metadata (path, split, label, patient, ``is_val``: the patient-grouped validation part of
train), the sha256 of its bytes (duplicates), ``pixels`` (``size*size*3`` uint8 RGB bytes)
and ``error`` (why a file has no pixels). A film the storage cannot read has no row; it is
named among the skipped files (``dataset.unread``). Rows are dealt
round-robin across files and shuffled within each, so any run of rows mixes both classes.
``training_rows`` hands the good films to the training task in one partition.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterator

import pandas as pd
from pyspark import RDD, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, StringType, StructField, StructType

from pipeline import config
from pipeline.data.dataset import (
    HASH_COL,
    META_SCHEMA,
    Listing,
    duplicates,
    metadata,
    read_images,
    unread,
)
from pipeline.data.images import decode_bytes
from pipeline.data.preprocess import model_input
from pipeline.data.rules import Duplicate, ImageError, Skipped
from pipeline.data.split import HELD_OUT, INNER_VALIDATION

log = logging.getLogger(__name__)

SCHEMA = StructType(META_SCHEMA.fields + [
    StructField(HASH_COL, StringType(), False),
    StructField("pixels", BinaryType(), True),
    StructField("error", StringType(), True),
])
#: What the job trains on, selects on, and scores (a cross-validation fold scores
#: ``split.HELD_OUT`` instead of test).
SUBSETS = ("train", "validation", "test")
#: What the training task receives per film.
TASK_COLUMNS = ("path", "split", "label", "is_val", "pixels")
#: Cache files of about this many bytes: enough tasks to decode in parallel, few small files.
_FILE_BYTES = 64 << 20


def subset_name(split: str, is_val: bool) -> str:
    """``train`` (fitting), ``validation`` (the patient-grouped part of train), ``test``, or
    a cross-validation fold's ``held_out`` (``training_rows``)."""
    if split == "train":
        return "validation" if is_val else "train"
    return split


@dataclass
class PixelCache:
    """Where the cache is and what it holds: good films per subset and class, the files that
    could not be decoded, and byte-identical copies."""

    uri: str
    image_size: int
    counts: dict[str, dict[str, int]]
    skipped: list[Skipped]
    duplicates: list[Duplicate]


def _decoder(size: int, clahe: bool):
    def decode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            pixels, errors = [], []
            for data in batch["image"]:
                try:
                    pixels.append(model_input(decode_bytes(data, size), clahe).tobytes())
                    errors.append(None)
                except ImageError as exc:
                    pixels.append(None)
                    errors.append(str(exc))
            yield batch.drop(columns="image").assign(pixels=pixels, error=errors)
    return decode


def write_pixel_cache(spark: SparkSession, listing: Listing, image_size: int, uri: str,
                      seed: int = config.SEED, clahe: bool = False) -> PixelCache:
    """Decode ``listing``'s films at ``image_size`` (equalised when ``clahe``, as the
    featurizer does) into Parquet at ``uri``."""
    row_bytes = image_size * image_size * 3
    parts = max(spark.sparkContext.defaultParallelism,
                math.ceil(listing.images.count() * row_bytes / _FILE_BYTES))
    decoded = (read_images(spark, listing, "binaryFile")
               .select(*(f.name for f in META_SCHEMA.fields), HASH_COL, "image")
               .repartition(parts)
               .mapInPandas(_decoder(image_size, clahe), SCHEMA)
               .sortWithinPartitions(F.rand(seed)))
    decoded.write.parquet(uri)
    # Three small summaries of the same metadata columns: read them from the cache once.
    meta = (spark.read.parquet(uri).select("path", "split", "label", "is_val", HASH_COL, "error")
            .persist(StorageLevel.MEMORY_AND_DISK))
    counts: dict[str, dict[str, int]] = {name: {cls: 0 for cls in config.CLASSES} for name in SUBSETS}
    for row in meta.filter(F.col("error").isNull()).groupBy("split", "is_val", "label").count().collect():
        counts[subset_name(row["split"], row["is_val"])][config.CLASS_NAMES[int(row["label"])]] = row["count"]
    undecodable = [Skipped(r["path"], r["error"])
                   for r in meta.filter(F.col("error").isNotNull()).orderBy("path").collect()]
    for item in undecodable:
        log.warning("not decodable, left out: %s: %s", item.path, item.reason)
    skipped = sorted(unread(spark, metadata(spark, listing), meta) + undecodable,
                     key=lambda s: s.path)
    copies = duplicates(meta)
    meta.unpersist()
    for item in copies:
        log.warning("duplicate %s is byte-identical to %s", item.path, item.duplicate_of)
    log.info("pixel cache %s: %d files of %dx%d films %s, %d unreadable or undecodable, "
             "%d duplicates", uri, parts, image_size, image_size, counts, len(skipped),
             len(copies))
    return PixelCache(uri, image_size, counts, skipped, copies)


def training_rows(spark: SparkSession, uri: str, roles: DataFrame | None = None) -> RDD:
    """The decoded films of the cache at ``uri`` as one partition of ``TASK_COLUMNS`` rows.

    The shuffle into one partition is how the data reaches the training task: every cache
    file is read in parallel, Spark moves the rows to the task's executor with its own
    transport and Hadoop configuration (any URI, its credentials), and only that executor
    receives them. The task consumes them as a stream.

    ``roles`` (columns ``path``, ``role``: one cross-validation fold of the train films,
    ``pipeline.data.split.fold_roles``) replaces the subsets: the fold's ``fit`` films train,
    its ``validation`` films select, its ``held_out`` films are the subset ``held_out``; other
    films are left out. A broadcast join keeps the cache's shuffled order.
    """
    films = spark.read.parquet(uri).filter(F.col("error").isNull())
    if roles is not None:
        films = (films.join(F.broadcast(roles), on="path")
                 .withColumn("split", F.when(F.col("role") == HELD_OUT, F.lit(HELD_OUT))
                             .otherwise(F.lit("train")))
                 .withColumn("is_val", F.col("role") == INNER_VALIDATION))
    return films.select(*TASK_COLUMNS).repartition(1).rdd
