"""Reading a ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}`` tree from any Hadoop URI.

Every file is either accepted (with its split, label, patient and side of the validation
split) or skipped with a reason that names it; nothing is dropped silently. An empty or
missing class folder is a warning.

The films are a Spark DataFrame from the start, never a Python object each on the driver:
the driver's memory stays flat in the number of films (``bench/scan.py``). It handles only
what does not grow with them: the few folders above the films, per-folder and per-split
counts, and the skipped files, of which it names at most ``MAX_NAMED`` (sorted by path) and
counts the rest.

Where ingest left a manifest that still describes the tree (``_manifest_listing``: a few
requests, whatever the tree's size), Spark reads the films from it as a table (a copy in the
job's scratch folder: ``_readable_copy`` says why). Otherwise the one walk
(``pipeline.data.tree``) finds the split and class folders on the driver, and the class
folders' entries are listed into a DataFrame and judged by the same rule
(``tree.file_problem``) in Spark: a local tree with ``os.scandir`` in Spark tasks (a
``file:`` tree is where every executor reads it), any other file system a folder at a time
in the JVM, its statuses turned into rows there (``_hadoop_files``). Symbolic links (local
trees) are skipped, never followed. Spark then reads only the class folders that hold
films, with the image source or as raw bytes, and only the accepted files go on: Spark's own
listing of those folders does follow links, and a join on the accepted paths drops what else
it read before the featurizer.

A film whose bytes the storage cannot hand over (every replica of a block fails its checksum,
a block is missing, the file went away since the listing) is a bad film, not a failed job:
the read skips it (Spark's ``ignoreCorruptFiles``/``ignoreMissingFiles`` source options catch
the IOException where the file is opened, once, instead of failing the task four times), and
``unread`` names each film the listing expected but the read did not deliver, with the reason
a second read on the driver gives. HDFS itself reads around a bad replica when another one
is good, so only films with no good copy end up here.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    DoubleType,
    StringType,
    StructField,
    StructType,
)

from pipeline import config
from pipeline.data import manifest, rules
from pipeline.data.local_tree import local_lister
from pipeline.data.patients import patient_id
from pipeline.data.rules import Duplicate, Skipped
from pipeline.data.split import validation_patients
from pipeline.data.tree import Entry, Lister, TreeError, file_problem, walk
from pipeline.fs.storage import HadoopFS, StorageError, local_path
from pipeline.runtime.cli import one_line
from pipeline.runtime.session import pinned, scratch

log = logging.getLogger(__name__)

#: Columns of the metadata every image row carries. ``is_val``: the film is in the
#: patient-grouped validation part of train (``Listing.with_validation``).
META_SCHEMA = StructType([
    StructField("path", StringType(), False),
    StructField("split", StringType(), False),
    StructField("label", DoubleType(), False),
    StructField("patient_id", StringType(), False),
    StructField("is_val", BooleanType(), False),
])

#: sha256 of each file's bytes (image source: of its decoded pixels), to find duplicates.
HASH_COL = "sha256"
#: What follows ``{path=<path>`` in Hadoop's ``FileStatus.toString`` (``_hadoop_lister``).
_STATUS = re.compile(r"; isDirectory=(true|false)(?:; length=(\d+))?")
#: Spark file-source options: a file whose read throws an IOException (checksum error on the
#: only replica, missing block) or is gone since the listing is left out of what is read,
#: instead of failing its task (and the job after ``spark.task.maxFailures`` tries).
TOLERANT_READ = {"ignoreCorruptFiles": "true", "ignoreMissingFiles": "true"}
#: ``unread`` re-reads at most this many films on the driver to give each its own reason; a
#: dead DataNode can make thousands unreadable, each costing HDFS's retries (seconds).
MAX_PROBES = 20
#: A listing names at most this many skipped files (the first by path) and counts the rest:
#: a tree of litter must not fill the driver, or the reports.
MAX_NAMED = 1000
#: One entry of a class folder, as the walk's Spark part judges it: ``rel`` is the path below
#: the root as bytes (a local name need not be UTF-8), ``reason`` null for a candidate film.
_ENTRY_SCHEMA = StructType([
    StructField("path", StringType(), True),
    StructField("rel", BinaryType(), False),
    StructField("split", StringType(), False),
    StructField("class_name", StringType(), False),
    StructField("reason", StringType(), True),
])


@dataclass
class Listing:
    """What a scan of the tree found: accepted image files and skipped files with reasons."""

    root: str
    #: ``META_SCHEMA``'s columns, one row per accepted film (persisted).
    images: DataFrame
    #: Skipped files, sorted by path: the first ``MAX_NAMED`` of ``skipped_total``.
    skipped: list[Skipped] = field(default_factory=list)
    #: Problems that are not one file's: empty or missing class folders, unnamed skipped files.
    warnings: list[str] = field(default_factory=list)

    def with_validation(self, fraction: float, seed: int) -> Listing:
        """This listing with ``is_val`` set on the train films of the patient-grouped
        validation part (``pipeline.data.split``: the one split every program uses)."""
        chosen = validation_patients(self.images.filter(F.col("split") == "train"),
                                     fraction, seed).withColumn("chosen", F.lit(True))
        images = (self.images.drop("is_val").join(F.broadcast(chosen), on="patient_id", how="left")
                  .select("path", "split", "label", "patient_id",
                          ((F.col("split") == "train") & F.coalesce("chosen", F.lit(False)))
                          .alias("is_val")))
        return dataclasses.replace(self, images=pinned(images))

    def log_summary(self) -> None:
        counts = {(r["split"], r["label"]): r["count"]
                  for r in self.images.groupBy("split", "label").count().collect()}
        log.info("%s: %d images %s, %d skipped", self.root, sum(counts.values()),
                 {f"{s}/{config.CLASS_NAMES[int(lbl)]}": n for (s, lbl), n in sorted(counts.items())},
                 len(self.skipped))
        for item in self.skipped:
            log.warning("skipped %s: %s", item.path, item.reason)
        for warning in self.warnings:
            log.warning("%s", warning)


def _hadoop_lister(spark: SparkSession, base: str) -> Lister:
    """Lists a folder of the Hadoop file system that serves ``base`` in bulk: the folder's
    statuses cross from the JVM as one string (Py4J hands a string over in one call, but each
    method of each Java object costs a round trip: five per film listed one by one, 13.7 s
    for 20,864 films). A folder whose names cannot be split unambiguously (a line break in a
    name) is listed one entry at a time. StorageError (an OSError) for a folder it cannot
    read."""
    jvm = spark.sparkContext._jvm
    fs = _java_fs(spark, base)
    wrap = jvm.scala.collection.immutable.ArraySeq.unsafeWrapArray

    def list_folder(folder: str) -> list[Entry]:
        try:
            statuses = fs.listStatus(jvm.org.apache.hadoop.fs.Path(folder))
            paths = str(wrap(jvm.org.apache.hadoop.fs.FileUtil.stat2Paths(statuses))
                        .mkString("\n")).split("\n")
            described = str(wrap(statuses).mkString("\n")).split("\n")
            count = len(statuses)
            entries = _parse(paths, described) if len(paths) == len(described) == count else None
            return entries if entries is not None else [_entry(s) for s in statuses]
        except Py4JJavaError as err:
            raise StorageError(f"{folder}: {one_line(err)}") from err

    return list_folder


def _parse(paths: list[str], described: list[str]) -> list[Entry] | None:
    """Entries from each path and its status's text; None if one does not read as expected."""
    entries = []
    for path, text in zip(paths, described):
        head = f"{{path={path}"
        start = text.find(head)
        match = _STATUS.match(text, start + len(head)) if start >= 0 else None
        is_dir = match is not None and match.group(1) == "true"
        if match is None or not (is_dir or match.group(2)):
            return None
        entries.append(Entry(path.rstrip("/").rpartition("/")[2], path, is_dir,
                             0 if is_dir else int(match.group(2))))
    return entries


