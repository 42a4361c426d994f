"""Screening throughput and driver memory, side by side in one run.

  python bench/predict.py DATA_DIR [-n 192,1024] [--sizes 1000,4000] [--model InceptionV3]

1. Throughput on the same N films (copies in one folder), workers warm, for each N given:
   evaluate's featurize step (DeepImageFeaturizer on binaryFile, vectors discarded) against
   the whole predict job (scores, flags, maps, the tables and the worklist), once without
   heatmaps and once with overlays for the flagged films. Goal: predict >= 0.9x the featurize
   step. With two or more N it also prints each method's time per extra film (between the
   smallest and largest N) and its fixed cost a run: the tables and worklist cost predict a
   fixed second or so of small Spark jobs, which weighs on a small run and not on a large one.
2. Driver memory: predict on folders of each of --sizes films (hard links of the same films),
   each in its own driver process; prints the peak RSS of the driver's Python and JVM, and
   the JVM heap still in use after a full GC at the end (peak RSS also follows how far the
   collector let the heap grow, which depends on the allocation rate, not on what is kept).
   Goal: flat in the number of films (the driver never collects every row).
The model is a PipelineModel fitted here on featurizer vectors of a few films (random-init
weights: this measures the plumbing, not a clinical result).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from pyspark.ml import PipelineModel  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from pipeline.featurizer import DeepImageFeaturizer  # noqa: E402
from pipeline.featurizer.classifier import make_classifier, with_class_weights  # noqa: E402
from pipeline.predict.job import PredictConfig, predict  # noqa: E402
from pipeline.runtime.session import get_session  # noqa: E402

SUFFIXES = (".jpeg", ".jpg", ".png")


def _films(data: Path, n: int) -> list[Path]:
    found = sorted(f for f in data.rglob("*") if f.suffix.lower() in SUFFIXES)
    return found[:: max(len(found) // n, 1)][:n]


def _folder(films: list[Path], folder: Path, n: int, link: bool = False) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        src = films[i % len(films)]
        dst = folder / f"{i:06d}{src.suffix.lower()}"
        os.link(src, dst) if link else shutil.copyfile(src, dst)
    return folder


def _fit_model(spark, films: list[Path], out: Path, model_name: str) -> str:
    """A featurizer + LR PipelineModel, labels from the films' class folders."""
    featurizer = DeepImageFeaturizer(modelName=model_name, weights=None)
    sample = films[:: max(len(films) // 64, 1)][:64]  # both classes: films are in path order
    frame = (spark.read.format("binaryFile").load([f"file://{f}" for f in sample])
             .withColumnRenamed("content", "image")
             .withColumn("label", F.col("path").contains("/PNEUMONIA/").cast("double")))
    feats, _ = with_class_weights(featurizer.transform(frame))
    classifier = make_classifier().fit(feats)
    PipelineModel(stages=[featurizer, classifier]).write().overwrite().save(str(out))
    return str(out)


def _featurize(spark, folder: Path, model_uri: str) -> float:
    featurizer = PipelineModel.load(model_uri).stages[0]
    started = time.perf_counter()
    frame = spark.read.format("binaryFile").load(f"file://{folder}").withColumnRenamed("content", "image")
    featurizer.transform(frame).select("features").write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def _predict(spark, folder: Path, model_uri: str, out: Path, heatmaps: str) -> float:
    started = time.perf_counter()
    predict(spark, PredictConfig(model=model_uri, input=str(folder), out=str(out), heatmaps=heatmaps))
    return time.perf_counter() - started


def _vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def memory_run(folder: Path, model_uri: str, out: Path) -> None:
    """Child process: one predict run; prints the driver's peak RSS as JSON."""
    spark = get_session("bench-predict-memory", "local[2]")
    _predict(spark, folder, model_uri, out, "none")
    jvm = spark.sparkContext._jvm
    jvm_pid = int(jvm.ProcessHandle.current().pid())
    jvm.System.gc()  # what the driver still holds, beside how far its heap grew (peak RSS)
    runtime = jvm.Runtime.getRuntime()
    print(json.dumps({"python_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "jvm_mb": _vm_hwm_kb(jvm_pid) / 1024,
                      "jvm_live_mb": (runtime.totalMemory() - runtime.freeMemory()) / 2 ** 20}))
    spark.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="folder searched recursively for .jpeg/.jpg/.png")
    p.add_argument("-n", default="192,1024", help="film counts for the throughput comparison")
    p.add_argument("--sizes", default="1000,4000", help="film counts for the memory runs")
    p.add_argument("--model", default="InceptionV3")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--memory-run", nargs=3, metavar=("FOLDER", "MODEL", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_run:
        return memory_run(Path(args.memory_run[0]), args.memory_run[1], Path(args.memory_run[2]))

    tmp = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    load_before = os.getloadavg()
    counts = sorted(int(n) for n in args.n.split(","))
    films = _films(args.data, max(counts[-1], 64))
    spark = get_session("bench-predict", "local[2]")
    model_uri = _fit_model(spark, films, tmp / "model", args.model)
    folders = {n: _folder(films, tmp / f"films-{n}", n) for n in counts}
    warm = _folder(films, tmp / "warm", 64)
    _featurize(spark, warm, model_uri)  # every worker builds its networks once, as in a long job
    _predict(spark, warm, model_uri, tmp / "out-warm", "flagged")
    methods = ("featurize", "predict", "predict+heatmaps")
    best: dict[tuple[int, str], float] = {}  # seconds, best of the rounds
    for r in range(args.rounds):
        for n in counts:
            for method in methods:
                secs = (_featurize(spark, folders[n], model_uri) if method == "featurize" else
                        _predict(spark, folders[n], model_uri, tmp / f"out-{method}-{n}-{r}",
                                 "flagged" if method.endswith("heatmaps") else "none"))
                best[n, method] = min(best.get((n, method), secs), secs)
                print(f"round {r + 1} {n:5d} films {method:17s} {n / secs:7.2f} films/s", flush=True)
    spark.stop()
    print(f"\n{args.model}, local[2], cpus={os.cpu_count()}, load average "
          f"(1/5/15 min) {' '.join(f'{x:.1f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} after")
    for n in counts:
        base = n / best[n, "featurize"]
        print(f"{n} films, best of {args.rounds}:")
        for method in methods:
            rate = n / best[n, method]
            print(f"  {method:17s} {rate:7.2f} films/s  {rate / base:.2f}x featurize (goal >= 0.9)")
    if len(counts) > 1:
        lo, hi = counts[0], counts[-1]
        print(f"per extra film ({lo} -> {hi} films) and fixed cost a run:")
        per_film = {m: (best[hi, m] - best[lo, m]) / (hi - lo) for m in methods}
        for method in methods:
            fixed = best[lo, method] - lo * per_film[method]
            print(f"  {method:17s} {1 / per_film[method]:7.2f} films/s  "
                  f"{per_film['featurize'] / per_film[method]:.2f}x featurize, fixed {fixed:5.2f} s")

    print("\ndriver peak memory (predict, no heatmaps, one driver process per size):")
    for size in (int(s) for s in args.sizes.split(",")):
        linked = _folder(films, tmp / f"mem-{size}", size, link=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, __file__, str(args.data), "--memory-run",
                                 str(linked), model_uri, str(tmp / f"out-mem-{size}")],
                                capture_output=True, text=True, check=True)
        peak = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"  {size:6d} films: python {peak['python_mb']:7.1f} MB, JVM {peak['jvm_mb']:7.1f} MB "
              f"(heap in use after a GC {peak['jvm_live_mb']:5.1f} MB) "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
