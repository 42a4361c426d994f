"""The SparkSession the jobs share, and named steps for the Spark UI.

Settings here are defaults: anything given to spark-submit (``--conf``, ``spark-conf/``)
wins, because ``SparkSession.builder`` only fills what is not already set.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from py4j.protocol import Py4JError
from pyspark import InheritableThread, SparkConf, SparkContext, StorageLevel
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from pipeline import config
from pipeline.cluster import pyenv
from pipeline.cluster.errors import ClusterError
from pipeline.fs.storage import HadoopFS
from pipeline.runtime import shutdown
from pipeline.runtime.cli import one_line

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Small Arrow batches: each row carries an image, and one Arrow batch is one model call.
#: Films are small files whose cost is the CNN, not the bytes: counting each as 1 MB more
#: than it is packs about one Arrow batch of films into a 32 MB task (32 of the dataset's
#: 8 KB films, 26 of 200 KB originals, 12 of 1.5 MB PACS exports). A job's last wave of tasks
#: leaves a core idle when it holds fewer tasks than cores: with 256 KB (about 125 films a
#: task) 384 films made tasks of 125, 125, 126 and 8, and one core sat idle for most of the
#: second wave (0.88x plain Keras). Tasks of one batch bound that to one model call. Spark's
#: default (4 MB, 8 films a task) paid each task's fixed cost per 8 films (0.65x).
#: Outputs (models, reports, feature caches) hold patient-derived data: whatever the client's
#: Hadoop configuration says, folders are created 750 and files 640 (umask 027).
#: A ResourceManager that does not answer fails the submit in about 30 s instead of YARN's
#: 15 minutes of retries (each attempt is Hadoop IPC's 10 connection tries, 1 s apart; then
#: one retry after 5 s). The application master inherits it: an RM gone for longer than
#: that mid-job ends the job, which a re-run resumes from the feature cache.
#: A NameNode whose host does not answer at all (powered off, packets dropped) fails a job in
#: about 20 s instead of 15 minutes (45 tries of 20 s each): 4 tries of 5 s. A refused
#: connection (daemon down, host up) fails at once either way.
DEFAULTS = {
    "spark.sql.execution.arrow.maxRecordsPerBatch": str(config.DEFAULT_BATCH_SIZE),
    "spark.sql.files.maxPartitionBytes": "32m",
    "spark.sql.files.openCostInBytes": "1m",
    "spark.python.worker.reuse": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.showConsoleProgress": "true",
    "spark.hadoop.fs.permissions.umask-mode": "027",
    "spark.hadoop.yarn.resourcemanager.connect.max-wait.ms": "5000",
    "spark.hadoop.yarn.resourcemanager.connect.retry-interval.ms": "5000",
    "spark.hadoop.ipc.client.connect.timeout": "5000",
    "spark.hadoop.ipc.client.connect.max.retries.on.timeouts": "3",
}


#: Seen once in CI, a YARN start failing a second after the application master came up
#: (the context then stops itself and kills the application): a race inside Spark's or
#: Hadoop's start, not a cause a second start shares. Any other failure is reported at once.
_RACE = "java.util.ConcurrentModificationException"


def get_session(app_name: str, master: str | None = None, verbose: bool = False) -> SparkSession:
    """The job's session; workers run this interpreter unless spark-submit says otherwise.

    A session that cannot start (no ResourceManager, no HDFS for the event log) raises a
    RuntimeError whose message is one line; Spark's own log of it, a Java stack trace, is
    kept off the console unless ``verbose``.
    """
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    conf = dict(DEFAULTS)
    # The JVM first: only there is what spark-submit and spark-defaults.conf set visible
    # (a SparkConf made before it is empty, and the defaults would override the user's).
    SparkContext._ensure_initialized()
    given = SparkConf()
    if (master or given.get("spark.master", "")).startswith("yarn"):
        # The executors' Python libraries travel with the job (pipeline.cluster.pyenv).
        try:
            shipped = pyenv.spark_settings(SparkContext._jvm, given)
        except (ClusterError, Py4JError) as exc:
            raise RuntimeError("could not ship the executors' Python environment: "
                               f"{one_line(exc)}") from exc
        if shipped:
            os.environ["PYSPARK_PYTHON"] = shipped["spark.pyspark.python"]
            for key, value in shipped.items():
                builder = builder.config(key, value)
    if "PYSPARK_PYTHON" not in os.environ:
        # spark-submit turns spark.pyspark.python into this variable; started from plain
        # ``python`` nothing does, and pyspark would start workers with whatever ``python3``
        # is first on PATH (without our libraries).
        python = given.get("spark.pyspark.python", sys.executable)
        os.environ["PYSPARK_PYTHON"] = python
        conf["spark.pyspark.python"] = python
    for key, value in conf.items():
        if not given.contains(key):
            builder = builder.config(key, value)
    where = master or given.get("spark.master", "local[*]")
    for attempt in (1, 2):
        try:
            with _startup_log(verbose):
                spark = builder.getOrCreate()
            break
        except Exception as exc:  # noqa: BLE001 - the JVM's reasons come in many types
            log.debug("Spark's start failed", exc_info=True)
            if attempt == 1 and _RACE in str(exc):
                log.warning("Spark's start on %s lost a race inside the JVM (%s): starting "
                            "it once more", where, _RACE)
                continue
            raise RuntimeError(f"Spark could not start on {where}: {one_line(exc)}") from exc
    spark.sparkContext.setLogLevel("WARN")
    if spark.sparkContext.master.startswith("yarn"):
        ship_package(spark)
    return spark


@contextlib.contextmanager
def _startup_log(verbose: bool) -> Iterator[None]:
    """Silence SparkContext's logger while the context starts, unless ``verbose``."""
    log4j = SparkContext._jvm.org.apache.logging.log4j
    name = "org.apache.spark.SparkContext"
    if not verbose:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.OFF)
    try:
        yield
    finally:
        if not verbose:
            log4j.core.config.Configurator.setLevel(name, None)  # back to its parent's level


