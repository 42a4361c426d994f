"""The CLAHE rule (pipeline.data.preprocess): what it does to a film, and that the featurizer,
fine-tuning's pixel cache and predict feed a network the very same equalised pixels."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.data.images import decode_bytes
from pipeline.data.preprocess import equalize, model_input
from pipeline.finetune.pixel_cache import _decoder

SIZE = 32


def _film(seed: int, side: int = 64) -> bytes:
    """A low-contrast gray PNG (values squeezed into 100..140): what CLAHE is for."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(100, 140, side)[None, :] + rng.normal(0, 3, (side, side))
    buf = io.BytesIO()
    Image.fromarray(np.clip(ramp, 0, 255).astype(np.uint8), mode="L").save(buf, "PNG")
    return buf.getvalue()


def test_equalize_is_deterministic_keeps_shape_and_dtype_and_spreads_contrast():
    rgb = decode_bytes(_film(1), SIZE)
    out = equalize(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out, equalize(rgb.copy()))
    assert (out[:, :, 0] == out[:, :, 1]).all() and (out[:, :, 1] == out[:, :, 2]).all()
    assert np.ptp(out) > 2 * np.ptp(rgb)  # the squeezed histogram is spread out
    assert not np.array_equal(out, rgb)


def test_equalize_refuses_what_is_not_uint8_rgb():
    with pytest.raises(ValueError, match="uint8 RGB"):
        equalize(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        equalize(np.zeros((8, 8), dtype=np.uint8))


def test_model_input_equalises_only_when_asked():
    rgb = decode_bytes(_film(2), SIZE)
    assert model_input(rgb, False) is rgb
    assert np.array_equal(model_input(rgb, True), equalize(rgb))


def test_featurizer_and_pixel_cache_feed_the_same_equalised_pixels(spark, tmp_path):
    """A model file whose penultimate layer is the flattened input makes the featurizer's
    features the very pixels it fed the network: they must equal the pixel cache's."""
    import keras

    from pipeline.featurizer import DeepImageFeaturizer

    films = [_film(seed) for seed in range(3)]
    inputs = keras.Input((SIZE, SIZE, 3))
    flat = keras.layers.Flatten()(inputs)
    keras.Model(inputs, keras.layers.Dense(1)(flat)).save(tmp_path / "flat.keras")
    frame = spark.createDataFrame(pd.DataFrame({"content": films}))
    cached = next(_decoder(SIZE, True)(iter([pd.DataFrame({"image": films})])))
    for clahe in (True, False):
        featurizer = DeepImageFeaturizer(inputCol="content", outputCol="features",
                                         modelFile=str(tmp_path / "flat.keras"), clahe=clahe)
        got = [np.asarray(r["features"].toArray()) for r in featurizer.transform(frame).collect()]
        for film, features, pixels in zip(films, got, cached["pixels"]):
            expected = model_input(decode_bytes(film, SIZE), clahe).astype(np.float32).ravel()
            assert np.array_equal(features, expected)
            if clahe:
                assert np.array_equal(np.frombuffer(pixels, dtype=np.uint8), expected)


def test_clahe_is_stored_with_the_featurizer(tmp_path):
    from pipeline.featurizer import DeepImageFeaturizer

    DeepImageFeaturizer(weights="none", clahe=True, inputSize=150).save(str(tmp_path / "f"))
    loaded = DeepImageFeaturizer.load(str(tmp_path / "f"))
    assert loaded.worker_config().clahe and loaded.worker_config().input_size == 150
