"""What ``auto`` chooses, and the dtype policy a network is built under."""
from __future__ import annotations

import keras
import pytest

from pipeline.runtime import precision


@pytest.mark.parametrize("cpu,gpu,training,chosen", [
    (True, None, False, "bfloat16"),   # AVX512_BF16/AMX CPU
    (False, None, False, "float32"),
    (False, 8.0, False, "bfloat16"),   # Ampere and later
    (True, 7.0, False, "float32"),     # an older GPU: no bfloat16, no float16 for inference
    (True, 7.0, True, "float16"),      # ... but float16 training, with loss scaling
])
def test_auto_chooses_by_hardware(monkeypatch, cpu, gpu, training, chosen):
    monkeypatch.setattr(precision, "cpu_bf16", lambda: cpu)
    monkeypatch.setattr(precision, "gpu_compute_capability", lambda: gpu)
    assert precision.resolve("auto", gpu=gpu is not None, training=training) == chosen


def test_explicit_choices_are_kept_and_others_refused():
    assert precision.resolve("float32") == "float32" and precision.resolve("bfloat16") == "bfloat16"
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve("int8")


def test_this_cpu_is_read_from_proc_cpuinfo():
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    assert precision.cpu_bf16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))


def test_policy_applies_inside_and_is_restored():
    before = keras.config.dtype_policy().name
    with precision.dtype_policy("bfloat16"):
        layer = keras.layers.Dense(2)
        assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"
    assert keras.config.dtype_policy().name == before