def ship_package(spark: SparkSession) -> None:
    """Send this ``pipeline`` package to the executors: the packed environment
    (pipeline.cluster.pyenv) leaves the project out, and a multi-node cluster's own Python has
    the libraries (see README) but not our checkout. ``addPyFile`` puts it first on every
    Python worker's path, so the driver's code wins over any installed copy."""
    archive = pyenv.package_zip(Path(tempfile.mkdtemp(prefix="xray-py-")))
    spark.sparkContext.addPyFile(str(archive))
    # Executors fetch it from the driver lazily: it must outlive the job, not the process.
    atexit.register(shutil.rmtree, archive.parent, True)
    log.info("shipped %s (%d KB) to the executors", archive.name, archive.stat().st_size // 1024)


#: How to let go of what the running job holds (``pinned``, ``scratch``), for ``releasing``.
_held: list[Callable[[], object]] = []


def pinned(frame: DataFrame) -> DataFrame:
    """``frame`` persisted (memory, spilling to disk) until the job that pinned it ends
    (``releasing``): computed once, not again by each Spark job that reads it."""
    frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
    _held.append(frame.unpersist)
    return frame


def scratch(spark: SparkSession, name: str) -> str:
    """A URI ``name`` in a new folder of its own on the default file system, which every
    executor reads (HDFS on a cluster, the local disk under a local master), removed with
    everything in it when the job ends (``releasing``). For copies Spark must read that it
    cannot read where they are; the folder is created 750 like every output. Called outside
    a job, the folder goes when the JVM exits (Hadoop's ``deleteOnExit``)."""
    fs = HadoopFS(spark, ".")  # a relative path: the default file system
    folder = f"{fs.home()}/.xray-scratch/{spark.sparkContext.applicationId}-{uuid.uuid4().hex[:12]}"
    fs.mkdirs(folder)
    fs.delete_on_exit(folder)  # if no job ends first (a notebook's scan_tree): when the JVM does
    _held.append(lambda: fs.delete(folder))
    return f"{folder}/{name}"


@contextlib.contextmanager
def releasing() -> Iterator[None]:
    """Unpersist, on the way out, what was pinned inside, and remove its scratch folders
    (also as a decorator of a job's function). A session outlives its jobs (a notebook,
    ``--watch``, the test suite's one session): without this every job's listing and feature
    vectors stayed cached in the driver's and executors' memory until the session ended."""
    mark = len(_held)
    try:
        yield
    finally:
        while len(_held) > mark:
            _held.pop()()


def in_parallel(*calls: Callable[[], T]) -> list[T]:
    """Run ``calls`` at once and return their results in order; the first error is raised
    once all have ended. Each runs in a thread that carries this one's Spark job group and
    description (``InheritableThread``). Small Spark jobs that do not need each other's
    output then overlap, instead of each waiting out the last one's scheduling and
    commit."""
    results: list = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as err:  # re-raised in the caller's thread below
            errors[i] = err

    threads = [InheritableThread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for err in errors:
        if err is not None:
            raise err
    return results


def await_stream(query: StreamingQuery) -> None:
    """Wait on ``query`` until it ends or the job is asked to stop, then stop it. A stop raises
    ``Stopped`` even when it failed the running batch (its Spark jobs are cancelled); that
    batch is not committed, so a restart scores it again. Any other failure is raised."""
    try:
        while query.isActive and not shutdown.requested():
            with contextlib.suppress(StreamingQueryException):  # raised again below if no stop
                query.awaitTermination(1)
        shutdown.check()
        if query.exception() is not None:
            raise query.exception()
    finally:
        query.stop()


@contextlib.contextmanager
def step(spark: SparkSession, name: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Name the Spark jobs run inside as one pipeline step (Spark UI and History Server) and
    record its wall time in ``timings``."""
    shutdown.check()
    sc = spark.sparkContext
    sc.setJobGroup(name.replace(" ", "-"), name)
    sc.setJobDescription(name)
    started = time.monotonic()
    log.info("step %r started", name)
    try:
        yield
    finally:
        elapsed = time.monotonic() - started
        if timings is not None:
            timings[name] = round(elapsed, 3)
        log.info("step %r took %.1fs", name, elapsed)
        sc.setJobDescription(None)  # type: ignore[arg-type]
    shutdown.check()
