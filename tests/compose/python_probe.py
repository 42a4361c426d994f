"""spark-submit --master yarn tests/compose/python_probe.py: each executor's Python worker
reports its host, interpreter and where it imported TensorFlow and ``pipeline`` from, one
``probe`` line each.
The session is the jobs' own (pipeline.runtime.session), so the environment is shipped the way
the jobs ship it."""
from __future__ import annotations

import json
import logging

from pipeline.runtime.session import get_session


def where(_rows):
    import os
    import socket
    import sys

    import tensorflow

    import pipeline

    yield json.dumps({"host": socket.gethostname(), "executable": sys.executable,
                      "base": sys.base_prefix, "tensorflow": tensorflow.__file__,
                      "tensorflow_real": os.path.realpath(tensorflow.__file__),
                      "pipeline": pipeline.__file__})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)  # pipeline.cluster.pyenv says what it shipped
    spark = get_session("xray-python-probe")
    for line in sorted(set(spark.sparkContext.parallelize(range(4), 4)
                           .mapPartitions(where).collect())):
        print("probe", line)
    spark.stop()
