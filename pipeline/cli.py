"""What every job's entry point shares: logging, and errors as one clear line.

A user who passes a wrong URI should read one sentence naming it, not a JVM stack trace;
``--verbose`` brings the trace back for whoever debugs.
"""
from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import traceback
from typing import Callable

from pipeline import shutdown

log = logging.getLogger("pipeline")


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--master", default=None,
                        help="Spark master (default: spark-submit's, else local[*])")
    parser.add_argument("--verbose", action="store_true", help="show stack traces on errors")
    return parser


#: The last line of a Python traceback: the exception raised (in a Spark Python worker, the
#: one that failed the task).
_RAISED = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?(\w*(?:Error|Exception)): .+")


def one_line(exc: BaseException) -> str:
    """The most useful single line of an error, from Python, Py4J or Spark.

    A JVM exception gives its class and message (a NameNode's RemoteException the class it
    wraps: SafeModeException, AccessControlException); a task that failed in a Python worker
    gives the exception the worker raised, not Spark's "An exception was thrown" preamble.
    """
    java = getattr(exc, "java_exception", None)
    if java is not None:
        name = str(java.getClass().getName())
        if name.endswith(".RemoteException"):
            name = str(java.getClassName())
        text = f"{name}: {java.getMessage() or ''}".rstrip(": ")
    else:
        text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    raised = [m for ln in lines if (m := _RAISED.match(ln))]
    if "Traceback (most recent call last)" in text and raised:
        return raised[-1].group(0)
    return lines[0].split("; For more details see", 1)[0] if lines else type(exc).__name__


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "matplotlib", "PIL", "absl", "h5py", "hdfs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_job(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser,
            argv: list[str] | None = None) -> None:
    """Parse, run ``main``, and exit 0, or 2 with one ``error:`` line on a failure, or 143
    with one line when SIGTERM stopped it (see ``pipeline.shutdown``)."""
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        with shutdown.handling_sigterm():
            main(args)
    except (shutdown.Stopped, Exception) as exc:  # noqa: BLE001 - every failure, one line
        if (signame := shutdown.requested()) is not None:
            # Whatever the cancelled Spark job raised, the cause was the signal.
            print(f"error: stopped by {signame}; outputs under their final names are unchanged",
                  file=sys.stderr)
            sys.exit(128 + signal.Signals[signame].value)
        if args.verbose:
            traceback.print_exc()
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)
