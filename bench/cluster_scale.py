"""Featurize the same films on the Docker cluster with one NodeManager, then with two.

    XRAY_CLUSTER=docker make cluster-up
    .venv/bin/python jobs/ingest.py /path/to/chest_xray hdfs:///bench/chest_xray
    .venv/bin/python bench/cluster_scale.py hdfs:///bench/chest_xray [--rounds 1]

Each round runs `jobs/train.py --weights none` on YARN (two executors of one core, as the
cluster's spark-defaults.conf asks) twice: with nodemanager2 stopped, so both executors share
nodemanager1, and with both NodeManagers, and prints the featurize step's time and images/s
side by side, the ratio, and which nodes the executors ran on.

Read the ratio honestly: on our 2-core machine both containers share the same two cores, so
two NodeManagers distribute the work (and the failure domain) but cannot make it faster; a
ratio near 1.0 is the expected result there. On real separate machines the same job scales
with the cores the second node adds.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

from hdfs import InsecureClient

from pipeline import config
from pipeline.cluster import docker, health

REPO = config.REPO_ROOT


def _spark_env() -> dict[str, str]:
    import os
    out = subprocess.run([sys.executable, "-m", "pipeline.cluster", "env"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        if key != "PYSPARK_PYTHON":
            env[key] = shlex.split(value)[0]
    return env


def _nodemanagers(wanted: int) -> None:
    """Stop nodemanager2 (wanted 1) or start it (wanted 2); wait until YARN agrees."""
    docker.compose("stop" if wanted == 1 else "start", "nodemanager2")
    deadline = time.monotonic() + 180
    while True:
        active = health.get_json(health.url("resourcemanager_http", "/ws/v1/cluster/metrics")
                                 )["clusterMetrics"]["activeNodes"]
        if active == wanted:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"YARN reports {active} NodeManagers, wanted {wanted}")
        time.sleep(2)


def _featurize(data: str, model: str, env: dict[str, str]) -> dict:
    done = subprocess.run([str(Path(sys.executable).parent / "spark-submit"), "--master", "yarn",
                           "jobs/train.py", "--data", data, "--model-out", model,
                           "--weights", "none"], cwd=REPO, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    client = InsecureClient(config.WEBHDFS_URL, user=config.HDFS_USER)
    path = model.removeprefix("hdfs://")
    with client.read(f"{path}/training_summary.json") as reader:
        summary = json.load(reader)
    app = summary["spark"]["app_id"]
    executors = health.get_json(health.url("history_http", f"/api/v1/applications/{app}/"
                                           "allexecutors"), timeout=10)
    hosts = sorted({e["hostPort"].rsplit(":", 1)[0] for e in executors if e["id"] != "driver"})
    seconds = summary["timings_s"]["featurize train"]
    client.delete(path, recursive=True)
    return {"seconds": seconds, "images": summary["images"]["featurized"], "hosts": hosts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="an ingested chest_xray tree on HDFS")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    env = _spark_env()
    results: dict[int, list[dict]] = {1: [], 2: []}
    try:
        for _ in range(args.rounds):
            for nodes in (1, 2):
                _nodemanagers(nodes)
                model = f"hdfs:///tmp/bench-scale-{uuid.uuid4().hex[:6]}"
                results[nodes].append(_featurize(args.data, model, env))
    finally:
        _nodemanagers(2)
    best = {n: min(r, key=lambda x: x["seconds"]) for n, r in results.items()}
    for nodes, run in best.items():
        print(f"{nodes} NodeManager(s): featurize {run['images']} films in {run['seconds']:.1f} s "
              f"({run['images'] / run['seconds']:.2f} images/s), executors on {run['hosts']}")
    print(f"2 NodeManagers / 1: {best[1]['seconds'] / best[2]['seconds']:.2f}x the throughput "
          f"(best of {args.rounds} round(s))")


if __name__ == "__main__":
    main()
