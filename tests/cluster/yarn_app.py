"""A tiny PySpark job for the YARN tests: writes rows to HDFS, reads them back through a
Python UDF (so executors run Python workers), and checks the result.

    spark-submit --master yarn tests/cluster/yarn_app.py hdfs:///tmp/<dir>
"""
from __future__ import annotations

import sys

from pyspark.sql import SparkSession, functions as F, types as T


def main(out: str) -> None:
    spark = SparkSession.builder.appName("xray-cluster-yarn-check").getOrCreate()
    spark.range(1000).withColumn("label", F.col("id") % 2).write.mode("overwrite").parquet(out)
    square = F.udf(lambda v: v * v, T.LongType())
    back = spark.read.parquet(out).select(square("id").alias("sq"), "label")
    rows = back.agg(F.count("*").alias("n"), F.sum("sq").alias("total")).first()
    expected = sum(i * i for i in range(1000))
    if rows.n != 1000 or rows.total != expected:
        raise SystemExit(f"wrong result: {rows} (expected 1000 rows, sum {expected})")
    print(f"yarn-app-ok {spark.sparkContext.applicationId} rows={rows.n}")
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
