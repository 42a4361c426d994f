"""Wall time of jobs/ingest.py against ``hdfs dfs -put`` of the same tree, and of a re-run.

    python bench/ingest.py TREE [--hdfs-dir /bench/ingest] [--conf-dir DIR] [--jars DIR]

``-put`` runs as Hadoop's FsShell from pyspark's shaded Hadoop client jars with the cluster's
configuration directory first on the class path (what the ``hdfs`` script would do). Both tools
start as fresh processes (JVM or Python start-up included: what a user waits for), write into
empty directories of the same cluster, and read a tree already in the page cache.
Goals: first run <= 1.25 x -put (while validating and checksumming), re-run <= 0.10 x first.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pyspark

from pipeline.cluster.conf import hadoop_conf_dir
from pipeline.config import HDFS_USER, REPO_ROOT, WEBHDFS_URL
from pipeline.fs.webhdfs import connect, parse_destination

FIRST_RUN_GOAL = 1.25
RERUN_GOAL = 0.10


def parse_args() -> argparse.Namespace:
    """Command line; the two paths default to environment variables, then to this project."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path, help="local chest_xray folder")
    parser.add_argument("--hdfs-dir", default="/bench/ingest",
                        help="HDFS scratch folder, emptied first (default %(default)s)")
    parser.add_argument("--conf-dir", type=Path,
                        default=Path(os.environ.get("HADOOP_CONF_DIR", hadoop_conf_dir())),
                        help="Hadoop configuration folder (default $HADOOP_CONF_DIR, else the "
                             "one `make cluster-up` renders: %(default)s)")
    parser.add_argument("--jars", type=Path,
                        default=Path(os.environ.get("HADOOP_CLIENT_JARS",
                                                    Path(pyspark.__file__).parent / "jars")),
                        help="folder with hadoop-client-api/-runtime jars (default: pyspark's)")
    parser.add_argument("--threads", type=int, help="ingest --threads (default: config)")
    parser.add_argument("--put-threads", type=int, default=1,
                        help="-put -t N (default 1: plain `hdfs dfs -put`)")
    return parser.parse_args()


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds ``cmd`` took; its output is shown only when it fails."""
    started = time.monotonic()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"bench: {cmd[0]} ... failed ({result.returncode}):\n{result.stderr[-3000:]}")
    print(f"  {' '.join(cmd[-2:]) if cmd[0] == 'java' else result.stdout.strip()}", flush=True)
    return seconds


def warm_page_cache(tree: Path) -> int:
    """Read every file once so neither tool pays for the disk; returns the file count."""
    count = 0
    for path in tree.rglob("*"):
        if path.is_file():
            path.read_bytes()
            count += 1
    return count


def main() -> None:
    """Empty the scratch folder, then time -put, our first run and our re-run."""
    args = parse_args()
    if not (args.conf_dir / "core-site.xml").is_file():
        sys.exit(f"bench: no core-site.xml in {args.conf_dir} (set --conf-dir/HADOOP_CONF_DIR)")
    dest = parse_destination(f"hdfs://{args.hdfs_dir}", WEBHDFS_URL)
    client = connect(dest)
    client.delete(dest.path, recursive=True)
    client.makedirs(dest.path)
    files = warm_page_cache(args.tree)
    print(f"bench: {files} files, {sum(p.stat().st_size for p in args.tree.rglob('*') if p.is_file()) / 1e6:.1f} MB "
          f"from {args.tree}; {os.cpu_count()} cores", flush=True)

    env = {**os.environ, "HADOOP_USER_NAME": HDFS_USER, "PYTHONPATH": str(REPO_ROOT)}
    put = ["java", "-Xmx512m", "-cp", f"{args.conf_dir}:{args.jars}/*",
           "org.apache.hadoop.fs.FsShell", "-put", "-t", str(args.put_threads),
           str(args.tree), f"{dest.path}/put"]
    ours = [sys.executable, str(REPO_ROOT / "jobs" / "ingest.py"), str(args.tree),
            f"hdfs://{dest.path}/ours", "--no-progress"]
    if args.threads:
        ours += ["--threads", str(args.threads)]

    # Ours first: on a slow cluster -put can take an hour, and ours is what we tune.
    first_s = timed(ours, env)
    rerun_s = timed(ours, env)
    put_s = timed(put, env)
    first_ratio, rerun_ratio = first_s / put_s, rerun_s / first_s
    print(f"bench: -put -t {args.put_threads} {put_s:.1f} s | ingest first run {first_s:.1f} s | "
          f"re-run {rerun_s:.1f} s")
    print(f"bench: first/-put = {first_ratio:.2f} (goal <= {FIRST_RUN_GOAL}, "
          f"{'met' if first_ratio <= FIRST_RUN_GOAL else 'MISSED'}); "
          f"re-run/first = {rerun_ratio:.3f} (goal <= {RERUN_GOAL}, "
          f"{'met' if rerun_ratio <= RERUN_GOAL else 'MISSED'})")


if __name__ == "__main__":
    main()
