"""Patient identity from the dataset's file names.

Several images belong to one patient; a split that puts a patient on both sides leaks. File
names carry the patient: ``personN_bacteria_M`` / ``personN_virus_M`` (pneumonia),
``IM-XXXX-YYYY`` and ``NORMAL2-IM-XXXX-YYYY`` (normal). The real data also has further
numeric suffixes (``IM-0001-0001-0002``, ``person447_virus_921_1``: 134 training films); they
are the same patient's films.
"""
from __future__ import annotations

import re
from pathlib import PurePosixPath

_PATTERNS = (
    re.compile(r"(person\d+)_(?:bacteria|virus)_\d+(?:_\d+)*", re.IGNORECASE),
    re.compile(r"((?:NORMAL2-)?IM-\d+)(?:-\d+)+", re.IGNORECASE),
)


def patient_id(file_name: str) -> str:
    """The patient a file belongs to (a bare name or a path); an unrecognised name is its own
    patient (its stem)."""
    stem = PurePosixPath(file_name).name.rsplit(".", 1)[0]
    for pattern in _PATTERNS:
        match = pattern.fullmatch(stem)
        if match:
            return match.group(1)
    return stem
