"""Reading a ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}`` tree from any Hadoop URI.

The tree is listed once on the driver, and every file is either accepted (with its split,
label, patient and side of the validation split) or skipped with a reason that names it;
nothing is dropped silently. An empty or missing class folder is a warning.

Where ingest left a manifest that still describes the tree (``_manifest_listing``: a few
requests, whatever the tree's size), the films come from it, one table parse. Otherwise the
one walk (``pipeline.data.tree``) lists it: a local tree with ``os.scandir``, any other file
system a folder at a time in bulk (``_hadoop_lister``). Symbolic links (local trees) are
skipped, never followed. Spark then reads only the known class folders, with the image
source or as raw bytes, and only the accepted files go on: Spark's own listing of those
folders does follow links, and a join on the accepted paths drops what else it read before
the featurizer.

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
import re
from dataclasses import dataclass, field

import pandas as pd
from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType

from pipeline import config
from pipeline.data import manifest, rules
from pipeline.data.local_tree import local_lister
from pipeline.data.patients import patient_id
from pipeline.data.rules import Duplicate, Skipped
from pipeline.data.split import validation_mask
from pipeline.data.tree import Entry, Lister, TreeError, walk
from pipeline.fs.storage import HadoopFS, StorageError, local_path
from pipeline.runtime.cli import one_line

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


@dataclass
class Listing:
    """What a scan of the tree found: accepted image files and skipped files with reasons."""

    root: str
    images: pd.DataFrame  # META_SCHEMA's columns
    skipped: list[Skipped] = field(default_factory=list)
    #: Problems that are not one file's: empty or missing class folders.
    warnings: list[str] = field(default_factory=list)

    def with_validation(self, fraction: float, seed: int) -> Listing:
        """This listing with ``is_val`` set on the train films of the patient-grouped
        validation part (``pipeline.data.split``: the one split every program uses)."""
        train = self.images[self.images["split"] == "train"]
        chosen = set(train["path"][validation_mask(train, fraction, seed)])
        return dataclasses.replace(self, images=self.images.assign(
            is_val=self.images["path"].isin(chosen)))

    def log_summary(self) -> None:
        counts = self.images.groupby(["split", "label"]).size().to_dict()
        log.info("%s: %d images %s, %d skipped", self.root, len(self.images),
                 {f"{s}/{config.CLASS_NAMES[int(lbl)]}": n for (s, lbl), n in counts.items()},
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
    lister = (local_lister(local_path(base).resolve(), prefix="file:")
              if base.startswith("file:") else _hadoop_lister(spark, base))
    found = walk(base, lister, splits)
    rows = [(f.path, f.split, float(config.CLASSES[f.class_name]), patient_id(f.path), False)
            for f in found.files]
    images = pd.DataFrame(rows, columns=[f.name for f in META_SCHEMA.fields])
    if images.empty:
        raise TreeError(f"no images found under {base} for splits {', '.join(splits)}")
    return Listing(base, images, [Skipped(f"{base}/{s.path}", s.reason) for s in found.skipped],
                   [f"{base}/{w}" for w in found.warnings])


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
        frame = manifest.read_frame(fs.read_bytes(own.path),
                                    ("path", "split", "label", "patient_id", "bytes"))
    except ValueError as err:
        return _stale(base, str(err))
    frame = frame[frame["split"].isin(splits)]
    java_fs, warnings = _java_fs(spark, base), []
    for split in sorted(splits):
        folder = f"{base}/{split}"
        classes = {e.path.rstrip("/").rpartition("/")[2]: e for e in fs.list_dir(folder)}
        if any(n not in config.CLASSES or not e.is_dir for n, e in classes.items()) or \
                max([top[split].modified, *(e.modified for e in classes.values())]) >= own.modified:
            return _stale(base, f"{split}/ changed after the manifest was written")
        rows = frame[frame["split"] == split]
        folder_of = rows["path"].str.split("/").str[1]
        labels = folder_of.map({name: str(label) for name, label in config.CLASSES.items()})
        if not (rows["path"].str.fullmatch(rf"{re.escape(split)}/[^/]+/[^/]+")
                & folder_of.isin(list(classes)) & (rows["label"] == labels)).all():
            return _stale(base, f"{split}/: rows outside its class folders or mislabelled")
        try:
            summary = java_fs.getContentSummary(java_fs.makeQualified(
                spark.sparkContext._jvm.org.apache.hadoop.fs.Path(folder)))
            counts = (int(summary.getFileCount()), int(summary.getLength()),
                      int(summary.getDirectoryCount()))
        except Py4JJavaError as err:
            raise StorageError(f"{folder}: {one_line(err)}") from err
        if counts != (len(rows), int(rows["bytes"].astype("int64").sum()), 1 + len(classes)):
            return _stale(base, f"{split}/ holds {counts[0]} files of {counts[1]} bytes, the "
                                f"manifest lists {len(rows)}")
        per_class = folder_of.value_counts()
        warnings += [f"{base}/{split}/{c}/: {rules.NO_IMAGES}" for c in sorted(classes)
                     if not per_class.get(c)]
        warnings += [f"{base}/{split}/{c}/: {rules.CLASS_MISSING}" for c in config.CLASSES
                     if c not in classes]
    if frame.empty:
        raise TreeError(f"no images found under {base} for splits {', '.join(splits)}")
    images = pd.DataFrame({"path": base + "/" + frame["path"], "split": frame["split"],
                           "label": frame["label"].astype(float),
                           "patient_id": frame["patient_id"], "is_val": False})
    log.info("%s: %d films from %s (it matches the tree's folders, file counts and sizes)",
             base, len(images), config.MANIFEST_NAME)
    return Listing(base, images.reset_index(drop=True), [], warnings)


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
    folders = sorted({p.rsplit("/", 1)[0] for p in listing.images["path"]})
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
    """The listing's films as a DataFrame of ``META_SCHEMA``."""
    return spark.createDataFrame(listing.images[[f.name for f in META_SCHEMA.fields]],
                                 schema=META_SCHEMA)


def duplicates(images: DataFrame) -> list[Duplicate]:
    """Each image whose bytes (image source: pixels) equal an earlier one's in path order, as
    ingest's manifest flags them. They are kept, not dropped: a warning, because a copy on
    both sides of a split inflates the metrics."""
    groups = (images.groupBy(HASH_COL).agg(F.sort_array(F.collect_list("path")).alias("paths"))
              .filter(F.size("paths") > 1).collect())
    return sorted((Duplicate(path, g.paths[0]) for g in groups for path in g.paths[1:]),
                  key=lambda d: d.path)
