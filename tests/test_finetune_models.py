"""The fine-tuning architectures against the 2020 report, layer by layer and parameter count."""
from __future__ import annotations

from collections import Counter

import keras
import numpy as np
import pytest

from pipeline.featurizer.models import load_feature_extractor
from pipeline.finetune.augment import IntensityJitter
from pipeline.finetune.models import build_model, compile_model, unfreeze_base


def _sep(c_in: int, c_out: int) -> int:
    """SeparableConv2D 3x3: depthwise 9*c_in, pointwise c_in*c_out, bias c_out."""
    return 9 * c_in + c_in * c_out + c_out


def _dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def test_cnn_matches_report_at_150px():
    model = build_model("cnn", 150)
    kinds = Counter(type(layer).__name__ for layer in model.layers)
    assert kinds == {"InputLayer": 1, "RandomZoom": 1, "RandomFlip": 1, "Rescaling": 1,
                     "Conv2D": 2, "SeparableConv2D": 8, "BatchNormalization": 4,
                     "MaxPooling2D": 5, "Dropout": 5, "Flatten": 1, "Dense": 4}
    dropouts = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropouts == [0.2, 0.2, 0.7, 0.5, 0.3]
    units = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert units == [512, 128, 64, 1] and model.layers[-1].activation.__name__ == "sigmoid"
    convs = 9 * 3 * 16 + 16 + 9 * 16 * 16 + 16
    seps = sum(_sep(a, b) + _sep(b, b) + 4 * b for a, b in ((16, 32), (32, 64), (64, 128), (128, 256)))
    flat = (150 // 2 // 2 // 2 // 2 // 2) ** 2 * 256  # five 2x2 poolings: 150 -> 4
    dense = _dense(flat, 512) + _dense(512, 128) + _dense(128, 64) + _dense(64, 1)
    assert model.count_params() == convs + seps + dense == 2_314_337


def test_inceptionv3_matches_report_summary():
    model = build_model("inceptionv3", 75, weights="none")
    # The report's summary: Total 22,065,697, non-trainable 34,688 (BatchNorm statistics).
    assert model.count_params() == 22_065_697
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == 34_688
    assert [type(layer).__name__ for layer in model.layers[-5:]] == [
        "Dropout", "GlobalAveragePooling2D", "Dense", "BatchNormalization", "Dense"]


def test_pretrained_inception_base_starts_frozen(tmp_path):
    weights = tmp_path / "notop.weights.h5"
    build_model("inceptionv3", 75, weights="none").get_layer("inception_v3").save_weights(weights)
    model = build_model("inceptionv3", 75, weights=str(weights))
    head = _dense(2048, 128) + 2 * 128 + _dense(128, 1)  # BatchNorm: gamma and beta train
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == head
    unfreeze_base(model)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 22_031_009


def test_augmentation_only_while_training():
    model = build_model("cnn", 32)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    inference = [keras.ops.convert_to_numpy(model(x, training=False)) for _ in range(2)]
    assert np.array_equal(*inference)
    augmented = keras.ops.convert_to_numpy(model.get_layer("augment_flip")(
        model.get_layer("augment_zoom")(x, training=True), training=True))
    assert not np.allclose(augmented, x)


def test_scanner_geometry_only_while_training():
    """Rotation, shift and zoom; no vertical flip (no scanner makes an upside-down film)."""
    model = build_model("cnn", 32, augment="scanner")
    names = [layer.name for layer in model.layers if layer.name.startswith("augment_")]
    assert names == ["augment_rotate", "augment_shift", "augment_zoom"]
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    assert np.array_equal(*[keras.ops.convert_to_numpy(model(x, training=False)) for _ in range(2)])
    moved = x
    for name in names:
        moved = model.get_layer(name)(moved, training=True)
    assert not np.allclose(keras.ops.convert_to_numpy(moved), x)


def test_intensity_jitter_is_seeded_per_film_and_keeps_each_films_order():
    """Gamma, contrast and brightness are monotone: a film's darker pixel stays no lighter."""
    film = np.random.default_rng(1).uniform(0, 255, (1, 8, 8, 3)).astype("float32")
    x = np.repeat(film, 6, axis=0)
    a, b = IntensityJitter(5)(x), IntensityJitter(5)(x)
    assert np.array_equal(a, b) and not np.array_equal(a, IntensityJitter(6)(x))
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 255
    assert len({f.tobytes() for f in a}) == len(x)  # the same film, each copy its own draw
    for before, after in zip(x.reshape(len(x), -1), a.reshape(len(a), -1)):
        assert np.all(np.diff(after[np.argsort(before)]) >= 0)


def test_cosine_schedule_warms_up_then_decays_with_adamw_and_smoothing():
    model = build_model("cnn", 32)
    compile_model(model, 1e-3, "cosine", 0.1, steps_per_epoch=10, epochs=5)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    rate = model.optimizer._learning_rate  # the schedule itself
    at = [float(keras.ops.convert_to_numpy(rate(step))) for step in (0, 5, 10, 30, 50)]
    assert at[0] == pytest.approx(1e-4) and at[1] == pytest.approx(5.5e-4)
    assert at[2] == pytest.approx(1e-3) and at[2] > at[3] > at[4] == pytest.approx(1e-5)
    assert model.loss.get_config()["label_smoothing"] == 0.1
    compile_model(model, 1e-3)
    assert type(model.optimizer) is keras.optimizers.Adam
    with pytest.raises(ValueError, match="unknown schedule"):
        compile_model(model, 1e-3, "step")


def test_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        build_model("cnn", 32, augment="mixup")


@pytest.mark.parametrize("arch,size,message", [("resnet", 150, "unknown architecture"),
                                               ("cnn", 16, "at least 32 px"),
                                               ("inceptionv3", 64, "at least 75 px")])
def test_bad_architecture_arguments(arch, size, message):
    with pytest.raises(ValueError, match=message):
        build_model(arch, size, weights="none")


def test_feature_extractor_is_the_penultimate_layer(tmp_path):
    model = build_model("cnn", 40)
    model.save(tmp_path / "m.keras")
    extractor, size = load_feature_extractor(str(tmp_path / "m.keras"))
    assert size == 40 and extractor.output_shape == (None, 64)
