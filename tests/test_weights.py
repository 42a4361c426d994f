"""Weights sources: files for air-gapped clusters, wrong files, and Keras' own 'imagenet'."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from pipeline.featurizer import DeepImageFeaturizer
from pipeline.featurizer.models import build_backbone
from tests.trees import write_image


@pytest.fixture(scope="module")
def images(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    for i in range(3):
        write_image(root / f"{i}.png", 100 + 20 * i, 90, "L", seed=i)
    return spark.read.format("binaryFile").load(str(root)).withColumnRenamed("content", "image")


@pytest.fixture(scope="module")
def trained_backbone(tmp_path_factory):
    """A VGG16 backbone with weights unlike any seed's, saved both ways."""
    model = build_backbone("VGG16", "none", "avg", seed=123)
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in model.get_weights()])
    root = tmp_path_factory.mktemp("weights")
    model.save_weights(root / "vgg16_notop.weights.h5")
    model.save(root / "vgg16_notop.keras")
    # The Keras 2 HDF5 layout: what keras.applications downloads for weights="imagenet" and
    # caches in ~/.keras/models, so what an air-gapped site copies onto its cluster.
    with h5py.File(root / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return model, root


def _features(df) -> np.ndarray:
    return np.stack([r.features.toArray() for r in df.orderBy("path").select("features").collect()])


@pytest.fixture(scope="module")
def references(images, trained_backbone) -> tuple[np.ndarray, np.ndarray]:
    """What every weights file must give (plain Keras with the trained model), and what the
    seed alone gives: computed once for all the file layouts."""
    import keras

    model, _ = trained_backbone
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(
        p[len("file:"):], target_size=(224, 224), interpolation="bilinear"))
        for p in sorted(r.path for r in images.select("path").collect())])
    want = model.predict(keras.applications.vgg16.preprocess_input(x), verbose=0)
    seeded = _features(DeepImageFeaturizer(modelName="VGG16", weights=None, seed=123).transform(images))
    return want, seeded


@pytest.mark.parametrize("fname", ["vgg16_notop.weights.h5", "vgg16_notop.keras",
                                   "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"])
def test_weights_file_is_shipped_and_used(spark, images, trained_backbone, references, fname):
    _, root = trained_backbone
    want, seeded = references
    got = _features(DeepImageFeaturizer(modelName="VGG16", weights=f"file://{root / fname}")
                    .transform(images))
    assert np.allclose(got, want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(got, seeded, atol=1e-3)  # the file's weights, not the seed's


@pytest.mark.parametrize("fname", ["vgg16_notop.weights.h5",
                                   "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"])
def test_weights_for_another_architecture_is_refused(trained_backbone, fname):
    _, root = trained_backbone
    with pytest.raises(ValueError, match="does not fit VGG19"):
        build_backbone("VGG19", str(root / fname), "avg")


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    bogus = tmp_path / "model.keras"
    bogus.write_text("not a model")
    with pytest.raises(ValueError, match="is not a Keras model file"):
        build_backbone("VGG16", str(bogus), "avg")


def test_imagenet_goes_through_keras_own_loader(tmp_path, monkeypatch):
    """Offline (CI, this sandbox) Keras' download must be what fails; online it must load."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    try:
        model = build_backbone("VGG16", "imagenet", "avg")
    except Exception as exc:  # noqa: BLE001 - any download failure is the expected offline path
        assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in str(exc) or \
            "storage.googleapis.com" in str(exc), exc
    else:
        assert any(p.name.startswith("vgg16") for p in (tmp_path / "models").iterdir())
        assert model.output_shape == (None, 512)
