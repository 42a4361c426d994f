"""An ensemble of finished runs: their calibrated scores averaged, one threshold, one report.

Each run folder holds ``metrics.json`` and ``predictions.csv`` with a ``subset`` column: the
fine-tuning job writes its validation and test scores there, and ``jobs/evaluate.py
--with-validation`` does the same for a featurizer + LR model. Each run's scores are first
put on one scale by its own Platt calibration, fitted on its validation films (raw scores of
different models are not comparable: one network's 0.9 is another's 0.6), then averaged film
by film over the films every run scored. The threshold is chosen on the shared validation
films only, and the scored split is graded once, into the same ``MetricsDocument`` and report
as any single run.

``cross_validated_ensemble`` does the same on train only: for runs of either arm trained
with ``--cv`` on the same folds (same tree and seed), it ensembles their stored fold scores fold by fold
(``crossval.ensemble_folds``) and writes each member's and the ensemble's figures, mean ±
sd over the folds, as ``cv.json`` and a Markdown table ``cv.md``.
"""
from __future__ import annotations

import io
import json
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

from pipeline.featurizer.model_store import load_model
from pipeline.featurizer.summary import TrainConfig
from pipeline.fs.storage import HadoopFS, atomic_output
from pipeline.report.calibration import fit_platt
from pipeline.report.compare import has_metrics, load_run, run_name
from pipeline.report.crossval import ensemble_folds, recipe_table
from pipeline.report.document import MetricsDocument, ScoredPart
from pipeline.report.metrics import headline, threshold_for_sensitivity
from pipeline.report.page import write_metrics_report

log = logging.getLogger(__name__)

VALIDATION = "validation"
_COLUMNS = ("subset", "path", "label", "score")


def load_predictions(spark: SparkSession, run: str) -> pd.DataFrame:
    """The run's ``predictions.csv`` (subset, path, label, score), checked."""
    uri = f"{run.rstrip('/')}/predictions.csv"
    fs = HadoopFS(spark, uri)
    if not fs.exists(uri):
        raise ValueError(f"{run} has no predictions.csv")
    frame = pd.read_csv(io.BytesIO(fs.read_bytes(uri)))
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{uri} lacks the column(s) {', '.join(missing)}: re-run its evaluation "
                         "with --with-validation (fine-tuning runs write them)")
    if not (frame["subset"] == VALIDATION).any():
        raise ValueError(f"{uri} has no validation scores: re-run its evaluation with "
                         "--with-validation")
    return frame[list(_COLUMNS)]


def _shared(frames: list[pd.DataFrame], subset: str, runs: list[str]) -> pd.DataFrame:
    """path, label and one calibrated-score column per run, over the films of ``subset``
    that every run scored; the runs must agree on each film's label."""
    joined = None
    for i, frame in enumerate(frames):
        part = frame[frame["subset"] == subset][["path", "label", "calibrated"]]
        part = part.rename(columns={"label": f"label{i}", "calibrated": f"p{i}"})
        joined = part if joined is None else joined.merge(part, on="path", how="inner")
    if joined is None or joined.empty:
        raise ValueError(f"the runs share no {subset} films (were they scored on the same tree, "
                         f"named by the same URI?): {', '.join(runs)}")
    labels = joined[[f"label{i}" for i in range(len(frames))]].to_numpy(dtype=int)
    if (labels != labels[:, :1]).any():
        raise ValueError(f"the runs disagree on the label of {int((labels != labels[:, :1]).any(1).sum())} "
                         f"{subset} films: they were not scored on the same tree")
    return joined.assign(label=labels[:, 0]).sort_values("path").reset_index(drop=True)


def ensemble(spark: SparkSession, runs: list[str], out: str, target: float) -> MetricsDocument:
    """Average the runs' calibrated scores, choose the threshold on their shared validation
    films, grade their shared scored split and write the report to ``out`` (atomically)."""
    started = time.monotonic()
    if len(runs) < 2:
        raise ValueError("an ensemble needs at least two runs")
    docs = [load_run(spark, run) for run in runs]
    splits = {doc.split for doc in docs}
    if len(splits) != 1 or VALIDATION in splits:
        raise ValueError(f"the runs must score one split other than validation, found "
                         f"{', '.join(sorted(splits))}")
    split = splits.pop()
    frames, members = [], []
    for run, doc in zip(runs, docs):
        frame = load_predictions(spark, run)
        val = frame[frame["subset"] == VALIDATION]
        calibrator = fit_platt(val["label"].to_numpy(dtype=int), val["score"].to_numpy(dtype=float))
        frames.append(frame.assign(calibrated=calibrator.apply(frame["score"].to_numpy(dtype=float))))
        members.append({"run": run, "name": run_name(run), "method": doc.method,
                        "model_name": doc.model_name, "weights": doc.weights,
                        "calibrator": calibrator.to_dict(), "roc_auc": doc.metrics["roc_auc"]})
    val, scored = _shared(frames, VALIDATION, runs), _shared(frames, split, runs)
    columns = [f"p{i}" for i in range(len(runs))]
    val_scores, scores = val[columns].mean(axis=1).to_numpy(), scored[columns].mean(axis=1).to_numpy()
    threshold = threshold_for_sensitivity(val["label"], val_scores, target)
    doc = MetricsDocument.build(
        spark, labels=scored["label"], scores=scores, threshold=threshold,
        paths=scored["path"].tolist(), validation=ScoredPart(val["label"].to_numpy(), val_scores),
        method="ensemble", model_name=" + ".join(m["name"] for m in members),
        weights=", ".join(sorted({str(m["weights"]) for m in members})),
        data=docs[0].data, model=" ".join(runs), split=split,
        threshold_source=(f"highest threshold reaching sensitivity {target} on the mean "
                          f"calibrated score of the {len(val)} validation films all "
                          f"{len(runs)} runs scored"),
        timings_s={"total": round(time.monotonic() - started, 3)}, images_per_s=0.0,
        training={"members": members, "validation_films": int(len(val)),
                  "scored_films_per_run": [int((f["subset"] == split).sum()) for f in frames],
                  "averaged": "each run's Platt-calibrated score, fitted on its validation films"},
        warnings=[f"{run}: {len(f[f['subset'] == split])} {split} films, {len(scored)} shared by all runs"
                  for run, f in zip(runs, frames) if (f["subset"] == split).sum() != len(scored)])
    with tempfile.TemporaryDirectory() as local:
        folder = Path(local)
        write_metrics_report(folder, doc)
        predictions = pd.concat([val.assign(subset=VALIDATION, score=val_scores),
                                 scored.assign(subset=split, score=scores)])
        predictions.assign(prediction=(predictions["score"] > threshold).astype(int))[
            ["subset", "path", "label", "score", "prediction"]].to_csv(folder / "predictions.csv",
                                                                       index=False)
        with atomic_output(spark, out) as tmp:
            HadoopFS(spark, tmp).put_dir(folder, tmp)
    log.info("ensemble of %d runs on %d %s films: %s -> %s", len(runs), len(scored), split,
             headline(doc.metrics), out)
    return doc


