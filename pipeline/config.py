"""The one place for the pipeline's defaults.

Every default a job, a stage or the cluster uses lives here, so that a change of policy
(a seed, a threshold target, a port) is one edit. Environment variables named
``XRAY_<NAME>`` override the few settings that differ between machines.
"""
from __future__ import annotations

import os
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"XRAY_{name}", default)


REPO_ROOT = Path(__file__).resolve().parent.parent

# --- dataset layout -------------------------------------------------------------------------
SPLITS = ("train", "val", "test")
#: class folder -> label. PNEUMONIA is the positive class (the report's Spark section had it
#: backwards: NORMAL=1).
CLASSES = {"NORMAL": 0, "PNEUMONIA": 1}
CLASS_NAMES = {label: name for name, label in CLASSES.items()}
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
#: Images above this many pixels are rejected before decoding (a 12000x12000 scan would need
#: about 430 MB as RGB). Pillow's own decompression-bomb error fires at about 179 Mpx.
MAX_IMAGE_PIXELS = int(_env("MAX_IMAGE_PIXELS", str(64_000_000)))

# --- reproducibility ------------------------------------------------------------------------
SEED = 42
#: Fraction of the train split's patients held out for model selection and the threshold.
VALIDATION_FRACTION = 0.2

# --- featurizer -----------------------------------------------------------------------------
DEFAULT_MODEL = "InceptionV3"
DEFAULT_POOLING = "avg"
#: Images per model call. Also the Arrow batch size, so one Arrow batch is one model call.
DEFAULT_BATCH_SIZE = 32
#: Default reader: "binaryFile" ships compressed bytes to Python (see README: Readers).
DEFAULT_READER = "binaryFile"
READERS = ("binaryFile", "image")

# --- classifier (the reference report's values as the starting point) -----------------------
LR_MAX_ITER = 10
LR_REG_PARAM = 0.05
LR_ELASTIC_NET = 0.3
#: The decision threshold is the highest one that still reaches this sensitivity on the
#: validation split: missing pneumonia costs more than a second look at a normal film.
TARGET_SENSITIVITY = 0.95
