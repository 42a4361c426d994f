"""Batch normalization folded into convolutions: the same outputs, and only exact folds."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.featurizer.folding import fold_batch_norms
from pipeline.featurizer.models import REGISTRY, build_backbone, get_model
from tests.batchnorm import all_layers, trained_statistics


def _close(a: np.ndarray, b: np.ndarray) -> float:
    """The largest difference, relative to the largest output."""
    return float(np.abs(a - b).max() / np.abs(a).max())


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_named_models_batch_norms_fold_to_the_same_outputs(name):
    """Each registry model folds every one of its batch normalizations (InceptionV3 after
    plain convolutions, Xception also after separable ones, ResNet50 into convolutions with
    a bias; the VGGs have none), and its spatial outputs stay those of the unfolded network."""
    import keras

    model = build_backbone(name, "none", "none", seed=3)
    norms = trained_statistics(model, seed=4)
    folded, folds = fold_batch_norms(model)
    assert folds == norms and (name.startswith("VGG")) == (norms == 0)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    size = get_model(name).input_size
    x = np.random.default_rng(5).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    assert _close(model.predict_on_batch(x), folded.predict_on_batch(x)) < 1e-4


def test_only_exact_folds_are_made():
    """A normalization after a ReLU, of a convolution whose output is also used elsewhere, or
    by the batch's own statistics is not a convolution's affine tail: those stay. A folded one that is a model output
    hands the output to its convolution."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    image = keras.Input((12, 12, 3))
    plain = layers.BatchNormalization(name="plain")(layers.Conv2D(4, 3, name="c1")(image))
    after_relu = layers.BatchNormalization(name="after_relu")(
        layers.Conv2D(4, 3, activation="relu", name="c2")(image))
    shared_conv = layers.Conv2D(4, 3, name="c3")(image)
    shared = layers.BatchNormalization(name="shared")(shared_conv)
    by_batch = layers.BatchNormalization(name="by_batch")(layers.Conv2D(4, 3, name="c4")(image),
                                                          training=True)
    other_policy = layers.BatchNormalization(name="other_policy", dtype="float32")(
        layers.Conv2D(4, 3, name="c5", dtype="mixed_bfloat16")(image))
    joined = layers.Concatenate()([plain, after_relu, shared, shared_conv, by_batch,
                                   layers.Activation("linear", dtype="float32")(other_policy)])
    model = keras.Model(image, {"joined": joined, "plain": plain})
    assert trained_statistics(model, seed=2) == 5
    folded, folds = fold_batch_norms(model)
    assert folds == 1
    names = {layer.name for layer in folded.layers}
    assert names >= {"after_relu", "shared", "by_batch", "other_policy"} and "plain" not in names
    x = np.random.default_rng(3).uniform(-1, 1, (2, 12, 12, 3)).astype(np.float32)
    want, got = model.predict_on_batch(x), folded.predict_on_batch(x)
    assert set(got) == {"joined", "plain"}
    for key in want:
        assert _close(want[key], got[key]) < 1e-5


def test_a_model_that_cannot_be_rebuilt_runs_unfolded(caplog):
    """Folding only speeds a network up: a graph Keras will not rebuild from its config (a
    Python lambda, refused in safe mode) comes back as it is, with a warning."""
    import keras
    from keras import layers

    image = keras.Input((8, 8, 3))
    x = layers.BatchNormalization()(layers.Conv2D(2, 3)(image))
    model = keras.Model(image, layers.Lambda(lambda t: t * 2)(x))
    with caplog.at_level("WARNING", logger="pipeline.featurizer.folding"):
        assert fold_batch_norms(model) == (model, 0)
    assert "without folding its batch normalizations" in caplog.text


def test_the_reports_cnn_is_left_as_it_is():
    """The report's CNN normalizes after each block's ReLU: nothing to fold, the very model
    comes back."""
    from pipeline.finetune.models import build_cnn

    model = build_cnn(64)
    assert fold_batch_norms(model) == (model, 0)


def test_a_fine_tuned_networks_base_is_folded_inside():
    """The report's InceptionV3 nests Keras' InceptionV3 as its base: its 94 normalizations
    fold there, the one after the Dense head stays, and the scores do not move."""
    import keras

    from pipeline.finetune.models import build_model

    model = build_model("inceptionv3", 75, seed=6)
    assert trained_statistics(model, seed=7) == 95
    folded, folds = fold_batch_norms(model)
    assert folds == 94
    assert sum(isinstance(layer, keras.layers.BatchNormalization)
               for layer in all_layers(folded)) == 1
    x = np.random.default_rng(8).uniform(0, 255, (3, 75, 75, 3)).astype(np.float32)
    assert _close(model.predict_on_batch(x), folded.predict_on_batch(x)) < 1e-4
