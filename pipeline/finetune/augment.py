"""Training-time augmentation of the fine-tuned networks, in two recipes (``--augment``).

- ``report``: the 2020 report's ImageDataGenerator(zoom_range=0.3, vertical_flip=True).
- ``scanner``: what changes between X-ray machines, sites and years instead. A patient
  stands a little differently: small rotations, shifts and zooms, but no upside-down film,
  which no scanner makes. Another detector, exposure and processing curve: per-film
  contrast, brightness and gamma.

The geometry is Keras layers inside the network. They run on the training device, do
nothing at inference, and are Keras' own, so a saved ``model.keras`` loads anywhere unchanged.
The intensity changes are numpy on the training batches (``IntensityJitter``), because
Keras has no gamma layer, and a layer of ours would have to be registered wherever a saved
model is loaded.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline import config

if TYPE_CHECKING:
    import keras

AUGMENTS = ("report", "scanner")


def geometry(inputs: "keras.KerasTensor", augment: str, seed: int) -> "keras.KerasTensor":
    """The recipe's geometric layers over ``inputs`` (edges filled with the nearest pixel, as
    Keras 2 did). ``report``: zoom drawn independently per axis in [0.7, 1.3], then a
    vertical flip half the time."""
    from keras import layers

    if augment not in AUGMENTS:
        raise ValueError(f"unknown augmentation {augment!r}; supported: {', '.join(AUGMENTS)}")
    common = dict(fill_mode="nearest", seed=seed, dtype="float32")
    if augment == "report":
        zoom = config.AUGMENT_ZOOM
        x = layers.RandomZoom((-zoom, zoom), (-zoom, zoom), name="augment_zoom", **common)(inputs)
        return layers.RandomFlip("vertical", seed=seed, name="augment_flip", dtype="float32")(x)
    shift, zoom = config.SCANNER_SHIFT, config.SCANNER_ZOOM
    x = layers.RandomRotation(config.SCANNER_ROTATION_DEGREES / 360, name="augment_rotate",
                              **common)(inputs)
    x = layers.RandomTranslation(shift, shift, name="augment_shift", **common)(x)
    return layers.RandomZoom(zoom, name="augment_zoom", **common)(x)


class IntensityJitter:
    """Per-film gamma, contrast and brightness on float32 batches of 0-255 pixels, from a
    seeded draw: one film's exposure and processing curve as another scanner would give it.

    Gamma and the contrast factor are log-uniform around 1 (as likely darker as lighter);
    contrast scales about the film's own mean; the brightness shift is a fraction of the
    range. Results are clipped back to 0-255.
    """

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, rng = len(x), self._rng
        per_film = (n, 1, 1, 1)
        gamma = np.exp(rng.uniform(-1, 1, n) * np.log(config.SCANNER_GAMMA)).reshape(per_film)
        contrast = np.exp(rng.uniform(-1, 1, n) * np.log(config.SCANNER_CONTRAST)).reshape(per_film)
        shift = rng.uniform(-config.SCANNER_BRIGHTNESS, config.SCANNER_BRIGHTNESS, per_film)
        v = (x / 255.0) ** gamma
        mean = v.mean(axis=(1, 2, 3), keepdims=True)
        v = (v - mean) * contrast + mean + shift
        return (np.clip(v, 0.0, 1.0) * 255.0).astype(np.float32)
