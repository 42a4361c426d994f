"""Featurizer throughput, side by side in one run on the same N images (files -> vectors).

  python bench/featurize.py DATA_DIR [-n 256] [--model InceptionV3] [--rounds 2] [--conf K=V]

Methods, each timed in steady state (models built and traced, workers warm, as in a long job):
  keras        plain single-process Keras: load_img + preprocess_input + predict, batch by batch
  keras-bf16   the same, built under Keras' mixed_bfloat16 policy (float32 weights)
  keras-bf16-folded  keras-bf16 with its batch normalizations folded as ours are
               (featurizer.folding): what of ours is the graph, and what the pipeline
  ours-binary  DeepImageFeaturizer on spark.read.format("binaryFile")
  ours-bf16    the same with precision="bfloat16"
  ours-image   DeepImageFeaturizer on spark.read.format("image")
  peer         what a user writes from Databricks' docs: binaryFile + an iterator pandas UDF
               that builds the model once per worker and predicts each Arrow batch
Prints images/s per method (best of --rounds), the load average beside each, and the ratios the
goals are stated in.

Spark ends a Python worker idle for a minute (PythonWorkerFactory, a fixed timeout), and with
it the worker's model; plain Keras runs longer than that in this driver. Each round therefore
warms the workers first (untimed, printed: what a cold small job pays on top) and times the
Spark methods back to back.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from pyspark.sql.functions import pandas_udf  # noqa: E402
from pyspark.sql.types import ArrayType, FloatType  # noqa: E402

from pipeline.featurizer import DeepImageFeaturizer  # noqa: E402
from pipeline.featurizer.folding import fold_batch_norms  # noqa: E402
from pipeline.featurizer.models import build_backbone, get_model  # noqa: E402
from pipeline.runtime.session import get_session  # noqa: E402

_PEER_MODELS: dict = {}


def peer_udf(name: str, seed: int):
    """The do-it-yourself peer, written the way the Databricks guide shows it."""
    @pandas_udf(ArrayType(FloatType()))
    def predict(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        import keras
        from PIL import Image

        spec = get_model(name)
        if name not in _PEER_MODELS:
            _PEER_MODELS[name] = build_backbone(name, "none", "avg", seed)
        model, size = _PEER_MODELS[name], spec.input_size
        for contents in batches:
            x = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB").resize((size, size)),
                                     dtype=np.float32) for b in contents])
            preds = model.predict(spec.preprocess()(x), verbose=0)
            yield pd.Series(list(preds.astype(np.float32)))
        del keras
    return predict


def plain_keras(files: list[Path], name: str, seed: int, batch: int, precision: str,
                folded: bool) -> float:
    import keras

    spec = get_model(name)
    model = build_backbone(name, "none", "avg", seed, precision=precision)
    if folded:
        model = fold_batch_norms(model)[0]
    for n in (1, 2):  # traced as ours is: one graph for every batch size
        model.predict_on_batch(np.zeros((n, spec.input_size, spec.input_size, 3), np.float32))
    started = time.perf_counter()
    for i in range(0, len(files), batch):
        x = np.stack([keras.utils.img_to_array(keras.utils.load_img(
            f, target_size=(spec.input_size, spec.input_size), interpolation="bilinear"))
            for f in files[i:i + batch]])
        model.predict_on_batch(spec.preprocess()(x))
    return time.perf_counter() - started


def spark_run(spark, method: str, folder: Path, name: str, seed: int, batch: int) -> float:
    """Featurize every film in ``folder``, read as the jobs read a class folder."""
    started = time.perf_counter()
    uri = f"file://{folder}"
    if method == "peer":
        df = spark.read.format("binaryFile").load(uri).select(peer_udf(name, seed)("content"))
    else:
        reader = "image" if method == "ours-image" else "binaryFile"
        df = spark.read.format(reader).load(uri)
        df = df.withColumnRenamed("content", "image") if reader == "binaryFile" else df
        df = DeepImageFeaturizer(modelName=name, weights=None, seed=seed, batchSize=batch,
                                 precision="bfloat16" if method == "ours-bf16" else "float32") \
            .transform(df).select("features")
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="folder searched recursively for .jpeg/.jpg/.png")
    p.add_argument("-n", type=int, default=256, help="images per method")
    p.add_argument("--model", default="InceptionV3")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Spark setting, e.g. spark.sql.files.openCostInBytes=1m")
    args = p.parse_args()

    found = sorted(f for f in args.data.rglob("*") if f.suffix.lower() in (".jpeg", ".jpg", ".png"))
    found = found[:: max(len(found) // args.n, 1)][: args.n]  # spread over classes and sizes
    # One folder of copies (as the jobs read a class folder; a list of 512 paths would add a
    # listing job of its own), and a smaller one to warm the workers.
    tmp = Path(tempfile.mkdtemp(prefix="bench-featurize-"))
    for folder, chosen in (("films", found), ("warm", found[: 2 * args.batch_size])):
        (tmp / folder).mkdir()
        for i, f in enumerate(chosen):
            shutil.copyfile(f, tmp / folder / f"{i:05d}{f.suffix.lower()}")
    files = sorted((tmp / "films").iterdir())
    # As spark-submit --conf would pass them: they win over the jobs' defaults.
    confs = ["spark.ui.showConsoleProgress=false", *args.conf]
    os.environ["PYSPARK_SUBMIT_ARGS"] = " ".join(f"--conf {c}" for c in confs) + " pyspark-shell"
    spark = get_session("bench-featurize", args.master)
    methods = ["ours-binary", "ours-bf16", "ours-image", "peer", "keras", "keras-bf16",
               "keras-bf16-folded"]
    best: dict[str, float] = {}
    for r in range(args.rounds):
        started = time.perf_counter()
        for m in methods[:4]:  # each worker's models built, as a long job would have them
            spark_run(spark, m, tmp / "warm", args.model, args.seed, args.batch_size)
        print(f"round {r + 1} warmed the workers in {time.perf_counter() - started:.0f}s",
              flush=True)
        for m in methods:
            secs = (plain_keras(files, args.model, args.seed, args.batch_size,
                                "float32" if m == "keras" else "bfloat16", m.endswith("folded"))
                    if m.startswith("keras")
                    else spark_run(spark, m, tmp / "films", args.model, args.seed, args.batch_size))
            best[m] = max(best.get(m, 0.0), len(files) / secs)
            print(f"round {r + 1} {m:17s} {len(files) / secs:7.2f} images/s  "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\n{len(files)} images, {args.model}, {args.master}, cpus={os.cpu_count()}, "
          f"{spark.read.format('binaryFile').load(f'file://{tmp}/films').rdd.getNumPartitions()} "
          f"file partitions, conf {args.conf or 'as the jobs run'}")
    for m in methods:
        print(f"  {m:17s} {best[m]:7.2f} images/s  {best[m] / best['keras']:.2f}x keras")
    for ours in ("ours-binary", "ours-image"):
        print(f"{ours} / keras = {best[ours] / best['keras']:.2f} (goal >= 0.95); "
              f"{ours} / peer = {best[ours] / best['peer']:.2f} (goal > 1)")
    print(f"ours-bf16 / keras (float32) = {best['ours-bf16'] / best['keras']:.2f} (goal >= 1.5); "
          f"ours-bf16 / keras-bf16 = {best['ours-bf16'] / best['keras-bf16']:.2f} (goal >= 0.95); "
          f"ours-bf16 / keras-bf16-folded = "
          f"{best['ours-bf16'] / best['keras-bf16-folded']:.2f} (the pipeline's own cost)")
    spark.stop()
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
