"""Listing a large tree: the old per-entry Py4J walk against the new listings, side by side.

    python bench/scan.py DATA_ROOT [--sizes 5000,20000,100000] [--work DIR]

DATA_ROOT is a chest_xray tree (its train split is used, e.g. /work/shared/data/chest_xray).
For each size, a tree of that many films is made on local disk with hard links to the train
films (no bytes copied), and listed as ``jobs/train.py`` lists it, each way in a fresh
process with its own local Spark session:

- ``old``: the walk with one Py4J call per field of every entry, every film a Python row on
  the driver (the lister before the bulk listers);
- ``walk``: ``scan_tree`` without a manifest: the split and class folders found on the
  driver, the class folders' films listed and judged in Spark (a DataFrame);
- ``manifest``: ``scan_tree`` with ingest's manifest beside the films: Spark reads the
  manifest's table, checked against the tree with a few requests per split.

Each listing includes the patient-grouped validation split (``with_validation``), as
``jobs/train.py`` lists.

All ways for one size run in one process, each after a warm-up listing of a 200-film tree
(class loading and JIT are not the listing's cost). It prints the listing's time, the peak
of the Python allocations during it (tracemalloc), how far the driver process's resident
memory rose above what it held before (VmRSS, sampled every 5 ms) and how far the JVM
heap's peak rose (MemoryPoolMXBean), for every size: flat in the number of films is the goal
for the driver's Python. ``--old-max`` keeps the old way to
the sizes it finishes in reasonable time. Only local disk: on HDFS each way also pays a
NameNode request per folder (the old way's per-entry Py4J calls are the same there).
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from pipeline import config  # noqa: E402
from pipeline.data.manifest import ManifestRow, to_csv  # noqa: E402
from pipeline.data.patients import patient_id  # noqa: E402
from pipeline.runtime.session import get_session, releasing  # noqa: E402

MODES = ("old", "walk", "manifest")


def make_tree(source: Path, root: Path, films: int) -> list[ManifestRow]:
    """``root/train/{NORMAL,PNEUMONIA}`` with ``films`` hard links to ``source``'s train films
    (cycled, each copy with its own name); the manifest rows ingest would write for it."""
    originals = sorted((source / "train").glob("*/*.jp*g"))
    described = {}
    rows = []
    for i in range(films):
        original = originals[i % len(originals)]
        name = f"{original.stem}-c{i // len(originals)}{original.suffix}"
        link = root / "train" / original.parent.name / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            os.link(original, link)
        if original not in described:
            with Image.open(original) as img:
                described[original] = (hashlib.sha256(original.read_bytes()).hexdigest(),
                                       *img.size, len(img.getbands()), img.mode)
        sha, width, height, channels, mode = described[original]
        rel = f"train/{original.parent.name}/{name}"
        rows.append(ManifestRow(rel, "train", config.CLASSES[original.parent.name],
                                patient_id(rel), original.stat().st_size, sha, "", width,
                                height, channels, mode))
    return rows


def _jvm_heap_peak_mb(spark, reset: bool = False) -> float:
    """The JVM's heap pools' peak usage since the last reset (MemoryPoolMXBean), in MB."""
    jvm = spark.sparkContext._jvm
    pools = jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans()
    total = 0
    for i in range(pools.size()):
        pool = pools.get(i)
        if str(pool.getType().toString()) == "Heap memory":
            if reset:
                pool.resetPeakUsage()
            total += pool.getPeakUsage().getUsed()
    return total / 1e6


def _rss_mb() -> float:
    """This process's resident memory (VmRSS), in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _RssPeak(threading.Thread):
    """Samples VmRSS every 5 ms until stopped; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss_mb()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, _rss_mb())


def measure(modes: list[str], root: str, warm: str) -> list[dict]:
    """The listings in this process (``main`` runs one per tree size), each after a warm-up
    on the small tree ``warm`` and a JVM GC: seconds, the Python allocations' peak during the
    listing (tracemalloc) and the JVM heap's peak over what it held before."""
    # The jobs' own session: their Spark settings, and Python workers on this interpreter
    # (the listing judges files in Python tasks, which need the venv's libraries).
    spark = get_session("xray-bench-scan", master="local[1]")
    results = []
    for mode in modes:
        _list(spark, mode, warm)
        gc.collect()
        spark.sparkContext._jvm.System.gc()
        before = _jvm_heap_peak_mb(spark, reset=True)
        rss_before, sampler = _rss_mb(), _RssPeak()
        sampler.start()
        tracemalloc.start()
        started = time.perf_counter()
        films = _list(spark, mode, root)
        seconds = time.perf_counter() - started
        python_peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        sampler.done.set()
        sampler.join()
        results.append({"mode": mode, "films": films, "seconds": round(seconds, 3),
                        "python_peak_mb": round(python_peak, 1),
                        "rss_growth_mb": round(sampler.peak - rss_before, 1),
                        "jvm_heap_growth_mb": round(_jvm_heap_peak_mb(spark) - before, 1)})
    return results


