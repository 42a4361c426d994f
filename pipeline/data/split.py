"""The patient-grouped, stratified validation split carved from train, and K folds of it.

The dataset's own val split has 16 images, so every choice (threshold, epochs, model) is made
on a split of train instead. Patients have several films; all of a patient's films land on
the same side, or the validation score would reward remembering faces, not finding pneumonia.
Cross-validation folds follow the same two rules (``patient_folds``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import SEED, VALIDATION_FRACTION


def validation_mask(frame: pd.DataFrame, fraction: float = VALIDATION_FRACTION,
                    seed: int = SEED) -> pd.Series:
    """Boolean mask over ``frame`` (columns ``patient_id``, ``label``): True = validation.

    Stratified by the patient's label (a patient with any pneumonia film counts as
    pneumonia): within each class, patients are shuffled with ``seed`` and taken until their
    films reach ``fraction`` of the class's films. Same input, same seed, same split.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    per_patient = frame.groupby("patient_id", sort=True).agg(label=("label", "max"),
                                                             films=("label", "size"))
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    for _, group in per_patient.groupby("label", sort=True):
        order = group.index.to_numpy()[rng.permutation(len(group))]
        films = group.loc[order, "films"].to_numpy()
        take = int(np.searchsorted(np.cumsum(films), fraction * films.sum(), side="left")) + 1
        chosen.extend(order[:min(take, len(order) - 1) if len(order) > 1 else 0])
    return frame["patient_id"].isin(set(chosen))


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


def split_counts(train: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Films, patients and classes on each side of the split of ``train`` (columns
    ``patient_id``, ``label``, ``is_val``), as the training summaries record them."""
    out = {}
    for name, part in (("fit", train[~train.is_val]), ("validation", train[train.is_val])):
        out[name] = {"films": int(len(part)), "patients": int(part.patient_id.nunique()),
                     "pneumonia": int(np.sum(part.label == 1)), "normal": int(np.sum(part.label == 0))}
    return out
