"""A job that writes one output the way every job does (prepare_output, then atomic_output)
and can be held half-way, for tests/reliability/test_lease.py: two of them on one URI, or one
killed while it holds the lease.

    python -m tests.reliability.lease_writer URI [--files N] [--hold-until LOCAL_FILE]

It writes N small files under the temporary output, logs ``half written`` after the first
half and waits there until LOCAL_FILE exists (at most 10 minutes; SIGTERM stops it there),
then writes the rest.
Each file holds the Spark application id, so a test can tell whose output is in place.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from pipeline.fs.storage import HadoopFS, atomic_output, prepare_output
from pipeline.runtime import shutdown
from pipeline.runtime.cli import base_parser, run_job
from pipeline.runtime.session import get_session

log = logging.getLogger("pipeline.tests.lease_writer")


def parser() -> argparse.ArgumentParser:
    p = base_parser("Write an output through the pipeline's storage functions, slowly.")
    p.add_argument("out")
    p.add_argument("--files", type=int, default=6)
    p.add_argument("--hold-until", type=Path, default=None)
    return p


def main(args: argparse.Namespace) -> None:
    spark = get_session("xray-lease-writer", args.master or "local[1]", args.verbose)
    app = spark.sparkContext.applicationId
    prepare_output(spark, args.out)
    with atomic_output(spark, args.out) as tmp:
        fs = HadoopFS(spark, tmp)
        fs.mkdirs(tmp)
        for i in range(args.files):
            if i == args.files // 2:
                log.info("half written by %s: %s", app, tmp)
                deadline = time.monotonic() + 600
                while args.hold_until and not args.hold_until.exists() \
                        and time.monotonic() < deadline:
                    shutdown.check()  # a step boundary: SIGTERM stops it here
                    time.sleep(0.1)
            fs.write_bytes(f"{tmp}/part-{i}", f"{app} {i}".encode())


if __name__ == "__main__":
    run_job(main, parser())
