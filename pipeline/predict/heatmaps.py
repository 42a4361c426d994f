"""Where a model looked: class activation maps for both kinds of model predict can score.

- **Featurizer + logistic regression** (average pooling): the class activation map (Zhou et
  al. 2016) is exact. With ``A`` the last convolutional maps and ``w, b`` the regression's
  weights, ``cam[i, j] = w . A[:, i, j] + b``, and because the features are the spatial mean
  of ``A``, ``mean(cam) = w . mean(A) + b`` is the model's logit itself: the map is the score,
  split over the film.
- **Fine-tuned Keras models**: Grad-CAM (Selvaraju et al. 2017) on the last layer with
  spatial maps. Keras 3 has no backend-neutral gradient, so ``_score_and_gradients`` holds
  the one small branch per backend (TensorFlow's tape, ``jax.grad``, torch's autograd); the
  models themselves stay backend-agnostic.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras


def class_activation_maps(maps: np.ndarray, coef: np.ndarray,
                          intercept: float) -> tuple[np.ndarray, np.ndarray]:
    """(logits ``[n]``, maps ``[n, h, w]``) of a logistic regression on average-pooled
    ``maps [n, h, w, c]``; each map's mean is its logit (up to float rounding)."""
    maps = maps.astype(np.float64, copy=False)
    cams = maps @ np.asarray(coef, dtype=np.float64) + intercept
    logits = maps.mean(axis=(1, 2)) @ np.asarray(coef, dtype=np.float64) + intercept
    return logits, cams


def last_spatial_layer(model: "keras.Model") -> "keras.layers.Layer":
    """The last top-level layer whose output still has rows and columns (the last
    convolutional block, or a nested backbone such as InceptionV3)."""
    spatial = [layer for layer in model.layers
               if len(layer._inbound_nodes[0].output_tensors[0].shape) == 4]
    if not spatial:
        raise ValueError(f"{model.name} has no layer with spatial outputs: no Grad-CAM")
    return spatial[-1]


def split_at_maps(model: "keras.Model") -> tuple["keras.Model", "keras.Model"]:
    """(film -> last spatial maps, maps -> score): the same network, cut in two."""
    import keras

    maps = last_spatial_layer(model)._inbound_nodes[0].output_tensors[0]
    return keras.Model(model.inputs, maps), keras.Model(maps, model.outputs[0])


def _score_and_gradients(head: "keras.Model", maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``head(maps)`` and d(score)/d(maps) per film, on whichever backend Keras runs."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(maps)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = tf.cast(head(x, training=False), tf.float32)
        return out.numpy(), tape.gradient(out, x).numpy()
    if backend == "jax":
        import jax

        def total(m):
            out = head(m, training=False).astype("float32")
            return out.sum(), out

        (_, out), grads = jax.value_and_grad(total, has_aux=True)(maps)
        return np.asarray(out), np.asarray(grads)
    if backend == "torch":
        x = keras.ops.convert_to_tensor(maps).requires_grad_(True)  # on Keras' device
        out = head(x, training=False).float()
        out.sum().backward()
        # Keras' own conversion detaches, moves to the CPU and hands bfloat16 over
        return keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(x.grad)
    raise ValueError(f"Grad-CAM does not support the {backend} backend")


def grad_cam(body: "keras.Model", head: "keras.Model",
             films: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores ``[n]``, maps ``[n, h, w]``, each >= 0) for raw RGB ``films``: the maps
    weighted by the spatial mean of the score's gradient, summed over channels, ReLU."""
    import keras

    # convert_to_numpy, not np.asarray: a torch tensor that carries gradients refuses the latter
    maps = keras.ops.convert_to_numpy(body([films], training=False))
    scores, grads = _score_and_gradients(head, maps)
    maps, grads = maps.astype(np.float32), grads.astype(np.float32)
    weights = grads.mean(axis=(1, 2), keepdims=True)
    return scores.reshape(len(films)).astype(np.float64), np.maximum((weights * maps).sum(-1), 0)
