"""The two Keras architectures of the fine-tuning arm, as the 2020 report built them.

Both take raw 0-255 RGB and carry their own geometric augmentation (active only while
training) and rescaling, so a saved ``model.keras`` is self-contained: the featurizer's ``modelFile``, or any
Keras user, feeds it decoded pixels and nothing else. Only Keras layers and ``keras.ops``: the
same code trains on the TensorFlow, JAX and PyTorch backends. Keras is imported inside the
functions so the Spark driver, which never trains, does not load a backend.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import config
from pipeline.featurizer.models import IMAGENET, NO_WEIGHTS, build_backbone
from pipeline.finetune.augment import geometry

if TYPE_CHECKING:
    import keras

#: Smallest input each architecture accepts: five 2x2 poolings need 32 px; Keras' InceptionV3
#: refuses less than 75 px.
MIN_IMAGE_SIZE = {"cnn": 32, "inceptionv3": 75}
#: Name of the nested base model inside the inceptionv3 network (Keras' own name for it).
INCEPTION_BASE = "inception_v3"


def build_cnn(image_size: int, seed: int = config.SEED, augment: str = "report") -> "keras.Model":
    """The report's method 1: two Conv2D(16), four SeparableConv2D pairs (32/64/128/256) with
    BatchNorm and max-pooling, dropout 0.2 after the last two blocks, then Dense 512/128/64
    with dropout 0.7/0.5/0.3 and a sigmoid unit."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1 / 255, name="rescale", dtype="float32")(geometry(inputs, augment, seed))
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
                      local_weights: str | None = None, augment: str = "report") -> "keras.Model":
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
                         dtype="float32")(geometry(inputs, augment, seed))
    x = base(x, training=False) if pretrained else base(x)
    x = layers.Dropout(0.5)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    # float32 out whatever the compute precision: the loss and the scores need its range
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="report_inceptionv3")


def build_model(arch: str, image_size: int, weights: str = NO_WEIGHTS, seed: int = config.SEED,
                local_weights: str | None = None, augment: str = "report") -> "keras.Model":
    """The uncompiled network for ``arch`` with ``augment``'s geometric layers
    (``pipeline.finetune.augment``); ``weights`` applies to inceptionv3 only."""
    if arch not in config.FINETUNE_ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; supported: {', '.join(config.FINETUNE_ARCHS)}")
    if image_size < MIN_IMAGE_SIZE[arch]:
        raise ValueError(f"{arch} needs images of at least {MIN_IMAGE_SIZE[arch]} px, got {image_size}")
    if arch == "cnn":
        return build_cnn(image_size, seed, augment)
    return build_inceptionv3(image_size, weights, seed, local_weights, augment)


def compile_model(model: "keras.Model", learning_rate: float, schedule: str = "plateau",
                  label_smoothing: float = 0.0, steps_per_epoch: int = 1, epochs: int = 1) -> None:
    """Binary cross-entropy (with ``label_smoothing``), AUC besides accuracy for the curves,
    and the optimizer of ``schedule`` (``config.SCHEDULES``): the report's Adam at a fixed
    rate that ReduceLROnPlateau lowers, or AdamW on a warm-up then cosine schedule over
    ``epochs`` of ``steps_per_epoch`` batches."""
    import keras

    if schedule not in config.SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; supported: {', '.join(config.SCHEDULES)}")
    if schedule == "plateau":
        optimizer = keras.optimizers.Adam(learning_rate)
    else:
        warmup = steps_per_epoch * min(config.WARMUP_EPOCHS, max(epochs - 1, 0))
        rate = keras.optimizers.schedules.CosineDecay(
            learning_rate / 10, decay_steps=max(steps_per_epoch * epochs - warmup, 1), alpha=0.01,
            warmup_target=learning_rate, warmup_steps=warmup)
        optimizer = keras.optimizers.AdamW(rate, weight_decay=config.ADAMW_WEIGHT_DECAY)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(optimizer=optimizer,
                  loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")])


def unfreeze_base(model: "keras.Model") -> None:
    """Make the pretrained base trainable; it stays in inference mode (see above)."""
    model.get_layer(INCEPTION_BASE).trainable = True
