# The Spark History Server: the cluster image plus pyspark's own jars (the same Spark that
# submits the jobs), staged by pipeline/cluster/docker.py. One extra layer.
ARG BASE
FROM ${BASE}
COPY spark-jars/ /opt/spark/jars/
