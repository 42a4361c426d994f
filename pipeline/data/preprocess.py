"""Optional contrast equalisation of a decoded film: the one rule every model input follows.

CLAHE (contrast-limited adaptive histogram equalisation) evens out exposure between scanners
and periods: each tile of the film gets its own histogram equalisation, clipped so noise in
flat regions is not blown up, and tiles are blended bilinearly. It runs on the model-sized
``uint8[size, size, 3]`` RGB that ``images.decode_bytes``/``struct_to_rgb`` return, so the
featurizer (``DeepImageFeaturizer.clahe``) and fine-tuning's pixel cache equalise exactly the
same pixels, and the cost is that of a small image whatever the original's size.

OpenCV's ``createCLAHE`` does it (C++, deterministic, about 0.1 ms for 299 px) rather than
code of our own; scikit-image's ``equalize_adapthist`` is the same algorithm in float, several
times slower, and would bring SciPy for one function. A film is gray: equalisation runs on its
luminance and the result is gray in all three channels, as the films already are.
"""
from __future__ import annotations

import numpy as np

#: OpenCV's histogram clip per tile (its default, 40, barely limits; 2 is the usual choice
#: for radiographs) and the tile grid: 8 x 8 tiles of a 224-299 px film are 28-37 px, about
#: a rib space.
CLIP_LIMIT = 2.0
TILE_GRID = (8, 8)


def equalize(rgb: np.ndarray) -> np.ndarray:
    """CLAHE of a ``uint8[h, w, 3]`` RGB film's luminance, as ``uint8[h, w, 3]`` gray RGB."""
    import cv2  # imported on use: only runs that ask for CLAHE need OpenCV loaded

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"equalize takes uint8 RGB [h, w, 3], got {rgb.dtype} {rgb.shape}")
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    out = cv2.createCLAHE(clipLimit=CLIP_LIMIT, tileGridSize=TILE_GRID).apply(gray)
    return np.repeat(out[:, :, None], 3, axis=2)


def model_input(rgb: np.ndarray, clahe: bool) -> np.ndarray:
    """A decoded model-sized film as a network is fed it: equalised when ``clahe``. Every
    path to a network (the featurizer, fine-tuning's pixel cache, predict) goes through
    here, so a model is scored on pixels prepared as those it learnt from."""
    return equalize(rgb) if clahe else rgb
