"""Patient identity from the dataset's file names.

Several images belong to one patient; a split that puts a patient on both sides leaks. File
names carry the patient: ``personN_bacteria_M`` / ``personN_virus_M`` (pneumonia),
``IM-XXXX-YYYY`` and ``NORMAL2-IM-XXXX-YYYY`` (normal).
"""
from __future__ import annotations

import re
from pathlib import PurePosixPath

_PATTERNS = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)_\d+$", re.IGNORECASE),
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+$", re.IGNORECASE),
)


def patient_id(file_name: str) -> str:
    """The patient a file belongs to; an unrecognised name is its own patient (its stem)."""
    stem = PurePosixPath(file_name).name.rsplit(".", 1)[0]
    for pattern in _PATTERNS:
        match = pattern.match(stem)
        if match:
            return match.group(1)
    return stem
