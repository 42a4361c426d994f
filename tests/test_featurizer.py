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


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_bfloat16_features_match_float32(spark, png_dir, name):
    """bfloat16 compute (float32 weights, the same seed) gives the float32 features to cosine
    0.9999, through Spark as in plain Keras with the same policy; and it really runs in
    bfloat16 (the numbers differ)."""
    import keras

    spec = get_model(name)
    files = sorted(png_dir.iterdir())
    x = spec.preprocess()(np.stack([keras.utils.img_to_array(keras.utils.load_img(
        f, target_size=(spec.input_size, spec.input_size), interpolation="bilinear"))
        for f in files]))
    exact = build_backbone(name, "none", "avg", seed=SEED).predict(x, verbose=0)
    keras_bf16 = build_backbone(name, "none", "avg", seed=SEED, precision="bfloat16")
    assert keras_bf16.layers[-1].compute_dtype == "bfloat16"
    plain = np.asarray(keras_bf16.predict(x, verbose=0)).astype(np.float32)
    featurizer = DeepImageFeaturizer(modelName=name, weights=None, seed=SEED, batchSize=2,
                                     precision="bfloat16")
    rows = featurizer.transform(_read(spark, "binaryFile", png_dir)).orderBy("key").collect()
    got = np.stack([r.features.toArray() for r in rows])
    assert _cosine(got, exact).min() >= 0.9999, _cosine(got, exact)
    assert _cosine(got, plain).min() >= 0.9999, _cosine(got, plain)
    assert not np.allclose(got, exact, rtol=1e-6, atol=0)


def test_precision_is_saved_with_the_stage_and_auto_is_decided_when_set(tmp_path, monkeypatch):
    from pipeline.runtime import precision

    DeepImageFeaturizer(weights=None, precision="bfloat16").write().save(str(tmp_path / "f"))
    assert DeepImageFeaturizer.load(str(tmp_path / "f")).getPrecision() == "bfloat16"
    assert DeepImageFeaturizer(weights=None).getPrecision() == "float32"  # as models saved before
    monkeypatch.setattr(precision, "cpu_bf16", lambda: False)
    assert DeepImageFeaturizer(weights=None, precision="auto").getPrecision() == "float32"
    monkeypatch.setattr(precision, "cpu_bf16", lambda: True)
    assert DeepImageFeaturizer(weights=None, precision="auto").getPrecision() == "bfloat16"
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, auto"):
        DeepImageFeaturizer(precision="float16")


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
    assert rows["text.jpeg"].features is None and rows["text.jpeg"].error == "not a JPEG, PNG or DICOM image"


def test_a_worker_model_is_traced_once_for_every_batch_size():
    """Traced when built: a task's short last batch adds no trace in the middle of a job, and
    the features do not depend on how the films were batched."""
    from pipeline.featurizer.transformer import WorkerConfig, _Runner

    runner = _Runner(WorkerConfig("ResNet50", "none", "avg", 3, SEED))
    traced = runner.model.predict_function.experimental_get_tracing_count()
    films = [np.random.default_rng(i).integers(0, 256, (224, 224, 3), np.uint8) for i in range(4)]
    batched = runner.features(films)  # batches of 3 and 1
    assert runner.model.predict_function.experimental_get_tracing_count() == traced
    one_by_one = np.concatenate([runner.features([f]) for f in films])
    assert _cosine(batched, one_by_one).min() >= 0.9999


def test_a_worker_model_is_frozen_out_of_the_per_task_collection(spark):
    """pyspark's daemon collects garbage after every task of a reused worker: the model,
    TensorFlow and Keras, built once, must not be scanned again by each of those collections."""
    from pipeline.featurizer.transformer import WorkerConfig

    cfg = WorkerConfig("VGG16", "none", "avg", 2, SEED)

    def probe(_):
        import gc

        from pipeline.featurizer.transformer import runner_for

        runner_for(cfg)
        gc.collect()
        yield gc.get_freeze_count(), len(gc.get_objects())

    frozen, scanned = spark.sparkContext.parallelize([0], 1).mapPartitions(probe).collect()[0]
    assert frozen > 100_000 and scanned < frozen / 10, (frozen, scanned)