def _entry(status) -> Entry:
    """One entry, one Py4J call per field: for what ``_parse`` cannot split."""
    path = status.getPath().toString()
    is_dir = bool(status.isDirectory())
    return Entry(path.rstrip("/").rpartition("/")[2], path, is_dir,
                 0 if is_dir else int(status.getLen()))


def _java_fs(spark: SparkSession, base: str):
    """The JVM FileSystem that serves ``base``."""
    jvm = spark.sparkContext._jvm
    return jvm.org.apache.hadoop.fs.Path(base).getFileSystem(
        spark.sparkContext._jsc.hadoopConfiguration())


def scan_tree(spark: SparkSession, root: str, splits: tuple[str, ...]) -> Listing:
    """List ``root`` and sort every file of ``splits`` into accepted images or skipped.
    Other splits are the business of the job that reads them: not even listed (evaluating
    test must not walk train's thousands of films)."""
    fs = HadoopFS(spark, root)
    if not fs.exists(root):
        raise TreeError(f"data URI {root} does not exist")
    base = fs.qualify(root).rstrip("/")
    listing = _manifest_listing(spark, fs, base, splits)
    if listing is not None:
        return listing
    local = base.startswith("file:")
    lister = (local_lister(local_path(base).resolve(), prefix="file:") if local
              else _hadoop_lister(spark, base))
    found = walk(base, lister, splits, list_files=False)
    entries = (_local_files(spark, base, found.class_folders) if local  # unpersisted below
               else _hadoop_files(spark, found.class_folders)).persist(StorageLevel.MEMORY_AND_DISK)
    per_folder = {(r["split"], r["class_name"]): r["count"] for r in
                  entries.filter(F.col("reason").isNull()).groupBy("split", "class_name").count()
                  .collect()}
    if not per_folder:
        entries.unpersist()
        raise TreeError(f"no images found under {base} for splits {', '.join(splits)}")
    images = pinned(entries.filter(F.col("reason").isNull()).select(
        "path", "split", _label_of(F.col("class_name")).alias("label"),
        _patient_ids(F.col("path")).alias("patient_id"), F.lit(False).alias("is_val")))
    images.count()
    bad = entries.filter(F.col("reason").isNotNull())
    named = [Skipped(f"{base}/{r['rel'].decode('utf-8', 'surrogateescape')}", r["reason"])
             for r in bad.orderBy("rel").limit(MAX_NAMED + 1).collect()]
    unnamed = bad.count() - MAX_NAMED if len(named) > MAX_NAMED else 0
    entries.unpersist()
    skipped = sorted([Skipped(f"{base}/{s.path}", s.reason) for s in found.skipped]
                     + named[:MAX_NAMED], key=lambda s: s.path)
    warnings = [f"{base}/{w}" for w in found.warnings]
    warnings += [f"{base}/{rel}/: {rules.NO_IMAGES}" for _, split, rel in found.class_folders
                 if not per_folder.get((split, rel.rpartition("/")[2]))]
    if len(skipped) > MAX_NAMED or unnamed:
        more = unnamed + max(0, len(skipped) - MAX_NAMED)
        skipped = skipped[:MAX_NAMED]
        warnings.append(f"{base}: {more} more skipped files not named (the first {MAX_NAMED} "
                        "by path are)")
    return Listing(base, images, skipped, sorted(warnings))


