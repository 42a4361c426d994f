"""Naming the device a Keras backend computes on, for benchmark lines and run documents.

The one place that asks a backend library directly: each backend has its own way to list
accelerators, and a timing without the device name means nothing.
"""
from __future__ import annotations

import os


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return f"CPU {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores visible)"
    except OSError:
        pass
    return f"CPU ({os.cpu_count()} cores visible)"


def describe_device(gpu: str | None) -> str:
    """``gpu`` (``accelerator()``), else this CPU, as ``name (backend)``."""
    import keras

    return f"{gpu or _cpu_name()} ({keras.backend.backend()})"


def accelerator() -> str | None:
    """The name of the GPU Keras' backend computes on first; None on a CPU."""
    import keras

    backend = keras.backend.backend()
    name = None
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        name = None if device.platform == "cpu" else device.device_kind
    elif backend == "torch":
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    return name
