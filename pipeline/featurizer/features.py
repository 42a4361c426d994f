"""The featurization step: the expensive one, run once per image and optionally cached.

Rows whose image cannot be decoded, and films the storage cannot read (``dataset.unread``),
are reported by file name and reason and left out; the rest go on. Byte-identical files are
found in the same pass and reported as duplicates.
``--features-cache`` keeps the vectors in Parquet so a re-fit (other classifier settings,
another threshold target) skips the CNN entirely. The cache holds the vectors by path only:
the metadata (labels, the validation side) always comes from the current listing.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.data.dataset import (
    HASH_COL,
    Listing,
    duplicates,
    metadata,
    read_images,
    unread,
)
from pipeline.data.rules import Duplicate, Skipped
from pipeline.featurizer.transformer import DeepImageFeaturizer
from pipeline.fs.storage import HadoopFS, atomic_output
from pipeline.runtime.session import pinned, step

log = logging.getLogger(__name__)

ERROR_COL = "featurize_error"
_CACHE_META = "_featurizer.json"
#: Version of what a cache holds (3: vectors by path only; 4: pooled in float32 outside the
#: network; 5: keyed on the listing's paths; 6: from the network with its batch
#: normalizations folded, whose features differ by rounding, in bfloat16 enough to move a
#: validation AUC in its fourth decimal); older caches are redone.
_CACHE_FORMAT = 6


@dataclass
class Featurized:
    """The outcome of featurizing a set of images."""

    #: The decodable rows: the listing's metadata and the features.
    frame: DataFrame
    #: Each file that could not be read or decoded, and why.
    skipped: list[Skipped]
    #: The listing's films, readable or not.
    total: int
    #: Each byte-identical copy (see dataset.duplicates).
    duplicates: list[Duplicate]


def _featurizer_identity(featurizer: DeepImageFeaturizer) -> dict:
    """What decides the features: a cache made with anything else is not reused."""
    cfg = featurizer.worker_config()
    # CLAHE and another input size are named only when asked for: caches made before these
    # settings existed hold exactly the features of their defaults and stay valid.
    return {"model_name": cfg.model_name, "weights": cfg.weights, "pooling": cfg.pooling,
            "seed": cfg.seed, "model_file": cfg.model_file, "precision": cfg.precision,
            "draft_decode": cfg.draft_decode, "cache_format": _CACHE_FORMAT,
            **({"clahe": True} if cfg.clahe else {}),
            **({"input_size": cfg.input_size} if cfg.input_size else {})}


def featurize(spark: SparkSession, featurizer: DeepImageFeaturizer, listing: Listing, reader: str,
              name: str, timings: dict[str, float]) -> Featurized:
    """Run the CNN over ``listing``'s films once (persisted); report undecodable files and
    copies."""
    featurizer = featurizer.copy({featurizer.errorCol: ERROR_COL})
    with step(spark, name, timings):
        out = pinned(featurizer.transform(read_images(spark, listing, reader)).drop("image"))
        read = out.count()
        lost = unread(spark, metadata(spark, listing), out)
        bad = out.filter(F.col(ERROR_COL).isNotNull()).select("path", ERROR_COL).collect()
        copies = duplicates(out)
    undecodable = [Skipped(r["path"], r[ERROR_COL]) for r in bad]
    for item in undecodable:
        log.warning("not featurized %s: %s", item.path, item.reason)
    for item in copies:
        log.warning("duplicate %s is byte-identical to %s", item.path, item.duplicate_of)
    skipped = sorted(lost + undecodable, key=lambda s: s.path)
    total = read + len(lost)
    log.info("%s: %d images, %d featurized, %d unreadable, %d undecodable, %d duplicates, "
             "%.1f images/s", name, total, total - len(skipped), len(lost), len(undecodable),
             len(copies), read / max(timings[name], 1e-9))
    good = out.filter(F.col(ERROR_COL).isNull()).drop(ERROR_COL, HASH_COL)
    return Featurized(good, skipped, total, copies)


def _fingerprint(listing: Listing) -> dict:
    """How many films ``listing`` holds and the sha256 of their sorted paths, computed by
    Spark: the driver never holds the paths."""
    row = listing.images.agg(F.count(F.lit(1)).alias("count"), F.sha2(F.concat_ws(
        "\n", F.array_sort(F.collect_list("path"))), 256).alias("paths_sha256")).first()
    return {"count": int(row["count"]), "paths_sha256": row["paths_sha256"]}


def cached_featurize(spark: SparkSession, featurizer: DeepImageFeaturizer, listing: Listing,
                     reader: str, cache_uri: str | None, name: str,
                     timings: dict[str, float]) -> Featurized:
    """``featurize``, reusing ``cache_uri`` when it holds the listing's films made by this
    featurizer."""
    if not cache_uri:
        return featurize(spark, featurizer, listing, reader, name, timings)
    fs = HadoopFS(spark, cache_uri)
    identity = _featurizer_identity(featurizer)
    films = _fingerprint(listing)
    meta_uri = f"{cache_uri.rstrip('/')}/{_CACHE_META}"
    if fs.exists(meta_uri):
        meta = json.loads(fs.read_bytes(meta_uri))
        if meta.get("featurizer") == identity and meta.get("films") == films:
            log.info("reusing features from %s (%d images)", cache_uri, films["count"])
            timings[name] = 0.0
            vectors = spark.read.parquet(cache_uri)
            return Featurized(metadata(spark, listing).join(vectors, on="path"),
                              [Skipped(**s) for s in meta["skipped"]], films["count"],
                              [Duplicate(**d) for d in meta["duplicates"]])
        log.info("feature cache %s was made from other images or settings: recomputing", cache_uri)
    done = featurize(spark, featurizer, listing, reader, name, timings)
    with atomic_output(spark, cache_uri) as tmp:
        done.frame.select("path", featurizer.getOutputCol()).write.parquet(tmp)
        meta = {"featurizer": identity, "films": films,
                "skipped": [dataclasses.asdict(s) for s in done.skipped],
                "duplicates": [dataclasses.asdict(d) for d in done.duplicates]}
        HadoopFS(spark, tmp).write_bytes(f"{tmp}/{_CACHE_META}", json.dumps(meta).encode())
    return done
