"""The manifest's patient_id column: the dataset's three naming schemes and the fallback."""
from __future__ import annotations

import pytest

from pipeline.patients import patient_id


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("person1_bacteria_1.jpeg", "person1"),
        ("person1_bacteria_2.jpeg", "person1"),
        ("person1437_virus_2458.jpeg", "person1437"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0115-0002.jpeg", "IM-0115"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("train/PNEUMONIA/person7_virus_13.jpeg", "person7"),
        ("/data/chest_xray/val/NORMAL/NORMAL2-IM-1430-0001.jpeg", "NORMAL2-IM-1430"),
    ],
)
def test_known_schemes(name: str, expected: str) -> None:
    assert patient_id(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("scan 01 ünïcode.png", "scan 01 ünïcode"),
        ("person1_fungus_1.jpeg", "person1_fungus_1"),
        ("IM-0115.jpeg", "IM-0115"),
        ("NORMAL3-IM-0001-0001.jpeg", "NORMAL3-IM-0001-0001"),
        ("xperson1_virus_1.jpeg", "xperson1_virus_1"),
        ("README", "README"),
    ],
)
def test_unknown_name_is_its_own_patient(name: str, expected: str) -> None:
    assert patient_id(name) == expected


def test_same_patient_different_films() -> None:
    assert patient_id("person3_virus_15.jpeg") == patient_id("person3_bacteria_11.jpeg")
    assert patient_id("IM-0001-0001.jpeg") != patient_id("NORMAL2-IM-0001-0001.jpeg")
