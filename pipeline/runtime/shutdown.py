"""Stopping a job on SIGTERM without corrupting its outputs or its link to the JVM.

SIGTERM is what schedulers, systemd and ``kill`` send first. Python's default is to die on
the spot, leaving a half-written temporary output for the next run to tidy; raising from the
handler instead would interrupt a Py4J call half-way through its reply and garble every call
after it (the cleanup's included). So the handler only records the request and cancels the
running Spark jobs from another thread (Py4J gives each thread its own connection; pyspark's
Ctrl-C handler, which cancels on the interrupted thread's, can garble it): the blocked call
then fails in the normal way, and ``check`` raises at the next step boundary for steps that
run no Spark job. Only the main thread raises: other threads (a stream's ``foreachBatch``
writer, which Py4J runs on its callback thread) finish or fail as they would, and leave the
stop to the main thread. A process with no Spark session (ingest) stops at once. What a job holds for its whole run
(an output's lease) is let go by ``at_end`` however the job ends.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

_requested: list[str] = []
_at_end: list[Callable[[], None]] = []


class Stopped(BaseException):
    """The job was asked to stop. A BaseException, so that no ``except Exception`` takes it
    for an ordinary failure; ``atomic_output`` still removes its temporary output."""


def _on_signal(signum: int, _frame) -> None:
    name = signal.Signals(signum).name
    _requested.append(name)
    from pyspark import SparkContext  # only jobs that started one have a JVM to spare

    sc = SparkContext._active_spark_context
    if sc is None:  # no Py4J call to garble (ingest): stop here
        raise Stopped(name)
    log.warning("%s received: cancelling the running Spark jobs", name)
    # From a thread of its own: this handler runs in the main thread, perhaps half-way
    # through a Py4J call whose reply is still to come on the thread's one connection.
    threading.Thread(target=sc.cancelAllJobs, name="cancel-on-signal", daemon=True).start()


@contextlib.contextmanager
def handling_sigterm() -> Iterator[None]:
    """Handle SIGTERM as above inside (the main thread's job); the previous handler after."""
    _requested.clear()
    previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _run_at_end()


def at_end(callback: Callable[[], None]) -> None:
    """Call ``callback`` when the job ends, done, failed or stopped (as ``handling_sigterm``
    exits); outside a job (a notebook, a test calling the library), at interpreter exit,
    before whatever was registered earlier (pyspark's end of the JVM it started)."""
    _at_end.append(callback)
    atexit.unregister(_run_at_end)
    atexit.register(_run_at_end)


def _run_at_end() -> None:
    while _at_end:
        callback = _at_end.pop()
        try:
            callback()
        except Exception:  # noqa: BLE001 - one failed clean-up must not skip the others
            log.warning("clean-up %r failed at the end of the job", callback, exc_info=True)


def requested() -> str | None:
    """The signal that asked the job to stop, if one did."""
    return _requested[0] if _requested else None


def check() -> None:
    """Raise Stopped if a stop was requested and this is the main thread. Elsewhere it would
    do harm: Py4J's callback thread answers the JVM only for an ``Exception``, so a
    BaseException there kills it unanswered, and a stream's stop then waits on it for ever."""
    if _requested and threading.current_thread() is threading.main_thread():
        raise Stopped(_requested[0])

