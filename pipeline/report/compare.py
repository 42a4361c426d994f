"""One table of many runs: every arm's metrics.json side by side, ROC curves overlaid.

Reads any run folder (or metrics.json) that follows the ``xray-metrics/1`` schema, whatever
wrote it (the featurizer + LR evaluation, either fine-tuning arm), and writes
``compare.md``, a self-contained ``compare.html`` (the ROC plot inlined) and ``roc.png``.
"""
from __future__ import annotations

import html
import logging
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

from pipeline.report.document import METRICS_FILE, MetricsDocument
from pipeline.report.page import embed_png, plot_roc
from pipeline.fs.storage import HadoopFS, atomic_output

log = logging.getLogger(__name__)

#: (heading, metric key) of the columns read from ``metrics``.
METRIC_COLUMNS = (("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"),
                  ("specificity", "specificity"), ("F1", "f1"), ("ROC AUC", "roc_auc"),
                  ("threshold", "threshold"))
NOTES = ("Metrics at each run's own threshold, chosen on its patient-grouped validation split. "
         "AUC 95% CI: resampling patients, not films; patient ROC AUC: a patient is positive "
         "if any film is, scored by their highest film; Brier: of the calibrated probabilities "
         "(n/a for runs written without validation scores). "
         "Training s: wall time of the job that produced the model (featurizer+lr: its train "
         "job; finetune: the whole job). images/s as each run reports it: fine-tuning runs give "
         "training images per second, featurizer+lr runs the films scored per second end to end.")


def metrics_path(uri: str) -> str:
    """Where a run's metrics document is: ``uri`` itself if it names a .json, else its
    metrics.json."""
    return uri if uri.endswith(".json") else f"{uri.rstrip('/')}/{METRICS_FILE}"


def has_metrics(spark: SparkSession, uri: str) -> bool:
    """Whether ``uri`` is a run with a metrics document (not, say, a saved model)."""
    path = metrics_path(uri)
    return HadoopFS(spark, path).exists(path)


def load_run(spark: SparkSession, uri: str) -> MetricsDocument:
    """The metrics document of a run folder (or of a metrics.json URI), checked."""
    path = metrics_path(uri)
    fs = HadoopFS(spark, path)
    if not fs.exists(path):
        raise ValueError(f"{uri} has no metrics.json")
    return MetricsDocument.from_json(fs.read_bytes(path), path)


def row(name: str, doc: MetricsDocument) -> dict:
    """One table row: the run's name, method and the figures a reader compares."""
    m = doc.metrics
    ci = (doc.bootstrap or {}).get("film", {}).get("roc_auc")
    return {"run": name, "method": doc.method, "split": f"{doc.split} ({m['counts']['total']})",
            **{head: m[key] for head, key in METRIC_COLUMNS},
            "AUC 95% CI": None if ci is None else f"{ci[0]:.3f}-{ci[1]:.3f}",
            "patient ROC AUC": doc.patients["metrics"]["roc_auc"] if doc.patients else None,
            "Brier": doc.calibration["brier"]["calibrated"] if doc.calibration else None,
            "training s": doc.training.get("timings_s", {}).get("total"),
            "images/s": doc.images_per_s, "data": doc.data, "weights": doc.weights}


def _cell(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(rows: list[dict]) -> str:
    heads = list(rows[0])
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(_cell(r[h]).replace("|", "\\|") for h in heads) + " |" for r in rows]
    return "\n".join(lines) + f"\n\n{NOTES}\n"


def html_page(rows: list[dict], roc_png: Path) -> str:
    esc = html.escape
    heads = "".join(f"<th>{esc(h)}</th>" for h in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in r.values()) + "</tr>"
                   for r in rows)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Pneumonia screening: {len(rows)} runs compared</title>
<style>body{{font-family:system-ui,sans-serif;max-width:80rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;font-size:.9rem}}td,th{{border:1px solid #ccc;padding:.25rem .5rem}}
</style></head><body><h1>Pneumonia screening: {len(rows)} runs compared</h1>
<table><tr>{heads}</tr>{body}</table><p>{esc(NOTES)}</p>{embed_png(roc_png)}
<p><small>A screening aid for research use, not a medical device.</small></p></body></html>"""


def run_name(uri: str) -> str:
    """The run folder's name (also when the URI names its metrics.json)."""
    parts = uri.rstrip("/").split("/")
    return parts[-2] if parts[-1].endswith(".json") and len(parts) > 1 else parts[-1]


def compare(spark: SparkSession, runs: list[str], out: str) -> list[dict]:
    """Write the comparison of ``runs`` to ``out`` (atomically); returns the table rows."""
    if not runs:
        raise ValueError("name at least one run to compare")
    named = [(run_name(uri), load_run(spark, uri)) for uri in runs]
    rows = [row(name, doc) for name, doc in named]
    with tempfile.TemporaryDirectory() as local:
        folder = Path(local)
        plot_roc([(f"{doc.method} ({name})", doc) for name, doc in named], folder / "roc.png")
        (folder / "compare.md").write_text(markdown(rows))
        (folder / "compare.html").write_text(html_page(rows, folder / "roc.png"), encoding="utf-8")
        with atomic_output(spark, out) as tmp:
            HadoopFS(spark, tmp).put_dir(folder, tmp)
    log.info("compared %d runs -> %s", len(rows), out)
    return rows
