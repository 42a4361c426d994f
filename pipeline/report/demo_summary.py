"""The last step of ``make demo``: what was produced, where, and where to look.

Reads the evaluation's metrics.json back from HDFS, prints the headline numbers, the HDFS
paths and the web UIs, and copies report.html next to the local checkout so it opens with a
double click.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cluster.health import url
from pipeline.report.document import MetricsDocument
from pipeline.runtime.cli import base_parser, run_job
from pipeline.fs.webhdfs import connect, parse_destination

SHOWN = ("sensitivity", "specificity", "roc_auc", "pr_auc", "accuracy", "threshold")


def summarize(hdfs_dir: str, local_out: Path) -> str:
    """The summary text; ``local_out/report.html`` receives a copy of the HDFS report."""
    dest = parse_destination(hdfs_dir)
    client = connect(dest)
    metrics_path = dest.child("report/metrics.json")
    with client.read(metrics_path) as reader:
        doc = MetricsDocument.from_json(reader.read(), metrics_path)
    local_out.mkdir(parents=True, exist_ok=True)
    client.download(dest.child("report/report.html"), str(local_out / "report.html"), overwrite=True)
    m = doc.metrics
    lines = [f"{doc.split} split: {m['counts']['total']} films "
             f"({m['counts']['PNEUMONIA']} pneumonia, {m['counts']['NORMAL']} normal), "
             f"{doc.model_name} weights={doc.weights}"]
    lines += [f"  {k:12s} {'n/a' if m[k] is None else f'{m[k]:.4f}'}" for k in SHOWN]
    lines += ["HDFS:", *(f"  {name:10s} {hdfs_dir.rstrip('/')}/{name}"
                         for name in ("chest_xray", "features", "model", "report")),
              f"report (local copy): {(local_out / 'report.html').resolve()}",
              "web UIs:",
              f"  HDFS NameNode    {url('namenode_http')}",
              f"  YARN apps        {url('resourcemanager_http')}",
              f"  Spark History    {url('history_http')}"]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0], spark=False,
                    prog="python -m pipeline.report.demo_summary")
    p.add_argument("hdfs_dir", help="the demo's HDFS folder, e.g. hdfs:///xray")
    p.add_argument("local_out", type=Path, help="folder for the local copy of report.html")
    return p


def main(args: argparse.Namespace) -> None:
    print(summarize(args.hdfs_dir, args.local_out))


if __name__ == "__main__":
    run_job(main, parser())
