"""spark-submit jobs/ensemble.py RUN_URI... --out URI: average runs' calibrated scores, one report."""
from __future__ import annotations

import argparse
import json

from pipeline import config
from pipeline.report.ensemble import cross_validated_ensemble, ensemble
from pipeline.runtime.cli import base_parser, run_job
from pipeline.runtime.session import get_session

SHOWN = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "threshold")


def parser() -> argparse.ArgumentParser:
    p = base_parser("Ensemble finished runs (folders with metrics.json and a predictions.csv "
                    "holding validation and scored-split rows: jobs/finetune.py, or "
                    "jobs/evaluate.py --with-validation): average each run's calibrated score, "
                    "choose the threshold on the shared validation films, write the same "
                    "metrics.json, plots, predictions.csv and report.html to --out.")
    p.add_argument("runs", nargs="+", help="run folder URIs (two or more)")
    p.add_argument("--out", required=True, help="URI of the report folder to write")
    p.add_argument("--target-sensitivity", type=float, default=config.TARGET_SENSITIVITY)
    p.add_argument("--cv", action="store_true",
                   help="the runs were trained with --cv on the same tree and seed (models "
                        "of jobs/train.py, run folders of jobs/finetune.py, or both): ensemble "
                        "their cross-validation folds (train only) and write cv.json and the "
                        "table cv.md to --out")
    return p


def main(args: argparse.Namespace) -> None:
    if args.cv:
        print(cross_validated_ensemble(get_session("xray-ensemble-cv", args.master), args.runs,
                                       args.out, args.target_sensitivity)["table"])
        return
    doc = ensemble(get_session("xray-ensemble", args.master), args.runs, args.out,
                   args.target_sensitivity)
    print(json.dumps({"split": doc.split, **{k: doc.metrics[k] for k in SHOWN},
                      "patient_roc_auc": doc.patients["metrics"]["roc_auc"]}, indent=2))
    print(f"report: {args.out.rstrip('/')}/report.html")


if __name__ == "__main__":
    run_job(main, parser())
