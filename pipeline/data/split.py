"""The patient-grouped, stratified validation split carved from train, and K folds of it.

The dataset's own val split has 16 images, so every choice (threshold, epochs, model) is made
on a split of train instead. Patients have several films; all of a patient's films land on
the same side, or the validation score would reward remembering faces, not finding pneumonia.
Cross-validation folds follow the same two rules (``patient_folds``), and each fold carves
its own validation part from the rest (``fold_roles``), for every arm alike.

``validation_patients`` draws the same split from a Spark DataFrame: only per-class summaries
reach the driver, each class's patients are shuffled in one task.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline.config import SEED, VALIDATION_FRACTION


def validation_mask(frame: pd.DataFrame, fraction: float = VALIDATION_FRACTION,
                    seed: int = SEED) -> pd.Series:
    """Boolean mask over ``frame`` (columns ``patient_id``, ``label``): True = validation.

    Stratified by the patient's label (a patient with any pneumonia film counts as
    pneumonia): within each class, patients are shuffled with ``seed`` and taken until their
    films reach ``fraction`` of the class's films. Same input, same seed, same split.
    """
    _check_fraction(fraction)
    per_patient = frame.groupby("patient_id", sort=True).agg(label=("label", "max"),
                                                             films=("label", "size"))
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    for _, group in per_patient.groupby("label", sort=True):
        chosen.extend(_take(group, rng, fraction))
    return frame["patient_id"].isin(set(chosen))


def validation_patients(frame: DataFrame, fraction: float = VALIDATION_FRACTION,
                        seed: int = SEED) -> DataFrame:
    """The patients (column ``patient_id``) of ``validation_mask``'s validation side, for a
    Spark DataFrame of films (columns ``patient_id``, ``label``): the same patients for the
    same films. Each class's patients are shuffled in one task, with the generator advanced
    past the classes before it, as ``validation_mask`` draws them in turn; the driver sees
    only the number of patients per class."""
    _check_fraction(fraction)
    per_patient = frame.groupBy("patient_id").agg(F.max("label").alias("label"),
                                                  F.count(F.lit(1)).alias("films"))
    sizes = {float(r["label"]): int(r["count"]) for r in per_patient.groupBy("label").count().collect()}
    before = {label: [sizes[other] for other in sorted(sizes) if other < label] for label in sizes}

    def choose(group: pd.DataFrame) -> pd.DataFrame:
        group = group.sort_values("patient_id").set_index("patient_id")
        rng = np.random.default_rng(seed)
        for count in before[float(group["label"].iloc[0])]:
            rng.permutation(count)  # what the classes before this one drew
        return pd.DataFrame({"patient_id": _take(group, rng, fraction)}, dtype=object)

    return per_patient.groupBy("label").applyInPandas(choose, "patient_id string")


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")


def _take(group: pd.DataFrame, rng: np.random.Generator, fraction: float) -> list[str]:
    """One class's validation patients: ``group`` (patients by id, column ``films``) shuffled,
    taken until their films reach ``fraction``, never all of them."""
    order = group.index.to_numpy()[rng.permutation(len(group))]
    films = group.loc[order, "films"].to_numpy()
    take = int(np.searchsorted(np.cumsum(films), fraction * films.sum(), side="left")) + 1
    return list(order[:min(take, len(order) - 1) if len(order) > 1 else 0])


def check_fold_count(folds: int) -> None:
    """Refuse a fold count no cross-validation can use (0: none), before any work starts."""
    if folds < 0 or folds == 1:
        raise ValueError(f"--cv needs at least 2 folds (0: none), got {folds}")


def patient_folds(frame: pd.DataFrame, folds: int, seed: int = SEED) -> np.ndarray:
    """Fold number (0..folds-1) of each row of ``frame`` (columns ``patient_id``, ``label``).

    Every film of a patient is in one fold; stratified by the patient's label (any pneumonia
    film: pneumonia) and balanced by films: within each class the patients, shuffled with
    ``seed``, largest first, each go to the fold with the fewest films of that class so far.
    """
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    per_patient = frame.groupby("patient_id", sort=True).agg(label=("label", "max"),
                                                             films=("label", "size"))
    for label, group in per_patient.groupby("label", sort=True):
        if len(group) < folds:
            raise ValueError(f"{folds} folds need at least {folds} patients of each class; "
                             f"class {int(label)} has {len(group)}")
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for _, group in per_patient.groupby("label", sort=True):
        shuffled = group.iloc[rng.permutation(len(group))]
        ordered = shuffled.sort_values("films", ascending=False, kind="stable")
        load = np.zeros(folds, dtype=int)
        for patient, films in ordered["films"].items():
            k = int(np.argmin(load))  # ties go to the lowest fold number
            fold_of[patient] = k
            load[k] += films
    return frame["patient_id"].map(fold_of).to_numpy(dtype=int)


#: A film's role in one cross-validation fold (``fold_roles``).
FIT, INNER_VALIDATION, HELD_OUT = "fit", "validation", "held_out"


def fold_roles(frame: pd.DataFrame, folds: int, fraction: float = VALIDATION_FRACTION,
               seed: int = SEED) -> pd.DataFrame:
    """Each film's role in each of ``folds`` folds: column ``path``, then ``role0``..: the
    fold's own films are ``held_out``; of the rest, a patient-grouped ``validation`` part
    (``validation_mask``, ``fraction``) chooses for the fold's model, which is fitted on
    the others (``fit``). ``frame``: columns ``path``, ``patient_id``, ``label``, in a fixed
    order (every arm sorts by path), so that every arm's fold k holds the same films."""
    fold = patient_folds(frame, folds, seed)
    roles = pd.DataFrame({"path": frame["path"].to_numpy()})
    for k in range(folds):
        rest = frame[fold != k]
        role = np.where(fold == k, HELD_OUT, FIT).astype(object)
        role[np.flatnonzero(fold != k)[validation_mask(rest, fraction, seed).to_numpy()]] = \
            INNER_VALIDATION
        roles[f"role{k}"] = role
    return roles


def split_counts(train: DataFrame) -> dict[str, dict[str, int]]:
    """Films, patients and classes on each side of the split of ``train`` (a Spark DataFrame
    with ``patient_id``, ``label``, ``is_val``), as the training summaries record them; one
    aggregate, two rows to the driver."""
    out = {name: {"films": 0, "patients": 0, "pneumonia": 0, "normal": 0}
           for name in ("fit", "validation")}
    for row in train.groupBy("is_val").agg(
            F.count(F.lit(1)).alias("films"), F.countDistinct("patient_id").alias("patients"),
            F.count(F.when(F.col("label") == 1, 1)).alias("pneumonia"),
            F.count(F.when(F.col("label") == 0, 1)).alias("normal")).collect():
        out["validation" if row["is_val"] else "fit"] = {
            k: int(row[k]) for k in ("films", "patients", "pneumonia", "normal")}
    return out