def _label_of(class_name: Column) -> Column:
    """The label of a class folder's name (null for another name)."""
    return F.create_map(*(x for name, label in config.CLASSES.items()
                          for x in (F.lit(name), F.lit(float(label)))))[class_name]


@F.pandas_udf(StringType())
def _patient_ids(paths: pd.Series) -> pd.Series:
    """``patients.patient_id`` of each path, in a Spark task."""
    return paths.map(patient_id)


def _local_files(spark: SparkSession, base: str, folders: list[tuple[Entry, str, str]]) -> DataFrame:
    """The entries of the local class ``folders`` (``_ENTRY_SCHEMA``), listed and judged in
    Spark tasks: a ``file:`` tree is read by every executor at the same path, so each can list
    one (``os.scandir``, links reported, never followed)."""
    real_root = str(local_path(base).resolve())
    rows = [(e.path, split, rel) for e, split, rel in folders]

    def list_folders(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        lister = local_lister(Path(real_root), prefix="file:")
        for batch in batches:
            for folder, split, rel in batch.itertuples(index=False):
                out = []
                for entry in lister(folder):
                    reason = file_problem(entry)
                    child = os.fsencode(f"{rel}/{entry.name}")
                    out.append((None if reason else entry.path, child, split,
                                rel.rpartition("/")[2], reason))
                yield pd.DataFrame(out, columns=_ENTRY_SCHEMA.fieldNames())

    schema = "folder string, split string, rel string"
    return (spark.createDataFrame(rows, schema).repartition(max(1, len(rows)))
            .mapInPandas(list_folders, _ENTRY_SCHEMA))


def _hadoop_files(spark: SparkSession, folders: list[tuple[Entry, str, str]]) -> DataFrame:
    """The entries of the class ``folders`` of a Hadoop file system (``_ENTRY_SCHEMA``): each
    folder's statuses are turned into lines of text in the JVM, the lines into a Dataset
    there, and Spark parses and judges them; no entry crosses into the driver's Python. A
    folder whose lines do not split one per status (a line break in a name) is listed one
    entry at a time."""
    jvm = spark.sparkContext._jvm
    parts = []
    for folder, split, rel in folders:
        fs = _java_fs(spark, folder.path)
        try:
            statuses = fs.listStatus(jvm.org.apache.hadoop.fs.Path(folder.path))
        except Py4JJavaError as err:
            raise StorageError(f"{folder.path}: {one_line(err)}") from err
        text = jvm.scala.collection.mutable.StringBuilder()
        jvm.scala.collection.immutable.ArraySeq.unsafeWrapArray(statuses).addString(text, "\n")
        lines = jvm.java.util.regex.Pattern.compile("\n").splitAsStream(text).collect(
            jvm.java.util.stream.Collectors.toList())
        if len(statuses) and lines.size() == len(statuses):
            data = DataFrame(spark._jsparkSession.createDataset(
                lines, jvm.org.apache.spark.sql.Encoders.STRING()).toDF(), spark)
            parts.append(_parsed_statuses(data, split, rel))
        elif len(statuses):
            entries = [_entry(status) for status in statuses]
            parts.append(spark.createDataFrame(
                [(e.path, e.name, e.is_dir, e.size) for e in entries],
                "path string, name string, is_dir boolean, size long")
                .select("path", "name", "is_dir", "size", F.lit(split).alias("split"),
                        F.lit(rel).alias("rel_folder")))
    if not parts:
        return spark.createDataFrame([], _ENTRY_SCHEMA)
    listed = parts[0]
    for part in parts[1:]:
        listed = listed.unionByName(part)
    reason = _judge(F.col("name"), F.col("is_dir"), F.col("size"))
    return listed.select(
        F.when(reason.isNull(), F.col("path")).alias("path"),
        F.encode(F.concat_ws("/", "rel_folder", "name"), "UTF-8").alias("rel"), "split",
        F.regexp_extract("rel_folder", "[^/]+$", 0).alias("class_name"), reason.alias("reason"))


#: ``FileStatus.toString``: ``<Class>{path=<path>; isDirectory=<bool>[; length=<n>; ...]; ...``
_STATUS_SQL = r"^[^{]*\{path=(.*?); isDirectory=(true|false)(?:; length=(\d+))?; "


def _parsed_statuses(data: DataFrame, split: str, rel: str) -> DataFrame:
    """Rows of ``data`` (``value``: a ``FileStatus.toString`` each) as path, name, is_dir, size."""
    path = F.regexp_extract("value", _STATUS_SQL, 1)
    return data.select(path.alias("path"), F.regexp_extract(path, "[^/]*$", 0).alias("name"),
                       (F.regexp_extract("value", _STATUS_SQL, 2) == "true").alias("is_dir"),
                       F.coalesce(F.regexp_extract("value", _STATUS_SQL, 3).try_cast("long"),
                                  F.lit(0)).alias("size"),
                       F.lit(split).alias("split"), F.lit(rel).alias("rel_folder"))


@F.pandas_udf(StringType())
def _judge(names: pd.Series, is_dir: pd.Series, sizes: pd.Series) -> pd.Series:
    """``tree.file_problem`` of each entry, in a Spark task."""
    return pd.Series([file_problem(Entry(n, n, bool(d), int(z)))
                      for n, d, z in zip(names, is_dir, sizes)], dtype=object)


def _manifest_listing(spark: SparkSession, fs: HadoopFS, base: str,
                      splits: tuple[str, ...]) -> Listing | None:
    """The listing from ingest's manifest, if the tree still holds exactly the films it
    lists; None (the caller walks the tree) if there is none or it may not.

    The check costs a few requests per split, not one per film. HDFS (like a local file
    system) sets a folder's modification time whenever an entry is created, deleted or
    renamed in it, and ingest writes the manifest after its last upload; so split and class
    folders older than the manifest hold the entries they held then (times are in ms: one
    as old as the manifest counts as changed). Each split's content
    summary (one NameNode request) must then count as many files and bytes as the manifest
    lists, so litter ingest left in place (a hidden file, a file it did not upload) sends the
    tree to the walk, which names it. Changing a file's bytes in place (append, truncate)
    changes its size; bytes rotting on a disk are ``jobs/ingest.py --verify``'s to find.
    Spark reads the manifest; the driver sees per split and class folder counts.
    """
    top = {e.path.rstrip("/").rpartition("/")[2]: e for e in fs.list_dir(base)}
    own = top.get(config.MANIFEST_NAME)
    if own is None:
        return None
    stray = [n for n, e in top.items()
             if not (n in rules.OWN_FILES or (n in config.SPLITS and e.is_dir))]
    if stray or any(s not in top for s in splits):
        return _stale(base, "other entries at the root, or a split missing")
    try:
        frame, per_folder = _manifest_counts(spark, own.path, splits)
    except ValueError as err:
        return _stale(base, str(err))
    java_fs, warnings = _java_fs(spark, base), []
    for split in sorted(splits):
        folder = f"{base}/{split}"
        classes = {e.path.rstrip("/").rpartition("/")[2]: e for e in fs.list_dir(folder)}
        if any(n not in config.CLASSES or not e.is_dir for n, e in classes.items()) or \
                max([top[split].modified, *(e.modified for e in classes.values())]) >= own.modified:
            return _stale(base, f"{split}/ changed after the manifest was written")
        rows = {c: v for (s, c), v in per_folder.items() if s == split}
        if None in rows or any(c not in classes for c in rows):
            return _stale(base, f"{split}/: rows outside its class folders or mislabelled")
        try:
            summary = java_fs.getContentSummary(java_fs.makeQualified(
                spark.sparkContext._jvm.org.apache.hadoop.fs.Path(folder)))
            counts = (int(summary.getFileCount()), int(summary.getLength()),
                      int(summary.getDirectoryCount()))
        except Py4JJavaError as err:
            raise StorageError(f"{folder}: {one_line(err)}") from err
        films, size = sum(v[0] for v in rows.values()), sum(v[1] for v in rows.values())
        if counts != (films, size, 1 + len(classes)):
            return _stale(base, f"{split}/ holds {counts[0]} files of {counts[1]} bytes, the "
                                f"manifest lists {films}")
        warnings += [f"{base}/{split}/{c}/: {rules.NO_IMAGES}" for c in sorted(classes)
                     if c not in rows]
        warnings += [f"{base}/{split}/{c}/: {rules.CLASS_MISSING}" for c in config.CLASSES
                     if c not in classes]
    if not per_folder:
        raise TreeError(f"no images found under {base} for splits {', '.join(splits)}")
    images = pinned(frame.select(
        F.concat(F.lit(base + "/"), "path").alias("path"), "split",
        F.col("label").cast("double").alias("label"), "patient_id", F.lit(False).alias("is_val")))
    films = images.count()
    log.info("%s: %d films from %s (it matches the tree's folders, file counts and sizes)",
             base, films, config.MANIFEST_NAME)
    return Listing(base, images, [], sorted(warnings))


def _manifest_counts(spark: SparkSession, uri: str, splits: tuple[str, ...]
                     ) -> tuple[DataFrame, dict[tuple[str, str | None], tuple[int, int]]]:
    """The manifest's rows of ``splits`` (Spark reads it; every value a string, as written)
    and, per split and class folder, how many films and bytes it lists. A row that does not
    sit in a class folder of its split, or whose label is not its folder's, counts under
    class None. ValueError if it is not a manifest."""
    try:
        header = _first_line(spark, uri)
        if header != ",".join(manifest.COLUMNS):
            raise ValueError(f"columns {header!r} are not those of ManifestRow")
        ddl = ", ".join(f"`{c}` STRING" for c in manifest.COLUMNS)
        frame = (spark.read.schema(ddl).option("header", "true").option("escape", '"')
                 .option("mode", "FAILFAST").csv(_readable_copy(spark, uri))
                 .filter(F.col("split").isin(list(splits)))
                 .select("path", "split", "label", "patient_id", "bytes"))
        folder = F.split("path", "/").getItem(1)
        fits = (F.col("path").rlike(r"^[^/]+/[^/]+/[^/]+$")
                & F.col("path").startswith(F.concat("split", F.lit("/")))
                & (F.col("label") == _label_of(folder).cast("int").cast("string")))
        counted = (frame.groupBy("split", F.when(fits, folder).alias("class_name"))
                   .agg(F.count(F.lit(1)).alias("films"),
                        F.sum(F.col("bytes").cast("long")).alias("bytes")).collect())
    except (Py4JJavaError, PySparkException) as err:
        raise ValueError(f"not a manifest ({one_line(err)})") from None
    return frame, {(r["split"], r["class_name"]): (int(r["films"]), int(r["bytes"] or 0))
                   for r in counted}


def _first_line(spark: SparkSession, uri: str) -> str:
    """The first line of the UTF-8 text file ``uri`` ("" if it is empty)."""
    jvm = spark.sparkContext._jvm
    stream = _java_fs(spark, uri).open(jvm.org.apache.hadoop.fs.Path(uri))
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(
        stream, jvm.java.nio.charset.StandardCharsets.UTF_8.newDecoder()))
    try:
        return reader.readLine() or ""
    finally:
        reader.close()


