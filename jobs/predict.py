"""spark-submit jobs/predict.py --model URI --input URI --out URI: screen new films."""
from __future__ import annotations

import argparse
import json

from pipeline.predict.job import PredictConfig, predict
from pipeline.predict.scoring import HEATMAP_CHOICES
from pipeline.runtime.cli import add_precision, base_parser, run_job
from pipeline.runtime.session import get_session


def parser() -> argparse.ArgumentParser:
    p = base_parser("Score new, unlabeled chest films (JPEG, PNG or DICOM, recognised by content) "
                    "with a trained model; write predictions.parquet/.csv, studies.parquet/.csv, "
                    "worklist.html, summary.json and heatmap overlays to --out.")
    p.add_argument("--model", required=True,
                   help="a model saved by jobs/train.py, or jobs/finetune.py's output folder "
                        "(or its model.keras)")
    p.add_argument("--input", required=True,
                   help="a folder of films in any layout (walked recursively), or a .csv list of "
                        "film URIs (column 'uri', else the first)")
    p.add_argument("--out", required=True, help="URI of the output folder")
    p.add_argument("--watch", action="store_true",
                   help="keep watching --input and score films as they arrive (stop with SIGTERM "
                        "or Ctrl-C); copy films in under a hidden or ._COPYING_ name and rename")
    p.add_argument("--heatmaps", default="flagged", choices=HEATMAP_CHOICES,
                   help="which films get a heatmap overlay")
    add_precision(p, None, "(unset: the precision the model was trained in)")
    return p


def main(args: argparse.Namespace) -> None:
    spark = get_session("xray-predict", args.master, args.verbose)
    summary = predict(spark, PredictConfig(model=args.model, input=args.input, out=args.out,
                                           watch=args.watch, heatmaps=args.heatmaps,
                                           precision=args.precision))
    print(json.dumps(summary.counts, indent=2))
    print(f"worklist: {args.out.rstrip('/')}/worklist.html")


if __name__ == "__main__":
    run_job(main, parser())
