"""The one command-line contract of every entry point (the jobs, ingest, the cluster command,
the demo's helpers): one parser base, one logging format, one error line, one set of exit codes.

- 0: done; ``EXIT_UNHEALTHY`` (1): a status check ran and found a problem (``cluster status``);
- 2 (``EXIT_ERROR``): bad input or arguments, or a service that is unreachable or refused;
  stderr's last line is ``error: <one sentence naming it>``, with no trace unless ``--verbose``;
- 128 + the signal (143 for SIGTERM): stopped on request (``pipeline.runtime.shutdown``).

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

from pipeline.runtime import precision, shutdown

log = logging.getLogger("pipeline")


EXIT_UNHEALTHY = 1
EXIT_ERROR = 2


def base_parser(description: str, spark: bool = True,
                prog: str | None = None) -> argparse.ArgumentParser:
    """The parser every entry point starts from; ``spark``: it runs a Spark application."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if spark:
        parser.add_argument("--master", default=None,
                            help="Spark master (default: spark-submit's, else local[*])")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show stack traces on errors, and debug logging")
    return parser


def add_precision(parser: argparse.ArgumentParser, default: str | None, note: str = "",
                  choices: tuple[str, ...] = precision.INFERENCE_CHOICES) -> None:
    """``--precision``, the same flag on every job that runs a network (runtime.precision)."""
    parser.add_argument("--precision", default=default, choices=choices,
                        help="compute precision: bfloat16 keeps float32 weights and runs about "
                             "1.6x faster where the CPU has AVX512_BF16/AMX or the GPU supports "
                             f"it; auto chooses on this machine {note}".rstrip())


def add_cv(parser: argparse.ArgumentParser, model: str) -> None:
    """``--cv K``, the same flag on every job that trains (pipeline.report.crossval)."""
    parser.add_argument("--cv", type=int, default=0, metavar="K",
                        help="first run K-fold patient-grouped, stratified cross-validation of "
                             "the whole recipe on the train split (mean ± sd per figure, pooled "
                             f"out-of-fold ROC); the final {model} is trained as without it")


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
    """Every entry point's log format, on stderr (stdout is for results)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "matplotlib", "PIL", "absl", "h5py", "hdfs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_job(main: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser,
            argv: list[str] | None = None) -> None:
    """Parse, run ``main``, and return (exit 0), or exit with the status ``main`` returned, or
    2 with one ``error:`` line on a failure, or 128 + the signal with one line when SIGTERM
    stopped it (see ``pipeline.runtime.shutdown``)."""
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        with shutdown.handling_sigterm():
            status = main(args)
    except (shutdown.Stopped, Exception) as exc:  # noqa: BLE001 - every failure, one line
        if (signame := shutdown.requested()) is not None:
            # Whatever the cancelled Spark job raised, the cause was the signal.
            print(f"error: stopped by {signame}; nothing half-written is left under a final name",
                  file=sys.stderr)
            sys.exit(128 + signal.Signals[signame].value)
        if args.verbose:
            traceback.print_exc()
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    if status:
        sys.exit(status)