def _readable_copy(spark: SparkSession, uri: str) -> str:
    """A copy of ``uri`` that Spark's file sources read, in the job's scratch folder. They
    skip every file whose name starts with ``_``, as the manifest's does, even one named
    explicitly, and so does Hadoop's ``FileInputFormat``. Hadoop's ``FileUtil.copy`` streams
    it through a small buffer: the driver's memory stays flat in the manifest's length
    (reading its lines into a Java list first grew the driver's heap by 0.4 GB per 100k
    films)."""
    copy = scratch(spark, "manifest.csv")
    HadoopFS(spark, uri).copy(uri, copy)
    return copy


def _stale(base: str, why: str) -> None:
    log.info("%s/%s does not describe the tree now (%s): listing the tree", base,
             config.MANIFEST_NAME, why)
    return None


def _origin_as_path(origin):
    """The image source reports ``file:///a%20b.png``; Hadoop paths read ``file:/a b.png``."""
    decoded = F.url_decode(F.regexp_replace(origin, r"\+", "%2B"))
    return F.regexp_replace(decoded, "^file:///", "file:/")


def read_films(spark: SparkSession, folders: list[str],
               reader: str = config.DEFAULT_READER) -> DataFrame:
    """Every file under ``folders`` as ``path``, ``image`` (the image-source struct with
    ``reader="image"``, the file's bytes with ``"binaryFile"``) and ``sha256``. A file the
    storage cannot read is left out, not fatal (``TOLERANT_READ``): name those with ``unread``."""
    if reader not in config.READERS:
        raise ValueError(f"reader must be one of {config.READERS}, got {reader!r}")
    raw = (spark.read.format(reader).options(**TOLERANT_READ)
           .option("recursiveFileLookup", "true").load(folders))
    if reader == "image":
        return raw.select(_origin_as_path(F.col("image.origin")).alias("path"), "image",
                          F.sha2(F.col("image.data"), 256).alias(HASH_COL))
    return raw.select("path", F.col("content").alias("image"),
                      F.sha2(F.col("content"), 256).alias(HASH_COL))


