"""The patient-grouped, stratified validation split."""
from __future__ import annotations

import pandas as pd
import pytest

from pipeline.data.patients import patient_id
from pipeline.data.split import (
    fold_roles,
    patient_folds,
    split_counts,
    validation_mask,
    validation_patients,
)


def _frame() -> pd.DataFrame:
    rows = []
    for p in range(60):  # 60 normal patients, 1-3 films each
        rows += [(f"IM-{p:04d}-{k:04d}.jpeg", 0) for k in range(1, 2 + p % 3)]
    for p in range(120):
        rows += [(f"person{p}_{'virus' if k % 2 else 'bacteria'}_{k}.jpeg", 1) for k in range(1, 2 + p % 4)]
    frame = pd.DataFrame(rows, columns=["path", "label"])
    return frame.assign(patient_id=frame.path.map(patient_id))


def test_no_patient_on_both_sides():
    frame = _frame()
    mask = validation_mask(frame, 0.2, seed=1)
    assert set(frame[mask].patient_id).isdisjoint(frame[~mask].patient_id)


def test_stratified_and_sized():
    frame = _frame()
    mask = validation_mask(frame, 0.2, seed=1)
    for label in (0, 1):
        share = mask[frame.label == label].mean()
        assert 0.15 <= share <= 0.3, (label, share)


def test_deterministic_per_seed():
    frame = _frame()
    assert validation_mask(frame, 0.2, seed=3).equals(validation_mask(frame.copy(), 0.2, seed=3))
    assert not validation_mask(frame, 0.2, seed=3).equals(validation_mask(frame, 0.2, seed=4))


@pytest.mark.parametrize("seed", [1, 7])
def test_the_spark_split_is_the_same_split(spark, seed):
    """The jobs draw the split in Spark (``validation_patients``): the same patients as
    ``validation_mask``, whatever order the rows come in; a patient with films of both
    classes counts as pneumonia in both."""
    frame = pd.concat([_frame(), pd.DataFrame({"path": ["IM-0999-0001.jpeg", "x.jpeg"],
                                               "label": [0, 1], "patient_id": ["both", "both"]})])
    frame = frame.assign(label=frame.label.astype(float))
    rows = spark.createDataFrame(frame.sample(frac=1, random_state=seed)).repartition(3)
    chosen = {r.patient_id for r in validation_patients(rows, 0.2, seed).collect()}
    expected = set(frame[validation_mask(frame, 0.2, seed)].patient_id)
    assert chosen == expected and 0 < len(chosen) < frame.patient_id.nunique()
    counts = split_counts(rows.withColumn("is_val", rows.patient_id.isin(list(chosen))))
    fit = frame[~frame.patient_id.isin(chosen)]
    assert counts["validation"]["films"] == len(frame) - len(fit)
    assert counts["fit"] == {"films": len(fit), "patients": fit.patient_id.nunique(),
                             "pneumonia": int((fit.label == 1).sum()),
                             "normal": int((fit.label == 0).sum())}


def test_bad_fraction():
    with pytest.raises(ValueError, match="fraction"):
        validation_mask(_frame(), 1.0)


@pytest.mark.parametrize("k", [3, 5])
def test_folds_never_split_a_patient(k):
    frame = _frame()
    folds = patient_folds(frame, k, seed=1)
    assert (frame.assign(fold=folds).groupby("patient_id")["fold"].nunique() == 1).all()
    assert set(folds) == set(range(k))


@pytest.mark.parametrize("k", [3, 5])
def test_folds_are_stratified_and_balanced(k):
    frame = _frame()
    folds = patient_folds(frame, k, seed=1)
    for label in (0, 1):
        films = pd.Series(folds[frame.label == label]).value_counts()
        share = films / films.sum()
        # each fold holds about 1/k of each class's films (a patient has at most 4)
        assert (abs(share - 1 / k) < 0.03).all(), (label, share.to_dict())
        assert films.max() - films.min() <= 4


def test_folds_depend_on_the_seed_only():
    frame = _frame()
    assert (patient_folds(frame, 5, 3) == patient_folds(frame.copy(), 5, 3)).all()
    assert not (patient_folds(frame, 5, 3) == patient_folds(frame, 5, 4)).all()


def test_fold_roles_hold_each_film_out_once_and_never_split_a_patient():
    """Per fold: its own films held out, the rest fitted or validating, a patient's films all
    in one role; the validation part is the split train itself would carve from the rest."""
    frame = _frame()
    roles = fold_roles(frame, 4, 0.2, seed=2)
    assert list(roles["path"]) == list(frame["path"])
    columns = [f"role{k}" for k in range(4)]
    assert ((roles[columns] == "held_out").sum(axis=1) == 1).all()
    folds = patient_folds(frame, 4, seed=2)
    for k, column in enumerate(columns):
        assert set(roles.loc[folds == k, column]) == {"held_out"}
        per_patient = frame.assign(role=roles[column]).groupby("patient_id")["role"].nunique()
        assert (per_patient == 1).all()
        rest = frame[folds != k].reset_index(drop=True)
        expected = set(rest.loc[validation_mask(rest, 0.2, seed=2), "path"])
        assert set(roles.loc[roles[column] == "validation", "path"]) == expected
        assert (roles[column] == "fit").sum() > 2 * len(expected)


def test_too_few_patients_or_folds():
    frame = _frame()
    with pytest.raises(ValueError, match="at least 2 folds"):
        patient_folds(frame, 1)
    with pytest.raises(ValueError, match="class 0 has 60"):
        patient_folds(frame, 61)
