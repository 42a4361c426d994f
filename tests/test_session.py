"""The session a job gets: started as ``python jobs/train.py`` (not through spark-submit), and
when its start fails."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.runtime.session import get_session, in_parallel, step
from tests.reliability.runner import LOCAL_ENV

PROGRAM = """
from pipeline.runtime.session import get_session, in_parallel, step
spark = get_session("python-worker-check", "local[1]")
print("workers ran", spark.sparkContext.parallelize([1, 2], 1).map(lambda x: x + 1).sum())
"""


def test_plain_python_start_runs_workers_on_this_interpreter(tmp_path):
    """pyspark starts workers with ``$PYSPARK_PYTHON`` or else the first ``python3`` on PATH;
    here that one is broken, so the job only works if the session chose this interpreter."""
    decoy = tmp_path / "python3"
    decoy.write_text("#!/bin/sh\necho 'decoy python3 started' >&2\nexit 3\n")
    decoy.chmod(0o755)
    env = {k: v for k, v in LOCAL_ENV.items() if not k.startswith("PYSPARK_")}
    env["PATH"] = f"{tmp_path}:{env['PATH']}"
    done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "workers ran 5" in done.stdout


def _failing_starts(monkeypatch, failures: int, message: str) -> list[int]:
    """The builder's start raises ``message`` ``failures`` times, then starts as usual."""
    from pyspark.sql import SparkSession

    calls: list[int] = []
    real = SparkSession.Builder.getOrCreate

    def start(builder):
        calls.append(1)
        if len(calls) <= failures:
            raise RuntimeError(message)
        return real(builder)

    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", start)
    return calls


RACE = "An error occurred while calling JavaSparkContext.\n: java.util.ConcurrentModificationException"


def test_a_start_that_lost_a_race_starts_once_more(spark, monkeypatch):
    calls = _failing_starts(monkeypatch, 1, RACE)
    assert get_session("xray-tests", "local[2]") is spark and len(calls) == 2


def test_a_second_race_or_any_other_failure_is_one_line(spark, monkeypatch):
    for failures, message in ((2, RACE), (1, "Connection refused: localhost/127.0.0.1:8032")):
        calls = _failing_starts(monkeypatch, failures, message)
        with pytest.raises(RuntimeError) as raised:
            get_session("xray-tests", "local[2]")
        assert str(raised.value).startswith("Spark could not start on local[2]: ")
        assert "\n" not in str(raised.value) and len(calls) == min(failures, 2)


def test_in_parallel_keeps_order_and_the_step_and_raises_the_first_error(spark):
    """Each call's Spark jobs carry the caller's step name (the Spark UI groups them), the
    results come back in the calls' order, and a failed call's error reaches the caller."""
    sc = spark.sparkContext

    def job(n: int):
        return lambda: (sc.parallelize(range(n), 1).count(), sc.getLocalProperty("spark.job.description"))

    with step(spark, "parallel check"):
        assert in_parallel(job(3), job(5)) == [(3, "parallel check"), (5, "parallel check")]

    def boom():
        raise ValueError("second call failed")

    with pytest.raises(ValueError, match="second call failed"):
        in_parallel(job(1), boom)


STREAM_STOPPED_MID_BATCH = """
import os, signal, sys, time
from pipeline.runtime import shutdown
from pipeline.runtime.session import await_stream, get_session, step

spark = get_session("stream-stop-check", "local[1]")
inbox = sys.argv[1]
open(os.path.join(inbox, "a.txt"), "w").write("film")

def write_batch(frame, batch_id):
    with step(spark, f"batch {batch_id}"):
        frame.count()
        os.kill(os.getpid(), signal.SIGTERM)  # the stop lands while the batch runs
        while not shutdown.requested():
            time.sleep(0.05)

with shutdown.handling_sigterm():
    query = spark.readStream.format("text").load(inbox).writeStream \\
        .foreachBatch(write_batch).trigger(processingTime="1 second").start()
    try:
        await_stream(query)
    except shutdown.Stopped as stop:
        print("stopped by", stop, "; the gateway still answers:", spark.range(3).count())
"""


def test_a_stop_during_a_streaming_batch_ends_the_stream_and_keeps_the_gateway(tmp_path):
    """SIGTERM while a foreachBatch writer runs its step: the step must not raise Stopped in
    Py4J's callback thread (a BaseException there killed the thread unanswered, and --watch
    hung on its stop), and the handler must not garble the main thread's blocked Py4J call.
    The stream ends with Stopped, and the session still runs jobs after."""
    done = subprocess.run([sys.executable, "-c", STREAM_STOPPED_MID_BATCH, str(tmp_path)],
                          env=LOCAL_ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stopped by SIGTERM ; the gateway still answers: 3" in done.stdout