def recipe_name(cfg: TrainConfig) -> str:
    """What sets a trained model's recipe apart, in a few words, e.g. ``InceptionV3 150 px,
    CLAHE, seed 7``."""
    if cfg.model_file:
        return f"features of {run_name(cfg.model_file)}"
    size = f"{cfg.input_size} px" if cfg.input_size else "own size"
    seed = cfg.seed if cfg.featurizer_seed is None else cfg.featurizer_seed
    parts = [f"{cfg.model_name} {size}", *(["CLAHE"] if cfg.clahe else []),
             f"weights {cfg.weights}" + (f" seed {seed}" if cfg.weights == "none" else ""),
             (f"regParam:elasticNet from {len(cfg.reg_grid)} per fold" if cfg.reg_grid
              else f"regParam {cfg.reg_param:g} elasticNet {cfg.elastic_net:g}")]
    return ", ".join(parts)


def finetune_recipe_name(cfg: dict) -> str:
    """What sets a fine-tuning run's recipe apart, e.g. ``fine-tuned inceptionv3 150 px,
    CLAHE, weights imagenet, at most 15 epochs``."""
    epochs = cfg["epochs"] + cfg["unfreeze_epochs"]
    return ", ".join([f"fine-tuned {cfg['arch']} {cfg['image_size']} px",
                      *(["CLAHE"] if cfg.get("clahe") else []),
                      *([f"weights {cfg['weights'] or 'imagenet'}"] if cfg["arch"] != "cnn" else []),
                      f"at most {epochs} epoch{'s' if epochs > 1 else ''}"])


def cv_member(spark: SparkSession, uri: str) -> tuple[str, dict]:
    """(recipe name, cross-validation) of a run trained with ``--cv``: a folder with a
    ``metrics.json`` (a fine-tuning run, or an evaluation of a model) or a featurizer + LR
    model (its training summary)."""
    if has_metrics(spark, uri):
        training = load_run(spark, uri).training
        cfg = training.get("config", {})
        name = finetune_recipe_name(cfg) if "arch" in cfg else run_name(uri)
        cv = training.get("cross_validation")
    elif summary := load_model(spark, uri).summary:
        name, cv = recipe_name(summary.config), summary.cross_validation
    else:
        name, cv = run_name(uri), None
    if not cv or "fold_scores" not in cv:
        raise ValueError(f"{uri} was not trained with --cv (or before fold scores were kept)")
    return name, cv


def cross_validated_ensemble(spark: SparkSession, models: list[str], out: str,
                             target: float) -> dict:
    """Ensemble the cross-validation folds of ``models`` (each trained with ``--cv`` on the
    same tree and seed: featurizer + LR models, fine-tuning run folders, or both) and write
    ``cv.json`` (members' and ensemble's ``summarise_folds``) and ``cv.md`` to ``out``."""
    members = [cv_member(spark, uri) for uri in models]
    how = (f"the mean of the {len(members)} members' calibrated scores, fold by fold, on the "
           f"members' own folds; threshold (sensitivity {target}) and calibration from each "
           f"fold's validation part")
    result = ensemble_folds([cv for _, cv in members], target, how)
    rows = [*members, (" + ".join(name for name, _ in members), result)]
    table = recipe_table(rows)
    with atomic_output(spark, out) as tmp:
        fs = HadoopFS(spark, tmp)
        fs.write_bytes(f"{tmp}/cv.json", json.dumps(
            {"members": [{"model": uri, "name": name, "cross_validation": cv}
                         for uri, (name, cv) in zip(models, members)],
             "ensemble": result}).encode())
        fs.write_bytes(f"{tmp}/cv.md", table.encode())
    log.info("cross-validated ensemble of %d models: pooled ROC AUC %.4f -> %s", len(models),
             result["pooled"]["roc_auc"], out)
    return {"table": table, "ensemble": result}
