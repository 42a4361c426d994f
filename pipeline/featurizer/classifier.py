"""The classifier on top of the CNN features: weighted logistic regression and its threshold.

Class weights undo the 1:3 normal:pneumonia imbalance during fitting; the decision threshold
is then set on the patient-grouped validation split to reach a target sensitivity, and stored
in the LogisticRegressionModel itself so the saved PipelineModel predicts with it.
"""
from __future__ import annotations

from pyspark.ml.classification import LogisticRegression
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline import config

WEIGHT_COL = "class_weight"


def with_class_weights(df: DataFrame, label_col: str = "label") -> tuple[DataFrame, dict[int, float]]:
    """Add balanced weights ``n / (2 * n_class)``: each class then carries half the loss."""
    counts = {int(r[label_col]): int(r["count"]) for r in df.groupBy(label_col).count().collect()}
    if set(counts) != {0, 1}:
        raise ValueError(f"training needs both classes, found counts {counts}")
    total = sum(counts.values())
    weights = {label: total / (2.0 * n) for label, n in counts.items()}
    col = F.when(F.col(label_col) == 1, weights[1]).otherwise(weights[0])
    return df.withColumn(WEIGHT_COL, col), weights


def make_classifier(max_iter: int = config.LR_MAX_ITER, reg_param: float = config.LR_REG_PARAM,
                    elastic_net: float = config.LR_ELASTIC_NET) -> LogisticRegression:
    return LogisticRegression(featuresCol="features", labelCol="label", weightCol=WEIGHT_COL,
                              maxIter=max_iter, regParam=reg_param, elasticNetParam=elastic_net,
                              family="binomial")


def pneumonia_score(probability_col: str = "probability") -> Column:
    """P(PNEUMONIA) out of Spark's probability vector."""
    return vector_to_array(F.col(probability_col))[1]