def read_images(spark: SparkSession, listing: Listing, reader: str = config.DEFAULT_READER) -> DataFrame:
    """The accepted images with their metadata (``META_SCHEMA``) and an ``image`` column: the
    image-source struct (``reader="image"``) or the file's bytes (``"binaryFile"``). Films the
    storage cannot read are missing from it: ``unread`` names them."""
    folders = sorted(r[0] for r in listing.images.select(
        F.regexp_extract("path", "^(.*)/[^/]*$", 1)).distinct().collect())
    return read_films(spark, folders, reader).join(F.broadcast(metadata(spark, listing)),
                                                   on="path", how="inner")


def unread(spark: SparkSession, expected: DataFrame, got: DataFrame) -> list[Skipped]:
    """Each film of ``expected`` (a DataFrame with ``path``) missing from ``got`` (what a read
    through ``read_films``/``read_images`` delivered, or anything made from it that keeps every
    row and ``path``), with its reason, sorted by path.

    Pass ``got`` persisted or already written: it is scanned once more for its paths. The
    first ``MAX_PROBES`` films are read again on the driver for their reason.
    """
    missing = [r["path"] for r in expected.select("path").join(got.select("path"), on="path",
                                                                how="left_anti")
               .orderBy("path").collect()]
    skipped = [Skipped(path, _read_failure(spark, path) if i < MAX_PROBES else
                       rules.unreadable(f"the read failed; not re-read, more than {MAX_PROBES} did"))
               for i, path in enumerate(missing)]
    for item in skipped:
        log.warning("unreadable, left out: %s: %s", item.path, item.reason)
    return skipped


