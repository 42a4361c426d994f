"""Driver-side decisions of the fine-tuning job: the threshold source, GPU requests, weights."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark import SparkConf

from pipeline.finetune.barrier import gpu_profile, wants_gpu
from pipeline.data.dataset import META_SCHEMA, Listing
from pipeline.data.rules import Skipped
from pipeline.finetune.job import evaluate_scores, sample_listing
from pipeline.finetune.fit import class_weights
from pipeline.report.metrics import threshold_for_sensitivity


def _result(val_scores, test_scores) -> dict:
    rng = np.random.default_rng(0)
    def part(scores):
        return {"path": [f"p{i}" for i in range(len(scores))], "score": list(scores),
                "label": [float(x) for x in rng.integers(0, 2, len(scores))]}
    return {"scores": {"validation": part(val_scores), "test": part(test_scores)}}


def test_threshold_comes_from_validation_only():
    rng = np.random.default_rng(1)
    val = rng.uniform(size=60)
    base = _result(val, rng.uniform(size=40))
    threshold, val_metrics, test_scores = evaluate_scores(base, "test", 0.95)
    v = base["scores"]["validation"]
    assert threshold == threshold_for_sensitivity(v["label"], v["score"], 0.95)
    assert val_metrics["sensitivity"] >= 0.95
    assert list(test_scores["score"]) == base["scores"]["test"]["score"]
    other_test = _result(val, rng.uniform(size=40) ** 3)
    assert evaluate_scores(other_test, "test", 0.95)[0] == threshold
    other_val = _result(val ** 2, base["scores"]["test"]["score"])
    assert evaluate_scores(other_val, "test", 0.95)[0] != threshold


def test_validation_split_reports_the_validation_metrics():
    result = _result(np.linspace(0, 1, 30), [0.5] * 5)
    _, val_metrics, scored = evaluate_scores(result, "validation", 0.9)
    assert list(scored["score"]) == result["scores"]["validation"]["score"]
    assert val_metrics["counts"]["total"] == 30


def test_class_weights_balance_the_classes():
    weights = class_weights({0: 1341, 1: 3875})
    assert weights[0] * 1341 == pytest.approx(weights[1] * 3875) == pytest.approx(5216 / 2)
    with pytest.raises(ValueError, match="both classes"):
        class_weights({0: 0, 1: 10})


def test_gpu_request_follows_what_the_cluster_offers(spark):
    none, offered = SparkConf(loadDefaults=False), SparkConf(loadDefaults=False)
    offered.set("spark.executor.resource.gpu.amount", "1").set("spark.executor.cores", "4")
    assert not wants_gpu(none, "auto") and wants_gpu(offered, "auto")
    assert not wants_gpu(offered, "off") and wants_gpu(offered, "on")
    with pytest.raises(ValueError, match="offers no GPU.*gpu-discovery.sh"):
        wants_gpu(none, "on")
    profile = gpu_profile(offered)
    task = profile.taskResources
    assert task["gpu"].amount == 1.0 and task["cpus"].amount == 4.0 and not profile.executorResources
    offered.set("spark.dynamicAllocation.enabled", "true")
    executor = gpu_profile(offered).executorResources
    assert executor["gpu"].amount == 1 and executor["gpu"].discoveryScript.endswith("gpu-discovery.sh")


def test_sampling_a_listing_keeps_its_skipped_files_and_warnings(spark):
    images = pd.DataFrame({"path": [f"p{i}" for i in range(6)], "split": ["train"] * 6,
                           "label": [0.0, 1.0] * 3, "patient_id": [f"x{i}" for i in range(6)],
                           "is_val": [False] * 6})
    listing = Listing("file:/t", spark.createDataFrame(images, META_SCHEMA), [Skipped("file:/t/.a", "hidden file or folder")],
                      ["file:/t/test/NORMAL: class folder missing"])
    sampled = sample_listing(listing, 4, seed=1)
    assert sampled.images.count() == 4
    assert sampled.skipped == listing.skipped and sampled.warnings == listing.warnings
