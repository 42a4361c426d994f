"""Reading a ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}`` tree from any Hadoop URI.

The tree is listed once on the driver, and every file is either accepted (with its split,
label and patient) or skipped with a reason that names it; nothing is dropped silently. An
empty or missing class folder is a warning. Symbolic links (local trees) are skipped, never
followed. Spark then reads only the known class folders, with the image source or as raw
bytes, and only the accepted files go on: Spark's own listing of those folders does follow
links, and a join on the accepted paths drops what else it read before the featurizer.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from pipeline import config
from pipeline.patients import patient_id
from pipeline.storage import FileEntry, HadoopFS, local_path
from pipeline.tree_scan import link_problem

log = logging.getLogger(__name__)

#: Columns of the metadata every image row carries.
META_SCHEMA = StructType([
    StructField("path", StringType(), False),
    StructField("split", StringType(), False),
    StructField("label", DoubleType(), False),
    StructField("patient_id", StringType(), False),
])


#: sha256 of each file's bytes (image source: of its decoded pixels), to find duplicates.
HASH_COL = "sha256"


class DatasetError(ValueError):
    """The tree cannot be used as asked (missing split, nothing to read)."""


@dataclass
class Listing:
    """What a scan of the tree found: accepted image files and skipped files with reasons."""

    root: str
    images: pd.DataFrame  # path, split, label, patient_id
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Problems that are not one file's: empty or missing class folders.
    warnings: list[str] = field(default_factory=list)

    def log_summary(self) -> None:
        counts = self.images.groupby(["split", "label"]).size().to_dict()
        log.info("%s: %d images %s, %d skipped", self.root, len(self.images),
                 {f"{s}/{config.CLASS_NAMES[int(lbl)]}": n for (s, lbl), n in counts.items()},
                 len(self.skipped))
        for path, reason in self.skipped:
            log.warning("skipped %s: %s", path, reason)
        for warning in self.warnings:
            log.warning("%s", warning)


def classify(rel_path: str, size: int) -> tuple[str, str] | str:
    """``(split, class)`` for an image file at ``split/CLASS/name`` below the root, or the
    reason it is skipped."""
    parts = rel_path.split("/")
    if any(p.startswith(".") for p in parts):
        return "hidden file"
    if len(parts) != 3:
        return "not in a split/CLASS/ folder"
    split, cls, name = parts
    if split not in config.SPLITS:
        return f"unknown split folder {split!r}"
    if cls not in config.CLASSES:
        return f"unknown class folder {cls!r} (expected {', '.join(config.CLASSES)})"
    if not name.lower().endswith(config.IMAGE_EXTENSIONS):
        return "not an image file (extension)"
    if size == 0:
        return "empty file (0 bytes)"
    return split, cls


def scan_tree(spark: SparkSession, root: str, splits: tuple[str, ...]) -> Listing:
    """List ``root`` and sort every file into accepted images of ``splits`` or skipped."""
    fs = HadoopFS(spark, root)
    if not fs.exists(root):
        raise DatasetError(f"data URI {root} does not exist")
    base = fs.qualify(root).rstrip("/")
    for split in splits:
        if not fs.exists(f"{base}/{split}"):
            raise DatasetError(f"split {split!r} is missing: no folder {base}/{split}")
    rows, skipped = [], []
    # Other splits are the business of the job that reads them: not even listed (evaluating
    # test must not walk train's thousands of films).
    others = frozenset(f"{base}/{split}" for split in set(config.SPLITS) - set(splits))
    for entry in fs.list_files(base, prune=others):
        rel = entry.path[len(base) + 1:]
        verdict = _link_reason(entry, base) if entry.link else classify(rel, entry.size)
        if isinstance(verdict, str):
            skipped.append((entry.path, verdict))
        else:
            rows.append((entry.path, verdict[0], float(config.CLASSES[verdict[1]]),
                         patient_id(entry.path)))
    images = pd.DataFrame(rows, columns=[f.name for f in META_SCHEMA.fields])
    if images.empty:
        raise DatasetError(f"no images found under {base} for splits {', '.join(splits)}")
    return Listing(base, images, skipped, _class_folder_warnings(fs, base, splits, images))


def _link_reason(entry: FileEntry, base: str) -> str:
    """Why a symbolic link is skipped: the jobs read regular files only."""
    real_root = local_path(base).resolve()
    return (link_problem(local_path(entry.path), real_root)
            or "symbolic link (not followed: the jobs read regular files only)")


def _class_folder_warnings(fs: HadoopFS, base: str, splits: tuple[str, ...],
                           images: pd.DataFrame) -> list[str]:
    """A line for each class folder of ``splits`` that gave no image."""
    warnings = []
    for split in splits:
        for name, label in config.CLASSES.items():
            if not ((images.split == split) & (images.label == label)).any():
                folder = f"{base}/{split}/{name}"
                what = "no images in class folder" if fs.exists(folder) else "class folder missing"
                warnings.append(f"{folder}: {what}")
    return warnings


def _origin_as_path(origin):
    """The image source reports ``file:///a%20b.png``; Hadoop paths read ``file:/a b.png``."""
    decoded = F.url_decode(F.regexp_replace(origin, r"\+", "%2B"))
    return F.regexp_replace(decoded, "^file:///", "file:/")


def read_images(spark: SparkSession, listing: Listing, reader: str = config.DEFAULT_READER) -> DataFrame:
    """The accepted images with their metadata and an ``image`` column: the image-source
    struct (``reader="image"``) or the file's bytes (``"binaryFile"``)."""
    if reader not in config.READERS:
        raise ValueError(f"reader must be one of {config.READERS}, got {reader!r}")
    folders = sorted({p.rsplit("/", 1)[0] for p in listing.images["path"]})
    raw = spark.read.format(reader).option("recursiveFileLookup", "true").load(folders)
    if reader == "image":
        raw = raw.select(_origin_as_path(F.col("image.origin")).alias("path"), "image",
                         F.sha2(F.col("image.data"), 256).alias(HASH_COL))
    else:
        raw = raw.select("path", F.col("content").alias("image"),
                         F.sha2(F.col("content"), 256).alias(HASH_COL))
    meta = spark.createDataFrame(listing.images, schema=META_SCHEMA)
    return raw.join(F.broadcast(meta), on="path", how="inner")


def duplicates(images: DataFrame) -> list[dict]:
    """``{"path", "duplicate_of"}`` for each image whose bytes (image source: pixels) equal
    an earlier one's in path order, as ingest's manifest flags them. They are kept, not
    dropped: a warning, because a copy on both sides of a split inflates the metrics."""
    groups = (images.groupBy(HASH_COL).agg(F.sort_array(F.collect_list("path")).alias("paths"))
              .filter(F.size("paths") > 1).collect())
    return sorted(({"path": path, "duplicate_of": g.paths[0]} for g in groups
                   for path in g.paths[1:]), key=lambda d: d["path"])
