"""Networks whose batch normalizations hold what training would leave in them."""
from __future__ import annotations

import numpy as np


def all_layers(model):
    """The model's layers and those of the models nested in it."""
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def trained_statistics(model, seed: int) -> int:
    """Random init leaves every BatchNormalization the identity (mean 0, variance 1, scale 1,
    shift 0), which any fold would keep: give each the statistics training would. Returns
    how many there are."""
    import keras

    rng = np.random.default_rng(seed)
    norms = [layer for layer in all_layers(model)
             if isinstance(layer, keras.layers.BatchNormalization)]
    for norm in norms:
        n = norm.moving_mean.shape[0]
        norm.moving_mean.assign(rng.normal(0, 0.5, n))
        norm.moving_variance.assign(rng.uniform(0.3, 3, n))
        norm.beta.assign(rng.normal(0, 0.2, n))
        if norm.scale:
            norm.gamma.assign(rng.uniform(0.5, 1.5, n))
    return len(norms)
