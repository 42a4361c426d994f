"""The patient-grouped, stratified validation split."""
from __future__ import annotations

import pandas as pd
import pytest

from pipeline.data.patients import patient_id
from pipeline.data.split import validation_mask


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


def test_bad_fraction():
    with pytest.raises(ValueError, match="fraction"):
        validation_mask(_frame(), 1.0)
