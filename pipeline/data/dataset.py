"""Reading a ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}`` tree from any Hadoop URI.

The tree is listed once on the driver by the one walk (``pipeline.data.tree``), and every
file is either accepted (with its split, label, patient and side of the validation split) or
skipped with a reason that names it; nothing is dropped silently. An empty or missing class
folder is a warning. Symbolic links (local trees) are skipped, never followed. Spark then
reads only the known class folders, with the image source or as raw bytes, and only the
accepted files go on: Spark's own listing of those folders does follow links, and a join on
the accepted paths drops what else it read before the featurizer.

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
from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType

from pipeline import config
from pipeline.data import rules
from pipeline.data.patients import patient_id
from pipeline.data.rules import Duplicate, Skipped
from pipeline.data.split import validation_mask
from pipeline.data.tree import Entry, Lister, TreeError, walk
from pipeline.fs.storage import HadoopFS, StorageError, local_path

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


def _hadoop_lister(fs: HadoopFS, base: str) -> Lister:
    """Folder listings through the Hadoop FileSystem; on a local tree a symbolic link is
    reported, not followed (Hadoop's local file system would follow it, out of the tree)."""
    real_root = local_path(base).resolve() if base.startswith("file:") else None

    def list_folder(folder: str) -> list[Entry]:
        entries = []
        for item in fs.list_dir(folder):
            name = item.path.rstrip("/").rpartition("/")[2]
            local = local_path(item.path) if real_root is not None else None
            if local is not None and os.path.islink(local):
                entries.append(Entry(name, item.path, problem=rules.link_reason(local, real_root)))
            else:
                entries.append(Entry(name, item.path, item.is_dir, item.size))
        return entries
    return list_folder


def scan_tree(spark: SparkSession, root: str, splits: tuple[str, ...]) -> Listing:
    """List ``root`` and sort every file of ``splits`` into accepted images or skipped.
    Other splits are the business of the job that reads them: not even listed (evaluating
    test must not walk train's thousands of films)."""
    fs = HadoopFS(spark, root)
    if not fs.exists(root):
        raise TreeError(f"data URI {root} does not exist")
    base = fs.qualify(root).rstrip("/")
    found = walk(base, _hadoop_lister(fs, base), splits)
    rows = [(f.path, f.split, float(config.CLASSES[f.class_name]), patient_id(f.path), False)
            for f in found.files]
    images = pd.DataFrame(rows, columns=[f.name for f in META_SCHEMA.fields])
    if images.empty:
        raise TreeError(f"no images found under {base} for splits {', '.join(splits)}")
    return Listing(base, images, [Skipped(f"{base}/{s.path}", s.reason) for s in found.skipped],
                   [f"{base}/{w}" for w in found.warnings])


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
