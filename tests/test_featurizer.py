"""DeepImageFeaturizer against plain Keras, one test per named model, both readers."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.featurizer import DeepImageFeaturizer
from pipeline.featurizer.models import REGISTRY, build_backbone, get_model
from tests.trees import write_image

SEED = 7


@pytest.fixture(scope="module")
def png_dir(tmp_path_factory):
    """Lossless PNGs, so the JVM's ImageIO and Pillow decode identical pixels."""
    root = tmp_path_factory.mktemp("pngs")
    write_image(root / "a_gray.png", 180, 210, "L", seed=1)
    write_image(root / "b_rgb.png", 320, 300, "RGB", seed=2)
    write_image(root / "c_rgba.png", 240, 240, "RGBA", seed=3)
    return root


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _read(spark, reader: str, root):
    df = spark.read.format(reader).load(str(root))
    if reader == "binaryFile":
        return df.select(df.path.alias("key"), df.content.alias("image"))
    return df.select(df.image.origin.alias("key"), "image")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_matches_plain_keras(spark, png_dir, name):
    import keras

    spec = get_model(name)
    files = sorted(png_dir.iterdir())
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(
        f, target_size=(spec.input_size, spec.input_size), interpolation="bilinear")) for f in files])
    model = build_backbone(name, "none", "avg", seed=SEED)
    expected = model.predict(spec.preprocess()(x), verbose=0)

    featurizer = DeepImageFeaturizer(modelName=name, weights=None, seed=SEED, batchSize=2)
    for reader in ("binaryFile", "image"):
        rows = featurizer.transform(_read(spark, reader, png_dir)).orderBy("key").collect()
        got = np.stack([r.features.toArray() for r in rows])
        assert [r.key.rsplit("/", 1)[1] for r in rows] == [f.name for f in files]
        assert got.shape == expected.shape
        assert _cosine(got, expected).min() >= 0.9999, (reader, _cosine(got, expected))


def test_unknown_model_lists_supported():
    with pytest.raises(ValueError, match="InceptionV3.*VGG19|supported: .*ResNet50"):
        DeepImageFeaturizer(modelName="AlexNet")


def test_bad_rows_get_null_and_reason(spark, tmp_path):
    write_image(tmp_path / "good.png", 64, 64, "L")
    (tmp_path / "text.jpeg").write_text("not an image")
    df = spark.read.format("binaryFile").load(str(tmp_path)).withColumnRenamed("content", "image")
    out = DeepImageFeaturizer(modelName="VGG16", weights=None, errorCol="error").transform(df)
    rows = {r.path.rsplit("/", 1)[1]: r for r in out.select("path", "features", "error").collect()}
    assert rows["good.png"].features is not None and rows["good.png"].error is None
    assert rows["text.jpeg"].features is None and rows["text.jpeg"].error == "not a JPEG or PNG image"
