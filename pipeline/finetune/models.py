"""The two Keras architectures of the fine-tuning arm, as the 2020 report built them.

Both take raw 0-255 RGB and carry their own augmentation (active only while training) and
rescaling, so a saved ``model.keras`` is self-contained: the featurizer's ``modelFile``, or any
Keras user, feeds it decoded pixels and nothing else. Only Keras layers and ``keras.ops``: the
same code trains on the TensorFlow, JAX and PyTorch backends. Keras is imported inside the
functions so the Spark driver, which never trains, does not load a backend.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import config
from pipeline.featurizer.models import IMAGENET, NO_WEIGHTS, build_backbone

if TYPE_CHECKING:
    import keras

#: Smallest input each architecture accepts: five 2x2 poolings need 32 px; Keras' InceptionV3
#: refuses less than 75 px.
MIN_IMAGE_SIZE = {"cnn": 32, "inceptionv3": 75}
#: Name of the nested base model inside the inceptionv3 network (Keras' own name for it).
INCEPTION_BASE = "inception_v3"


def _augmentation(inputs: "keras.KerasTensor", seed: int) -> "keras.KerasTensor":
    """The report's ImageDataGenerator(zoom_range=0.3, vertical_flip=True) as layers: zoom drawn
    independently per axis in [0.7, 1.3], edges filled with the nearest pixel, as Keras 2 did."""
    from keras import layers

    zoom = config.AUGMENT_ZOOM
    x = layers.RandomZoom(height_factor=(-zoom, zoom), width_factor=(-zoom, zoom),
                          fill_mode="nearest", seed=seed, name="augment_zoom", dtype="float32")(inputs)
    return layers.RandomFlip("vertical", seed=seed, name="augment_flip", dtype="float32")(x)


def build_cnn(image_size: int, seed: int = config.SEED) -> "keras.Model":
    """The report's method 1: two Conv2D(16), four SeparableConv2D pairs (32/64/128/256) with
    BatchNorm and max-pooling, dropout 0.2 after the last two blocks, then Dense 512/128/64
    with dropout 0.7/0.5/0.3 and a sigmoid unit."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1 / 255, name="rescale", dtype="float32")(_augmentation(inputs, seed))
    for _ in range(2):
        x = layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(2)(x)
    for filters, dropout in ((32, 0.0), (64, 0.0), (128, 0.2), (256, 0.2)):
        for _ in range(2):
            x = layers.SeparableConv2D(filters, 3, activation="relu", padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(2)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    x = layers.Flatten()(x)
    for units, dropout in ((512, 0.7), (128, 0.5), (64, 0.3)):
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(dropout)(x)
    # float32 out whatever the compute precision: the loss and the scores need its range
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="report_cnn")


def build_inceptionv3(image_size: int, weights: str, seed: int = config.SEED,
                      local_weights: str | None = None) -> "keras.Model":
    """The report's method 2: InceptionV3 without its top, dropout 0.5, global average pooling,
    Dense 128, BatchNorm, sigmoid (22,065,697 parameters, as its summary printed).

    A pretrained base (``imagenet`` or a weights file) starts frozen and runs in inference
    mode, so its BatchNorm statistics survive a later unfreezing; a random one trains from the
    first epoch, since frozen random filters would teach nothing.
    """
    import keras
    from keras import layers

    try:
        base = build_backbone("InceptionV3", weights, "none", seed, local_weights, image_size)
    except Exception as exc:  # Keras reports a failed download as a bare Exception
        if weights != IMAGENET or isinstance(exc, ValueError):
            raise
        raise ValueError(f"ImageNet weights for InceptionV3 are not available here ({exc}); pass "
                         "--weights PATH (a no-top weights file) or --weights none") from None
    pretrained = weights != NO_WEIGHTS
    base.trainable = not pretrained
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    # InceptionV3's preprocess_input (x / 127.5 - 1), inside the model.
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale",
                         dtype="float32")(_augmentation(inputs, seed))
    x = base(x, training=False) if pretrained else base(x)
    x = layers.Dropout(0.5)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    # float32 out whatever the compute precision: the loss and the scores need its range
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="report_inceptionv3")


def build_model(arch: str, image_size: int, weights: str = NO_WEIGHTS, seed: int = config.SEED,
                local_weights: str | None = None) -> "keras.Model":
    """The uncompiled network for ``arch``; ``weights`` applies to inceptionv3 only."""
    if arch not in config.FINETUNE_ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; supported: {', '.join(config.FINETUNE_ARCHS)}")
    if image_size < MIN_IMAGE_SIZE[arch]:
        raise ValueError(f"{arch} needs images of at least {MIN_IMAGE_SIZE[arch]} px, got {image_size}")
    if arch == "cnn":
        return build_cnn(image_size, seed)
    return build_inceptionv3(image_size, weights, seed, local_weights)


def compile_model(model: "keras.Model", learning_rate: float) -> None:
    """Adam and binary cross-entropy, as the report; AUC besides accuracy for the curves."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="binary_crossentropy",
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")])


def unfreeze_base(model: "keras.Model") -> None:
    """Make the pretrained base trainable; it stays in inference mode (see above)."""
    model.get_layer(INCEPTION_BASE).trainable = True
