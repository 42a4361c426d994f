"""Jobs killed part-way: the previous model and report stay whole under their final names, the
next run tidies up, and a Python worker killed mid-task costs a retry, not the job.

Local Spark in a fresh ``spark-submit`` per job (SIGKILL to its whole process group, as when
a node dies). The tests share one tree, one fault-free baseline and one output folder that
they damage in turn, in the order written.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pyspark.ml import PipelineModel

from pipeline import config
from pipeline.featurizer.evaluation import EvalConfig, evaluate
from pipeline.fs.storage import prepare_output
from pipeline.featurizer.summary import TrainConfig
from pipeline.featurizer.training import train
from tests.reliability.runner import LOCAL_ENV, Running, same_numbers, start
from tests.trees import valid_tree

pytestmark = [pytest.mark.slow, pytest.mark.fault]


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory) -> Path:
    """A tree, a fault-free model and report (with a feature cache), and a folder whose model
    and report start as copies of them."""
    base = tmp_path_factory.mktemp("kills")
    tree = valid_tree(base / "chest_xray", per_class=6, splits=("train", "test"))
    train(spark, TrainConfig(data=str(tree), model_out=str(base / "baseline/model"),
                             weights="none", features_cache=str(base / "cache")))
    evaluate(spark, EvalConfig(data=str(tree), model=str(base / "baseline/model"),
                               out=str(base / "baseline/report")))
    shutil.copytree(base / "baseline", base / "victim")
    return base


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file below ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(final: Path) -> list[str]:
    return sorted(p.name for p in final.parent.iterdir() if p.name.startswith(f".{final.name}."))


def _train_args(runs: Path, *extra: str) -> list[str]:
    return ["--data", str(runs / "chest_xray"), "--model-out", str(runs / "victim/model"),
            "--weights", "none", *extra]


def _killed(job: Running, *, after: str, then: Callable[[], None] = lambda: time.sleep(2)) -> None:
    job.wait_for(after)
    then()
    job.kill()


def test_train_killed_while_featurizing_keeps_the_previous_model(runs):
    before = snapshot(runs / "victim/model")
    _killed(start("train", *_train_args(runs)), after="step 'featurize train' started")
    assert snapshot(runs / "victim/model") == before


def test_train_killed_while_saving_keeps_the_previous_model(runs):
    """The cached features make it reach the save quickly; the kill lands as soon as the new
    model's temporary folder appears."""
    final = runs / "victim/model"
    before = snapshot(final)

    job = start("train", *_train_args(runs, "--features-cache", str(runs / "cache")))
    _killed(job, after="step 'save model' started", then=lambda: _until_a_temporary_model(final))
    assert snapshot(final) == before
    assert [n for n in leftovers(final) if n.startswith(".model.tmp-")], "no half-written model"


def _until_a_temporary_model(final: Path) -> None:
    deadline = time.monotonic() + 120
    while not any(name.startswith(f".{final.name}.tmp-") for name in leftovers(final)):
        assert time.monotonic() < deadline, "the save never started writing"
        time.sleep(0.02)


def test_evaluate_killed_keeps_the_previous_report(runs):
    final = runs / "victim/report"
    before = snapshot(final)
    _killed(start("evaluate", "--data", str(runs / "chest_xray"), "--model",
                  str(runs / "baseline/model"), "--out", str(final)),
            after="step 'featurize test' started")
    assert snapshot(final) == before