def _list(spark, mode: str, root: str) -> int:
    """List ``root``'s train split the ``mode`` way; how many films were accepted."""
    from pipeline.data import dataset
    from pipeline.data.split import validation_mask
    from pipeline.data.tree import walk

    if mode == "old":
        base = "file:" + str(Path(root).resolve())
        found = walk(base, _per_entry_lister(spark, base), ("train",))
        films = dataset.pd.DataFrame(
            [(f.path, f.split, float(config.CLASSES[f.class_name]), patient_id(f.path), False)
             for f in found.files], columns=[f.name for f in dataset.META_SCHEMA.fields])
        return len(films.assign(is_val=validation_mask(films)))
    manifest = Path(root) / config.MANIFEST_NAME
    hidden = manifest.with_name(".manifest-aside")
    if mode == "walk" and manifest.exists():
        manifest.rename(hidden)
    try:
        with releasing():  # as a job: its cached listing and scratch copy go at the end
            listing = dataset.scan_tree(spark, root, ("train",)).with_validation(
                config.VALIDATION_FRACTION, config.SEED)
            return listing.images.count()
    finally:
        if hidden.exists():
            hidden.rename(manifest)


def _per_entry_lister(spark, base: str):
    """The lister before this change: HadoopFS.list_dir, a Py4J call per field per entry,
    and a symbolic-link check per local entry."""
    from pipeline.data import rules
    from pipeline.data.tree import Entry
    from pipeline.fs.storage import HadoopFS, local_path

    fs = HadoopFS(spark, base)
    real_root = local_path(base).resolve()

    def list_folder(folder: str) -> list:
        entries = []
        for item in fs.list_dir(folder):
            name = item.path.rstrip("/").rpartition("/")[2]
            local = local_path(item.path)
            if os.path.islink(local):
                entries.append(Entry(name, item.path, problem=rules.link_reason(local, real_root)))
            else:
                entries.append(Entry(name, item.path, item.is_dir, item.size))
        return entries
    return list_folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_root", type=Path, nargs="?", help="a chest_xray tree with train/")
    p.add_argument("--sizes", default="5000,20000,100000")
    p.add_argument("--old-max", type=int, default=20000,
                   help="list the old way only trees up to this size (it is the slow one)")
    p.add_argument("--work", type=Path, default=Path("out/bench-scan"))
    p.add_argument("--one", nargs=3, metavar=("MODES", "TREE", "WARM"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0].split(","), *args.one[1:])))
        return
    warm = args.work / "tree-200" / "chest_xray"
    (warm / config.MANIFEST_NAME).unlink(missing_ok=True)
    (warm / config.MANIFEST_NAME).write_bytes(to_csv(make_tree(args.data_root, warm, 200)))
    results = []
    print("load average (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        root = args.work / f"tree-{size}" / "chest_xray"
        started = time.perf_counter()
        (root / config.MANIFEST_NAME).unlink(missing_ok=True)
        rows = make_tree(args.data_root, root, size)
        (root / config.MANIFEST_NAME).write_bytes(to_csv(rows))
        print(f"{size} films: tree made in {time.perf_counter() - started:.1f} s", flush=True)
        print("load average before listing: %.2f %.2f %.2f" % os.getloadavg(), flush=True)
        modes = [m for m in MODES if m != "old" or size <= args.old_max]
        done = subprocess.run([sys.executable, __file__, "--one", ",".join(modes), str(root),
                               str(warm)], capture_output=True, text=True, check=True)
        for result in json.loads(done.stdout.strip().splitlines()[-1]):
            assert result["films"] == size, result
            results.append(result)
            print(json.dumps(result), flush=True)
    print(f"\n{'films':>8} {'mode':>9} {'list s':>8} {'vs old':>7} {'us/film':>8} "
          f"{'py peak MB':>11} {'rss +MB':>8} {'jvm heap +MB':>13}")
    old = {r["films"]: r["seconds"] for r in results if r["mode"] == "old"}
    for r in results:
        ratio = f"{old[r['films']] / max(r['seconds'], 1e-9):.1f}x" if r["films"] in old else "-"
        print(f"{r['films']:>8} {r['mode']:>9} {r['seconds']:>8.2f} {ratio:>7} "
              f"{r['seconds'] / r['films'] * 1e6:>8.1f} {r['python_peak_mb']:>11} "
              f"{r['rss_growth_mb']:>8} "
              f"{r['jvm_heap_growth_mb']:>13}")


if __name__ == "__main__":
    main()
