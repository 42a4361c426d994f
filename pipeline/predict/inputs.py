"""The films to screen: a folder of any layout (walked recursively by Spark's distributed
file listing) or a CSV list of URIs. Nothing here looks at suffixes or labels: each file is
judged by its content when it is scored (``scoring.film_format``, ``rules.open_image``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, DataFrameReader, SparkSession

from pipeline.data.dataset import TOLERANT_READ
from pipeline.data.rules import Skipped
from pipeline.fs.storage import HadoopFS

log = logging.getLogger(__name__)

#: The column of a CSV list that holds the URIs (else its first column).
URI_COLUMN = "uri"
NOT_FOUND = "file not found"


def _binary_files(spark: SparkSession) -> DataFrameReader:
    # Hidden names (".x", "_x") are skipped by Spark's listing itself, as by every Hadoop
    # input format: outputs' temporary siblings and markers are never taken for films. A
    # file the storage cannot read (a corrupt block) is left out, not fatal: ``unread``.
    return spark.read.format("binaryFile").options(**TOLERANT_READ)


def _csv_uris(spark: SparkSession, uri: str) -> list[str]:
    table = spark.read.option("header", "true").csv(uri)
    column = URI_COLUMN if URI_COLUMN in table.columns else table.columns[0]
    return [r[0] for r in table.select(column).dropna().distinct().collect()]


@dataclass
class Films:
    """What ``read_films`` found: the readable films, every listed path, and the listed
    URIs that do not exist."""

    #: ``path``, ``content``: a film the storage cannot read is missing here (``unread``).
    frame: DataFrame
    #: ``path`` of every file listed (content not read).
    listed: DataFrame
    missing: list[Skipped]

    def listed_count(self) -> int:
        """How many files were listed, from the listing the JVM holds (no Spark job, and no
        list of every path in Python)."""
        return len(self.listed._jdf.inputFiles())


def read_films(spark: SparkSession, uri: str) -> Films:
    """Every file under ``uri``; a ``.csv`` file is a list of URIs, anything else a folder."""
    fs = HadoopFS(spark, uri)
    if not fs.exists(uri):
        raise ValueError(f"{uri} does not exist")
    missing: list[Skipped] = []
    folder = fs.is_dir(uri)
    if not folder and uri.lower().endswith(".csv"):
        uris = _csv_uris(spark, uri)
        exists = {u: fs.exists(u) for u in uris}
        found = [u for u in uris if exists[u]]
        missing = [Skipped(u, NOT_FOUND) for u in uris if not exists[u]]
        log.info("%s lists %d films (%d not found)", uri, len(uris), len(missing))
        if not found:
            empty = spark.createDataFrame([], "path string, content binary")
            return Films(empty, empty.select("path"), missing)
        frame = _binary_files(spark).load(found)
    elif folder:
        frame = _binary_files(spark).option("recursiveFileLookup", "true").load(uri)
    else:
        frame = _binary_files(spark).load(uri)
    return Films(frame.select("path", "content"), frame.select("path"), missing)