@pytest.mark.parametrize("step", ["featurize train", "save model"])
def test_train_stopped_by_sigterm_tidies_up_and_says_so(runs, step, record_property):
    """SIGTERM (what schedulers and ``kill`` send first) to a driver started as plain
    ``python``: it removes its half-written model itself and exits 143 with one line."""
    final = runs / "victim/model"
    before = snapshot(final)
    # The cached features take it to the save at once; without them it featurizes first.
    cached = ("--features-cache", str(runs / "cache")) if step == "save model" else ()
    job = Running([sys.executable, str(config.REPO_ROOT / "jobs/train.py"), "--master",
                   "local[2]", *_train_args(runs, *cached)], LOCAL_ENV)
    job.wait_for(f"step '{step}' started")
    if step == "save model":
        _until_a_temporary_model(final)
    else:
        time.sleep(2)
    os.kill(job.process.pid, signal.SIGTERM)
    signalled = time.monotonic()
    assert job.wait(120) == 143, job.output[-3000:]
    record_property("exit_after_signal_s", round(time.monotonic() - signalled, 1))
    errors = [line for line in job.output.splitlines() if line.startswith("error:")]
    assert errors == ["error: stopped by SIGTERM; nothing half-written is left under a final name"], \
        job.output[-3000:]
    assert snapshot(final) == before
    assert leftovers(final) == [], job.output[-4000:]  # its own, and the SIGKILLed runs'


def _python_workers(root_pid: int) -> list[int]:
    """Forked Python workers (children of a pyspark.daemon) below ``root_pid``."""
    children: dict[int, list[int]] = {}
    cmdlines: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdlines[int(entry.name)] = (entry / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    below, todo = [], [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            below.append(child)
            todo.append(child)
    # The workers are forks of the daemon: the same command line, one level down.
    python = {pid for pid in below if b"pyspark.daemon" in cmdlines.get(pid, b"")}
    daemons = {pid for pid in python if not any(pid in children.get(p, []) for p in python)}
    return [pid for d in daemons for pid in children.get(d, [])]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _kill_a_busy_worker(job: Running, timeout: float = 240) -> int:
    """SIGKILL a Python worker that is using CPU, so it is inside a task (an idle pooled
    worker uses none); on a loaded machine even a busy one may get a few ticks a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = {}
        for pid in _python_workers(job.process.pid):
            with contextlib.suppress(OSError):
                before[pid] = _cpu_ticks(pid)
        time.sleep(1)
        for pid, ticks in before.items():
            with contextlib.suppress(OSError):
                if _cpu_ticks(pid) > ticks:
                    os.kill(pid, signal.SIGKILL)
                    return pid
    raise AssertionError(f"no busy Python worker found:\n{job.output[-3000:]}")


def test_worker_killed_mid_featurization_is_retried_with_the_same_result(spark, runs,
                                                                         record_property):
    """local[2,4]: up to 4 attempts per task, as spark.task.maxFailures gives on YARN. Also the
    next run after the kills above: it tidies their leftovers."""
    final = runs / "victim/model"
    job = start("train", *_train_args(runs), master="local[2,4]")
    job.wait_for("step 'featurize train' started")
    _kill_a_busy_worker(job)
    assert job.wait() == 0, job.output[-3000:]
    assert "Lost task" in job.output  # the kill failed a task, which was retried
    record_property("lost_tasks", job.output.count("Lost task"))

    got = json.loads((final / "training_summary.json").read_text())
    want = json.loads((runs / "baseline/model/training_summary.json").read_text())
    assert (got["images"], got["split"]) == (want["images"], want["split"])
    for key in ("class_weights", "threshold", "validation_metrics"):
        assert same_numbers(got[key], want[key]), (key, got[key], want[key])
    coefficients = [PipelineModel.load(str(m)).stages[1].coefficients.toArray()
                    for m in (final, runs / "baseline/model")]
    assert np.allclose(*coefficients, rtol=1e-9, atol=1e-12)
    assert leftovers(final) == []


def test_an_interrupted_rename_is_undone_by_the_next_run(spark, tmp_path):
    """Killed between atomic_output's two renames: no final output, the previous one under an
    ``.old-`` name and the new one under ``.tmp-``. The next run puts the previous one back."""
    final = tmp_path / "report"
    (tmp_path / ".report.old-1a2b3c4d").mkdir()
    (tmp_path / ".report.old-1a2b3c4d/metrics.json").write_text("previous")
    (tmp_path / ".report.tmp-5e6f7a8b").mkdir()
    (tmp_path / ".report.tmp-5e6f7a8b/metrics.json").write_text("new, never confirmed")
    with prepare_output(spark, str(final)):  # holds the output's lease until the block ends
        assert (final / "metrics.json").read_text() == "previous"
    assert leftovers(final) == []
