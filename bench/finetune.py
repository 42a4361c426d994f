"""Training throughput of the fine-tuning arm, against the 2020 report's P100 and plain Keras.

  python bench/finetune.py [DATA_URI] [--arch cnn] [--image-size 150] [--epochs 3]
                           [--max-images N] [--backend tensorflow|jax|torch]

Two measurements, one after the other on the same films, arch, size and batch size:
  spark   the real job (jobs/finetune.py's code path): Spark decodes into the pixel cache and
          one barrier task trains from the streamed cache; images/s per epoch of the training
          part (augmentation, forward, backward; validation excluded), as history.json has it
  keras   plain single-process Keras ``fit`` on the same decoded films held in memory
The first epoch of each also traces and compiles the model. Prints images/s per epoch, the
device, and the ratio to the report's 163 steps x 32 images in about 93 s per epoch on a
Tesla P100 at 150 px (about 56 images/s). Without DATA_URI a synthetic tree is used.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from pipeline import config  # noqa: E402
from pipeline.runtime.cli import configure_logging  # noqa: E402
from pipeline.data.dataset import scan_tree  # noqa: E402
from pipeline.finetune.job import FinetuneConfig, finetune, sample_listing  # noqa: E402
from pipeline.data.images import decode_bytes  # noqa: E402
from pipeline.data.sample_data import write_tree  # noqa: E402
from pipeline.runtime.session import get_session  # noqa: E402
from pipeline.fs.storage import HadoopFS  # noqa: E402

#: The report's method 1 on Kaggle's Tesla P100: 163 steps of 32 images in about 93 s.
REFERENCE_IMAGES_PER_S = 163 * 32 / 93


def plain_keras(spark, cfg: FinetuneConfig, paths: list[str], labels: np.ndarray) -> list[float]:
    """images/s per epoch of ``model.fit`` on in-memory arrays, this process, no Spark."""
    from pipeline.finetune.fit import class_weights
    from pipeline.finetune.models import build_model, compile_model

    fs = HadoopFS(spark, paths[0])
    x = np.stack([decode_bytes(fs.read_bytes(p), cfg.image_size) for p in paths]).astype(np.float32)
    model = build_model(cfg.arch, cfg.image_size, cfg.model_weights, cfg.seed)
    compile_model(model, cfg.learning_rate)
    weights = class_weights({0: int((labels == 0).sum()), 1: int((labels == 1).sum())})
    rates = []
    for _ in range(cfg.epochs):
        started = time.perf_counter()
        model.fit(x, labels, batch_size=cfg.batch_size, epochs=1, class_weight=weights, verbose=0)
        rates.append(len(x) / (time.perf_counter() - started))
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=None, help="chest_xray tree URI (default: synthetic)")
    p.add_argument("--arch", default="cnn", choices=config.FINETUNE_ARCHS)
    p.add_argument("--image-size", type=int, default=config.FINETUNE_IMAGE_SIZE)
    p.add_argument("--batch-size", type=int, default=config.FINETUNE_BATCH_SIZE)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-images", type=int, default=640, help="films per split")
    p.add_argument("--weights", default="none", help="inceptionv3 start (default: random init)")
    p.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    p.add_argument("--master", default="local[2]")
    args = p.parse_args()
    configure_logging()
    os.environ["KERAS_BACKEND"] = args.backend  # for the in-process plain Keras run too

    with tempfile.TemporaryDirectory() as work:
        data = args.data or str(Path(work) / "chest_xray")
        if args.data is None:
            write_tree(Path(data), scale=8)
        cfg = FinetuneConfig(arch=args.arch, data=data, out=str(Path(work) / "run"),
                             epochs=args.epochs, image_size=args.image_size,
                             batch_size=args.batch_size, max_images=args.max_images,
                             weights=None if args.arch == "cnn" else args.weights,
                             split="validation", backend=args.backend)
        spark = get_session("bench-finetune", args.master)
        doc = finetune(spark, cfg)
        spark_rates = doc.training["images_per_s_per_epoch"]
        # The very films the job trained on (same sample, same patient-grouped split).
        listing = sample_listing(scan_tree(spark, data, ("train",)), cfg.max_images, cfg.seed)
        fit = listing.with_validation(cfg.val_fraction, cfg.seed).images.filter("not is_val").toPandas()
        keras_rates = plain_keras(spark, cfg, list(fit["path"]), fit["label"].to_numpy("float32"))
        train_n = len(fit)
        spark.stop()

    print(f"\n{args.arch} at {args.image_size} px, batch {args.batch_size}, {train_n} training films, "
          f"device: {doc.training['device']}")
    print("epoch   spark images/s   keras images/s   (epoch 1 includes tracing and compiling)")
    for i, (s, k) in enumerate(zip(spark_rates, keras_rates), start=1):
        print(f"{i:5d}   {s:14.1f}   {k:14.1f}")
    steady = float(np.mean(spark_rates[1:] or spark_rates))
    keras_steady = float(np.mean(keras_rates[1:] or keras_rates))
    print(f"steady state: spark {steady:.1f} images/s, plain keras {keras_steady:.1f} images/s "
          f"(spark/keras {steady / keras_steady:.2f})")
    print(f"reference: the report's Tesla P100, 163 x 32 images in ~93 s = "
          f"{REFERENCE_IMAGES_PER_S:.1f} images/s; ours/reference = {steady / REFERENCE_IMAGES_PER_S:.2f}")


if __name__ == "__main__":
    main()
