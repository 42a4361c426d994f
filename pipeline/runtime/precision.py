"""The numeric precision a network computes in: float32, or bfloat16/float16 with float32
weights (Keras' mixed dtype policies), and which one ``auto`` takes on this machine.

bfloat16 keeps float32's exponent range, so it needs no loss scaling and runs where the
hardware has it: on a CPU with AVX512_BF16 or AMX (oneDNN uses them; about 1.6x float32 for
InceptionV3 on our 2-core machines) or a GPU of compute capability 8.0 or later. float16 is
only for older GPUs, and only for training, where Keras adds loss scaling.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import subprocess
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: What a network can compute in; ``auto`` is resolved to one of them (``resolve``).
PRECISIONS = ("float32", "bfloat16", "float16")
CHOICES = (*PRECISIONS, "auto")
#: What a network that only scores may use: float16 is for training on older GPUs (with loss
#: scaling), not for features.
INFERENCE_CHOICES = ("float32", "bfloat16", "auto")
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
#: /proc/cpuinfo flags of the instructions oneDNN runs bfloat16 with.
_CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def check(precision: str, allowed: tuple[str, ...] = CHOICES) -> str:
    if precision not in allowed:
        raise ValueError(f"precision must be one of {', '.join(allowed)}, got {precision!r}")
    return precision


@functools.cache
def cpu_bf16() -> bool:
    """This CPU reports AVX512_BF16 or AMX."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    return bool(_CPU_BF16_FLAGS & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


@functools.cache
def gpu_compute_capability() -> float | None:
    """The first visible NVIDIA GPU's compute capability (nvidia-smi), or None."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
        return float(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def resolve(precision: str, gpu: bool = False, training: bool = False) -> str:
    """``precision``, or for ``auto`` what this machine runs fastest without a loss of range:
    bfloat16 on a bf16 CPU (or a GPU of compute capability 8+ when ``gpu``), float16 when
    ``training`` on an older GPU, float32 elsewhere. Logs the choice and why."""
    if check(precision) != "auto":
        return precision
    capability = gpu_compute_capability() if gpu else None
    if capability is not None:
        chosen = "bfloat16" if capability >= 8.0 else ("float16" if training else "float32")
        why = f"GPU compute capability {capability}"
    else:
        chosen = "bfloat16" if cpu_bf16() else "float32"
        why = "the CPU " + ("reports" if chosen == "bfloat16" else "lacks") + " AVX512_BF16/AMX"
    log.info("precision auto: %s (%s)", chosen, why)
    return chosen


@contextlib.contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Keras layers built inside compute in ``precision`` (weights stay float32); the previous
    global policy is restored after."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[check(precision, PRECISIONS)])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
