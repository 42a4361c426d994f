"""Ingest a local chest_xray tree into HDFS: ``python jobs/ingest.py LOCAL_TREE hdfs:///dir``.

Exit status 0 when every valid image is on HDFS (rejects are listed, not failures), 1 with one
line on stderr when the tree, the destination or HDFS is unusable or some upload failed.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hdfs import HdfsError

from pipeline.config import HDFS_USER, INGEST_THREADS, SPLITS, WEBHDFS_URL
from pipeline.hdfs_checksum import UnsupportedChecksum
from pipeline.ingest import Report, ingest
from pipeline.progress import ProgressBar
from pipeline.tree_scan import TreeError
from pipeline.webhdfs import DestinationError, HdfsUnreachable

log = logging.getLogger("ingest")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; defaults come from pipeline.config (XRAY_* variables)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path, help="local chest_xray folder (holds train/ val/ test/)")
    parser.add_argument("dest", help="hdfs:///dir, hdfs://host[:port]/dir or webhdfs://host:port/dir")
    parser.add_argument("--splits", type=lambda s: [x for x in s.split(",") if x],
                        help=f"comma-separated splits that must exist and are ingested "
                             f"(default: whichever of {','.join(SPLITS)} exist)")
    parser.add_argument("--threads", type=int, default=INGEST_THREADS,
                        help="parallel uploads (default %(default)s, XRAY_INGEST_THREADS)")
    parser.add_argument("--webhdfs-url", default=WEBHDFS_URL,
                        help="WebHDFS endpoint for hdfs:// destinations (default %(default)s)")
    parser.add_argument("--user", default=HDFS_USER, help="HDFS user (default %(default)s)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="tracebacks on errors, per-request HDFS logging")
    return parser.parse_args(argv)


def print_report(report: Report) -> None:
    """List what was not ingested and why, the flagged duplicates, then the summary line."""
    for reject in sorted(report.rejects, key=lambda r: r.rel_path):
        log.warning("rejected %s: %s", reject.rel_path, reject.reason)
    for warning in report.warnings:
        log.warning("%s", warning)
    for path, original in report.duplicates:
        log.info("duplicate %s is byte-identical to %s (uploaded, flagged in the manifest)",
                 path, original)
    for path, error in report.failures:
        log.error("failed %s: %s", path, error)
    print(f"ingest: {report.summary()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run ingest; return the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # HdfsCLI logs every request at INFO; that is noise unless asked for.
    logging.getLogger("hdfs").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    bar = ProgressBar() if show_progress else None
    try:
        report = ingest(args.tree, args.dest, splits=args.splits, threads=args.threads,
                        user=args.user, webhdfs_url=args.webhdfs_url, on_progress=bar)
    except (TreeError, DestinationError, HdfsUnreachable, HdfsError, UnsupportedChecksum) as err:
        if args.verbose:
            raise
        kind = "HDFS refused: " if isinstance(err, HdfsError) else ""
        print(f"ingest: error: {kind}{err}", file=sys.stderr)
        return 1
    finally:
        if bar:
            bar.close()
    print_report(report)
    if report.failures:
        print(f"ingest: error: {len(report.failures)} file(s) not uploaded; re-run to retry them",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
