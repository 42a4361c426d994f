"""spark-submit jobs/evaluate.py --data URI --model URI --out URI: score a split, write a report."""
from __future__ import annotations

import argparse
import json

from pipeline import config
from pipeline.runtime.cli import add_precision, base_parser, run_job
from pipeline.featurizer.evaluation import VALIDATION, EvalConfig, evaluate
from pipeline.runtime.session import get_session

SHOWN = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc", "threshold")


def parser() -> argparse.ArgumentParser:
    p = base_parser("Score a split of a chest_xray tree with a trained model; write metrics.json, "
                    "confusion_matrix.png, roc.png, predictions.csv and report.html to --out.")
    p.add_argument("--data", required=True, help="URI of the chest_xray tree")
    p.add_argument("--model", required=True, help="URI of a model saved by jobs/train.py")
    p.add_argument("--out", required=True, help="URI of the report folder to write")
    p.add_argument("--split", default="test", choices=(*config.SPLITS, VALIDATION),
                   help="a folder of the tree, or 'validation': the patient-grouped part of "
                        "train that the model's training held out")
    p.add_argument("--reader", default=config.DEFAULT_READER, choices=config.READERS)
    p.add_argument("--target-sensitivity", type=float, default=None,
                   help="grade at the highest threshold reaching this sensitivity on the "
                        "validation scores stored with the model (unset: the model's own "
                        "threshold); no retraining")
    p.add_argument("--with-validation", action="store_true",
                   help="also score the patient-grouped validation part of train into "
                        "predictions.csv (subset column), as jobs/ensemble.py needs")
    add_precision(p, None, "(unset: the precision the model was trained in)")
    return p


def main(args: argparse.Namespace) -> None:
    spark = get_session("xray-evaluate", args.master, args.verbose)
    doc = evaluate(spark, EvalConfig(data=args.data, model=args.model, out=args.out,
                                     split=args.split, reader=args.reader,
                                     precision=args.precision,
                                     target_sensitivity=args.target_sensitivity,
                                     with_validation=args.with_validation))
    print(json.dumps({k: doc.metrics[k] for k in SHOWN}, indent=2))
    print(f"report: {args.out.rstrip('/')}/report.html")


if __name__ == "__main__":
    run_job(main, parser())
