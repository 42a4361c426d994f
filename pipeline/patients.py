"""Which patient an image belongs to, read from the dataset's file names.

One patient has several films; splitting by image rather than by patient leaks the patient
into both sides. The names are ``personN_bacteria_M`` / ``personN_virus_M`` (pneumonia),
``IM-XXXX-YYYY`` and ``NORMAL2-IM-XXXX-YYYY`` (normal).
"""
from __future__ import annotations

import re
from pathlib import PurePath

_PNEUMONIA = re.compile(r"(person\d+)_(?:bacteria|virus)_\d+")
_NORMAL = re.compile(r"((?:NORMAL2-)?IM-\d+)-\d+")


def patient_id(file_name: str) -> str:
    """The patient id in a file name (a bare name or a path); an unknown name is its own stem."""
    stem = PurePath(file_name).stem
    for pattern in (_PNEUMONIA, _NORMAL):
        match = pattern.fullmatch(stem)
        if match:
            return match.group(1)
    return stem
