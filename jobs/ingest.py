"""Ingest a local chest_xray tree into HDFS: ``python jobs/ingest.py LOCAL_TREE hdfs:///dir``.

Exit status 0 when every valid image is on HDFS (rejects are listed, not failures); 2 with one
``error:`` line when the tree, the destination or HDFS is unusable or some upload failed (a
re-run retries it); 143 when stopped by SIGTERM. The contract of every entry point:
``pipeline.runtime.cli``.

``python jobs/ingest.py --verify hdfs:///dir`` audits what an ingest left there instead: it
reads every film back, compares it with the manifest (``pipeline.ingest.verify``), prints
each bad one, and exits 1 (``EXIT_UNHEALTHY``) if there is any.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.config import HDFS_USER, INGEST_THREADS, SPLITS, WEBHDFS_URL
from pipeline.ingest.upload import ingest, log_report
from pipeline.ingest.verify import log_audit, verify
from pipeline.runtime.cli import EXIT_UNHEALTHY, base_parser, run_job
from pipeline.runtime.progress import file_progress


def parser() -> argparse.ArgumentParser:
    """The command line; defaults come from pipeline.config (XRAY_* variables)."""
    p = base_parser(__doc__.splitlines()[0], spark=False)
    p.add_argument("tree", type=Path, nargs="?",
                   help="local chest_xray folder (holds train/ val/ test/)")
    p.add_argument("dest", nargs="?",
                   help="hdfs:///dir, hdfs://host[:port]/dir or webhdfs://host:port/dir")
    p.add_argument("--verify", metavar="DEST",
                   help="instead of ingesting: read every film of an ingested DEST back and "
                        "compare it with its manifest; exit 1 if any is missing or differs "
                        "(reads everything: once per audit, not every run)")
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


def main(args: argparse.Namespace) -> int | None:
    if args.verbose:  # HdfsCLI logs every request: noise unless asked for
        logging.getLogger("hdfs").setLevel(logging.DEBUG)
    positional = [a for a in (args.tree, args.dest) if a is not None]
    if len(positional) != (0 if args.verify else 2):
        raise ValueError("give LOCAL_TREE and DEST to ingest, or --verify DEST alone to audit")
    show = sys.stderr.isatty() if args.progress is None else args.progress
    if args.verify:
        return _verify(args, show)
    with file_progress(show) as on_progress:
        report = ingest(args.tree, args.dest, splits=args.splits, threads=args.threads,
                        user=args.user, webhdfs_url=args.webhdfs_url, on_progress=on_progress)
    log_report(report)
    print(f"ingest: {report.summary()}", flush=True)
    if report.failures:
        raise RuntimeError(f"{len(report.failures)} file(s) not uploaded; re-run to retry them")
    return None


def _verify(args: argparse.Namespace, show: bool) -> int | None:
    with file_progress(show) as on_progress:
        audit = verify(args.verify, threads=args.threads, user=args.user,
                       webhdfs_url=args.webhdfs_url, on_progress=on_progress)
    log_audit(audit)
    for item in audit.bad:
        print(f"bad {item.path}: {item.reason}")
    print(f"verify: {audit.summary()}", flush=True)
    return EXIT_UNHEALTHY if audit.bad else None


if __name__ == "__main__":
    run_job(main, parser())
