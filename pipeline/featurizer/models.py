"""Registry of the named CNNs the featurizer can run, and how each one is built.

One entry per model: its Keras application, input size and preprocessing, as sparkdl had.
Keras is imported only when a model is built, so the driver can validate names without
loading TensorFlow.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from pipeline.config import SEED
from pipeline.runtime.precision import dtype_policy

if TYPE_CHECKING:
    import keras

#: ``weights`` value that means "random initialisation, seeded".
NO_WEIGHTS = "none"
IMAGENET = "imagenet"


@dataclass(frozen=True)
class NamedModel:
    """A Keras application usable as a featurizer backbone."""

    name: str
    input_size: int
    #: module under ``keras.applications`` holding the constructor and preprocess_input
    module: str

    def preprocess(self) -> Callable[[np.ndarray], np.ndarray]:
        """The model's own ``preprocess_input``, exactly as Keras applies it."""
        return importlib.import_module(f"keras.applications.{self.module}").preprocess_input

    def constructor(self) -> Callable[..., "keras.Model"]:
        return getattr(importlib.import_module(f"keras.applications.{self.module}"), self.name)


REGISTRY: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel("InceptionV3", 299, "inception_v3"),
        NamedModel("Xception", 299, "xception"),
        NamedModel("ResNet50", 224, "resnet50"),
        NamedModel("VGG16", 224, "vgg16"),
        NamedModel("VGG19", 224, "vgg19"),
    )
}


def get_model(name: str) -> NamedModel:
    """The registry entry for ``name``; an unknown name lists the supported ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown modelName {name!r}; supported: {', '.join(sorted(REGISTRY))}"
        ) from None


def is_model_file(weights: str) -> bool:
    """A whole saved model (``.keras``) rather than a weights file."""
    return weights.lower().endswith(".keras")


def build_backbone(name: str, weights: str, pooling: str, seed: int = SEED,
                   local_file: str | None = None, input_size: int | None = None,
                   precision: str | None = None) -> "keras.Model":
    """Build the headless backbone.

    ``weights``: ``"imagenet"`` (Keras downloads or reuses ``~/.keras/models``), ``"none"``
    (random init from ``seed``: the same seed gives the same network in every process), or
    the URI of a weights file (``.h5``/``.weights.h5``, no top) or a whole ``.keras`` model,
    already fetched to ``local_file``. ``input_size`` overrides the model's own (the
    fine-tuning arm trains InceptionV3 at the report's 150 px; conv weights fit any size).
    ``precision`` (``runtime.precision``): what the network computes in, with float32 weights
    either way, so the same seed or file gives the same weights; None keeps Keras' global
    policy. A whole ``.keras`` model computes as it was saved.
    """
    import keras

    spec = get_model(name)
    if weights != NO_WEIGHTS and weights != IMAGENET and is_model_file(weights):
        return load_model_file(local_file or weights)
    keras.utils.set_random_seed(seed)
    source = None if weights == NO_WEIGHTS else (IMAGENET if weights == IMAGENET else local_file or weights)
    policy = dtype_policy(precision) if precision else contextlib.nullcontext()
    try:
        with policy:
            return spec.constructor()(
                include_top=False,
                weights=source,
                pooling=None if pooling == "none" else pooling,
                input_shape=(input_size or spec.input_size, input_size or spec.input_size, 3),
            )
    except ValueError as exc:
        if source in (None, IMAGENET):
            raise
        # Keras appends every layer of the model to its reason: its first line says enough.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"weights file {weights} does not fit {name} (no top): {reason}") from None


def load_model_file(path: str) -> "keras.Model":
    """Load a saved ``.keras`` model, with a clear error when the file is not one."""
    import keras

    if not os.path.exists(path):
        raise ValueError(f"model file {path} does not exist")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a file that is not a model
        raise ValueError(f"{path} is not a Keras model file: {type(exc).__name__}: {exc}") from None


def penultimate_model(model: "keras.Model") -> "keras.Model":
    """The network up to the layer before its output: the in-domain feature extractor."""
    import keras

    return keras.Model(model.inputs, model.layers[-2].output, name=f"{model.name}_features")


def load_feature_extractor(path: str) -> tuple["keras.Model", int]:
    """A saved fine-tuned model (local ``.keras`` path) as the in-domain feature extractor,
    with the square input size it was trained at."""
    model = load_model_file(path)
    shape = model.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise ValueError(f"{path} does not take square RGB images (input shape {shape})")
    return penultimate_model(model), int(shape[1])
