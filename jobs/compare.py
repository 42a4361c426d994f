"""spark-submit jobs/compare.py RUN_URI... --out URI: one table of runs, ROC curves overlaid."""
from __future__ import annotations

import argparse

from pipeline.runtime.cli import base_parser, run_job
from pipeline.report.compare import compare, markdown
from pipeline.runtime.session import get_session


def parser() -> argparse.ArgumentParser:
    p = base_parser("Compare runs (folders holding an xray-metrics/1 metrics.json, or the files): "
                    "write compare.md, compare.html and roc.png to --out.")
    p.add_argument("runs", nargs="+", help="run folder or metrics.json URIs")
    p.add_argument("--out", required=True, help="URI of the comparison folder to write")
    return p


def main(args: argparse.Namespace) -> None:
    rows = compare(get_session("xray-compare", args.master), args.runs, args.out)
    print(markdown(rows))
    print(f"report: {args.out.rstrip('/')}/compare.html")


if __name__ == "__main__":
    run_job(main, parser())
