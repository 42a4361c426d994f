"""Running a Python function over one partition as a barrier stage, on a GPU if there is one.

Barrier mode gives the training all-or-nothing scheduling (no speculative copy, no half run
retried beside a live one). The GPU comes from Spark's resource scheduling: a cluster offers
GPUs with ``spark.executor.resource.gpu.amount`` and the discovery script
``spark-conf/gpu-discovery.sh``; the training stage alone then asks for one per task with a
stage-level resource profile, so decoding and scoring stages keep running on every core.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator

from pyspark import RDD, SparkConf
from pyspark.resource import (ExecutorResourceRequests, ResourceProfile, ResourceProfileBuilder,
                              TaskResourceRequests)

from pipeline import config

log = logging.getLogger(__name__)

GPU_MODES = ("auto", "on", "off")


def wants_gpu(conf: SparkConf, mode: str) -> bool:
    """``auto``: a GPU if the cluster offers executors one; ``on``: required; ``off``: CPU."""
    if mode not in GPU_MODES:
        raise ValueError(f"gpu mode must be one of {GPU_MODES}, got {mode!r}")
    offered = float(conf.get("spark.executor.resource.gpu.amount", "0") or 0) > 0
    if mode == "on" and not offered:
        raise ValueError("--gpu on, but this Spark cluster offers no GPU: set "
                         "spark.executor.resource.gpu.amount=1 and "
                         f"spark.executor.resource.gpu.discoveryScript={config.GPU_DISCOVERY_SCRIPT}")
    return offered and mode != "off"


def gpu_profile(conf: SparkConf) -> ResourceProfile:
    """One GPU and the executor's cores for the task. With dynamic allocation Spark starts
    executors for the profile, so it names the executor's GPU and discovery script too."""
    cores = int(conf.get("spark.executor.cores", "1"))
    builder = ResourceProfileBuilder().require(TaskResourceRequests().cpus(cores).resource("gpu", 1.0))
    if conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true":
        script = conf.get("spark.executor.resource.gpu.discoveryScript", config.GPU_DISCOVERY_SCRIPT)
        builder.require(ExecutorResourceRequests().cores(cores).resource("gpu", 1, script))
    return builder.build


def run_single_task(rows: RDD, fn: Callable[[Iterable], Iterator[Any]], gpu_mode: str) -> list[Any]:
    """Everything ``fn`` yields over the one partition of ``rows``, as a barrier stage's task."""
    if rows.getNumPartitions() != 1:
        raise ValueError(f"a single-task stage needs one partition, got {rows.getNumPartitions()}")
    sc = rows.context
    conf = sc.getConf()
    rdd = rows.barrier().mapPartitions(fn)
    if wants_gpu(conf, gpu_mode):
        if sc.master.startswith("local"):
            log.warning("local master: Spark schedules no GPUs here; the task uses what its "
                        "Keras backend finds")
        else:
            rdd = rdd.withResources(gpu_profile(conf))
            log.info("training task asks for 1 GPU (stage-level resource profile)")
    return rdd.collect()
