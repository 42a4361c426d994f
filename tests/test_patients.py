"""The manifest's patient_id column: the dataset's three naming schemes and the fallback."""
from __future__ import annotations

import pytest

from pipeline.data.patients import patient_id

KNOWN = [
    ("person1_bacteria_1.jpeg", "person1"),
    ("person1_bacteria_2.jpeg", "person1"),
    ("person1437_virus_2458.jpeg", "person1437"),
    ("IM-0115-0001.jpeg", "IM-0115"),
    ("IM-0115-0002.jpeg", "IM-0115"),
    ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
    ("train/PNEUMONIA/person7_virus_13.jpeg", "person7"),
    ("/data/chest_xray/val/NORMAL/NORMAL2-IM-1430-0001.jpeg", "NORMAL2-IM-1430"),
]
#: Names outside the schemes are their own patient: the stem, whatever it looks like.
UNKNOWN = [
    "scan 01 ünïcode.png",
    "person1_fungus_1.jpeg",
    "IM-0115.jpeg",
    "NORMAL3-IM-0001-0001.jpeg",
    "xperson1_virus_1.jpeg",
    "README",
]


@pytest.mark.parametrize(("name", "expected"),
                         KNOWN + [(name, name.rsplit(".", 1)[0]) for name in UNKNOWN])
def test_patient_id(name: str, expected: str) -> None:
    assert patient_id(name) == expected


def test_same_patient_different_films() -> None:
    assert patient_id("person3_virus_15.jpeg") == patient_id("person3_bacteria_11.jpeg")
    assert patient_id("IM-0001-0001.jpeg") != patient_id("NORMAL2-IM-0001-0001.jpeg")


#: The real train split's 134 names with a further -N/_N suffix are the same patient's films.
@pytest.mark.parametrize(("name", "expected"), [
    ("IM-0429-0001-0001.jpeg", "IM-0429"),
    ("NORMAL2-IM-0587-0001-0002.jpeg", "NORMAL2-IM-0587"),
    ("person447_virus_921_1.jpeg", "person447"),
])
def test_suffixed_names_belong_to_their_patient(name: str, expected: str) -> None:
    assert patient_id(name) == expected
