"""spark-submit jobs/finetune.py --arch {cnn,inceptionv3} --data URI --out URI: the Keras arm.

Trains the report's CNN or InceptionV3 inside the Spark application (one barrier task, on a
GPU when the cluster offers one) and writes model.keras, history.json, training_curves.png,
predictions.csv and the metrics report to --out.
"""
from __future__ import annotations

import argparse
import json
import os

from pipeline import config
from pipeline.finetune.augment import AUGMENTS
from pipeline.finetune.barrier import GPU_MODES
from pipeline.report.crossval import brief
from pipeline.runtime.cli import add_cv, add_precision, base_parser, run_job
from pipeline.finetune.job import BACKENDS, SCORED_SPLITS, FinetuneConfig, finetune
from pipeline.runtime.precision import CHOICES as PRECISIONS
from pipeline.runtime.session import get_session

SHOWN = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "threshold")


def parser() -> argparse.ArgumentParser:
    p = base_parser("Fine-tune the report's Keras CNN or InceptionV3 on a chest_xray tree's train "
                    "split inside Spark; model and threshold are chosen on a patient-grouped "
                    "validation part of train.")
    p.add_argument("--arch", required=True, choices=config.FINETUNE_ARCHS)
    p.add_argument("--data", required=True, help="URI of the chest_xray tree (file:// or hdfs://)")
    p.add_argument("--out", required=True, help="URI of the run folder to write")
    p.add_argument("--epochs", type=int, default=config.FINETUNE_EPOCHS)
    p.add_argument("--weights", default=None,
                   help="inceptionv3: 'imagenet' (default), 'none' (random init, seeded) or the URI "
                        "of a no-top weights file; the cnn always starts from scratch")
    p.add_argument("--unfreeze-epochs", type=int, default=config.FINETUNE_UNFREEZE_EPOCHS,
                   help="inceptionv3: epochs with the pretrained base unfrozen, after --epochs frozen")
    p.add_argument("--batch-size", type=int, default=config.FINETUNE_BATCH_SIZE)
    p.add_argument("--image-size", type=int, default=config.FINETUNE_IMAGE_SIZE)
    p.add_argument("--learning-rate", type=float, default=config.FINETUNE_LEARNING_RATE)
    p.add_argument("--unfreeze-learning-rate", type=float,
                   default=config.FINETUNE_UNFREEZE_LEARNING_RATE)
    p.add_argument("--split", default="test", choices=SCORED_SPLITS,
                   help="what the metrics report: the tree's test split, or the patient-grouped "
                        "validation part of train (for a tree without test; the threshold is "
                        "chosen on it too, so its figures are optimistic)")
    p.add_argument("--target-sensitivity", type=float, default=config.TARGET_SENSITIVITY)
    p.add_argument("--val-fraction", type=float, default=config.VALIDATION_FRACTION)
    p.add_argument("--max-images", type=int, default=None,
                   help="at most this many films per split, a seeded sample (quick runs)")
    p.add_argument("--seed", type=int, default=config.SEED)
    p.add_argument("--gpu", default="auto", choices=GPU_MODES,
                   help="auto: a GPU when the cluster offers one (spark.executor.resource.gpu.amount)")
    p.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"),
                   choices=BACKENDS, help="Keras backend of the training task")
    p.add_argument("--clahe", action="store_true",
                   help="equalise each film's contrast (CLAHE, pipeline.data.preprocess) before "
                        "the network; recorded with the run, so predict does the same")
    p.add_argument("--augment", default="report", choices=AUGMENTS,
                   help="report: its zoom and vertical flip; scanner: small rotations, shifts and "
                        "zooms with per-film gamma, contrast and brightness (pipeline.finetune.augment)")
    p.add_argument("--schedule", default="plateau", choices=config.SCHEDULES,
                   help="plateau: Adam, the rate cut when val_loss stalls (the report); cosine: "
                        "AdamW, one epoch of warm-up, then cosine decay")
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="targets pulled this far towards 0.5 in the loss (0: none)")
    add_cv(p, "network")
    add_precision(p, config.PRECISION, "(the training task's device; float16, with loss "
                  "scaling, for GPUs older than compute capability 8.0)",
                  PRECISIONS)
    return p


def main(args: argparse.Namespace) -> None:
    cfg = FinetuneConfig(
        arch=args.arch, data=args.data, out=args.out, epochs=args.epochs, weights=args.weights,
        batch_size=args.batch_size, image_size=args.image_size,
        unfreeze_epochs=args.unfreeze_epochs, learning_rate=args.learning_rate,
        unfreeze_learning_rate=args.unfreeze_learning_rate, seed=args.seed,
        target_sensitivity=args.target_sensitivity, val_fraction=args.val_fraction,
        max_images=args.max_images, split=args.split, gpu=args.gpu, backend=args.backend,
        precision=args.precision, clahe=args.clahe, cv_folds=args.cv, augment=args.augment,
        schedule=args.schedule, label_smoothing=args.label_smoothing)
    cfg.check()
    doc = finetune(get_session(f"xray-finetune-{args.arch}", args.master), cfg)
    cv = doc.training.get("cross_validation")
    print(json.dumps({"split": doc.split, **{k: doc.metrics[k] for k in SHOWN},
                      "device": doc.training["device"], "compute_precision": doc.training["precision"],
                      **({"cross_validation": brief(cv)} if cv else {})}, indent=2))
    print(f"report: {args.out.rstrip('/')}/report.html")


if __name__ == "__main__":
    run_job(main, parser())