def _read_failure(spark: SparkSession, path: str) -> str:
    """Why ``path`` cannot be read, in the words of ``pipeline.data.rules``."""
    try:
        HadoopFS(spark, path).read_bytes(path)
    except StorageError as err:
        detail = str(err).removeprefix(f"{path}: ")
        if "ChecksumException" in detail or "BlockMissingException" in detail:
            return rules.HDFS_CHECKSUM
        return rules.unreadable(detail)
    return rules.unreadable("the read failed on an executor and worked when retried; "
                            "re-run to include it")


def metadata(spark: SparkSession, listing: Listing) -> DataFrame:
    """The listing's films as a DataFrame of ``META_SCHEMA`` (without the columns a job added)."""
    return listing.images.select(*META_SCHEMA.fieldNames())


def duplicates(images: DataFrame) -> list[Duplicate]:
    """Each image whose bytes (image source: pixels) equal an earlier one's in path order, as
    ingest's manifest flags them. They are kept, not dropped: a warning, because a copy on
    both sides of a split inflates the metrics."""
    groups = (images.groupBy(HASH_COL).agg(F.sort_array(F.collect_list("path")).alias("paths"))
              .filter(F.size("paths") > 1).collect())
    return sorted((Duplicate(path, g.paths[0]) for g in groups for path in g.paths[1:]),
                  key=lambda d: d.path)
