"""The fine-tuning job on the JAX and PyTorch backends: same code, other Keras backend.

The job runs in a fresh process (a Keras backend is fixed at import), and its model.keras is
then loaded here, on TensorFlow, and must give the scores the other backend reported. A
second process on that backend computes Grad-CAM (predict's heatmaps: the one place with a
branch per backend, for the gradient) on some of the films; TensorFlow's must match it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

from pipeline.config import REPO_ROOT
from pipeline.data.images import decode_bytes
from pipeline.data.sample_data import write_tree
from pipeline.predict.heatmaps import _score_and_gradients, grad_cam, split_at_maps


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_job_trains_on_backend(tmp_path, backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install -e '.[{backend}]')")
    write_tree(tmp_path / "data", scale=1, seed=8)
    env = {**os.environ, "KERAS_BACKEND": backend, "PYSPARK_PYTHON": sys.executable,
           "PYTHONPATH": str(REPO_ROOT), "SPARK_LOCAL_IP": "127.0.0.1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "jobs" / "finetune.py"), "--arch", "cnn",
         "--data", str(tmp_path / "data"), "--out", str(out), "--epochs", "2", "--image-size", "32",
         "--max-images", "40", "--batch-size", "8", "--master", "local[2]"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["training"]["backend"] == backend and doc["training"]["epochs_run"] == 2
    assert f"({backend})" in doc["training"]["device"]
    predictions = pd.read_csv(out / "predictions.csv", float_precision="round_trip")
    model = keras.saving.load_model(out / "model.keras", compile=False)
    x = np.stack([decode_bytes(open(p.removeprefix("file:"), "rb").read(), 32)
                  for p in predictions["path"]]).astype("float32")
    assert np.allclose(model.predict(x, verbose=0).reshape(-1), predictions["score"], atol=1e-4)

    np.save(tmp_path / "films.npy", x[:6])
    cam = subprocess.run([sys.executable, "-c", GRAD_CAM, str(out / "model.keras"),
                          str(tmp_path / "films.npy"), str(tmp_path / "cam.npz")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert cam.returncode == 0, cam.stderr[-4000:]
    theirs = np.load(tmp_path / "cam.npz")
    assert str(theirs["backend"]) == backend
    body, head = split_at_maps(model)
    scores, maps = grad_cam(body, head, x[:6])
    grads = _score_and_gradients(head, keras.ops.convert_to_numpy(body(x[:6])))[1].astype("float32")
    assert np.abs(grads).max() > 0  # the comparison below is not of zeros
    assert np.allclose(theirs["grads"], grads, atol=1e-3 * np.abs(grads).max())
    assert np.allclose(theirs["scores"], scores, atol=1e-4)
    assert np.allclose(theirs["maps"], maps, atol=1e-3 * max(maps.max(), 1e-6))


#: Grad-CAM on the backend KERAS_BACKEND names: model, films (.npy) -> its scores, maps and
#: the score's gradient with respect to the maps (.npz).
GRAD_CAM = """
import sys, keras, numpy as np
from pipeline.predict.heatmaps import _score_and_gradients, grad_cam, split_at_maps
body, head = split_at_maps(keras.saving.load_model(sys.argv[1], compile=False))
films = np.load(sys.argv[2])
scores, maps = grad_cam(body, head, films)
grads = _score_and_gradients(head, keras.ops.convert_to_numpy(body(films)))[1]
np.savez(sys.argv[3], scores=scores, maps=maps, grads=grads.astype("float32"),
         backend=keras.backend.backend())
"""
