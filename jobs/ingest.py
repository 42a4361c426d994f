"""Ingest a local chest_xray tree into HDFS: ``python jobs/ingest.py LOCAL_TREE hdfs:///dir``.

Exit status 0 when every valid image is on HDFS (rejects are listed, not failures); 2 with one
``error:`` line when the tree, the destination or HDFS is unusable or some upload failed (a
re-run retries it); 143 when stopped by SIGTERM. The contract of every entry point:
``pipeline.runtime.cli``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.config import HDFS_USER, INGEST_THREADS, SPLITS, WEBHDFS_URL
from pipeline.ingest.upload import ingest, log_report
from pipeline.runtime.cli import base_parser, run_job
from pipeline.runtime.progress import file_progress


def parser() -> argparse.ArgumentParser:
    """The command line; defaults come from pipeline.config (XRAY_* variables)."""
    p = base_parser(__doc__.splitlines()[0], spark=False)
    p.add_argument("tree", type=Path, help="local chest_xray folder (holds train/ val/ test/)")
    p.add_argument("dest", help="hdfs:///dir, hdfs://host[:port]/dir or webhdfs://host:port/dir")
    p.add_argument("--splits", type=lambda s: [x for x in s.split(",") if x],
                   help=f"comma-separated splits that must exist and are ingested "
                        f"(default: whichever of {','.join(SPLITS)} exist)")
    p.add_argument("--threads", type=int, default=INGEST_THREADS,
                   help="parallel uploads (XRAY_INGEST_THREADS)")
    p.add_argument("--webhdfs-url", default=WEBHDFS_URL,
                   help="WebHDFS endpoint for hdfs:// destinations")
    p.add_argument("--user", default=HDFS_USER, help="HDFS user")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    return p


def main(args: argparse.Namespace) -> None:
    if args.verbose:  # HdfsCLI logs every request: noise unless asked for
        logging.getLogger("hdfs").setLevel(logging.DEBUG)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    with file_progress(show) as on_progress:
        report = ingest(args.tree, args.dest, splits=args.splits, threads=args.threads,
                        user=args.user, webhdfs_url=args.webhdfs_url, on_progress=on_progress)
    log_report(report)
    print(f"ingest: {report.summary()}", flush=True)
    if report.failures:
        raise RuntimeError(f"{len(report.failures)} file(s) not uploaded; re-run to retry them")


if __name__ == "__main__":
    run_job(main, parser())
