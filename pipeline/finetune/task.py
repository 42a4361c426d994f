"""The training step as a Spark barrier task: what the driver sends and what the task does.

Data in: the films reach the task as its partition. Spark reads the pixel cache in parallel
and shuffles it into one partition on the task's executor (``pixel_cache.training_rows``)
with its own transport and Hadoop configuration, so the cache may live on any URI scheme and
the task needs no client to read it; the task spools the stream to local Parquet and trains
from there (``pipeline.finetune.data``). The alternatives were worse: WebHDFS reads cover
hdfs:// only; ``SparkFiles`` registers the cache with the whole application, so every
executor would download all of it, and one started after the cache is removed would fail
fetching it. (A weights file, a user's persistent file, does travel with SparkFiles, as the
featurizer ships it.)

Model out: the task writes the kept model into the job's temporary output folder itself,
directly for ``file:`` and through WebHDFS for ``hdfs://`` (``pipeline.fs.task_files``), and
hands back only history and scores: an 89 MB InceptionV3 as a task result overflowed a local
driver's default 1 GB heap. The folder becomes ``--out`` once the driver has added the rest.

Keras is imported only here, inside the task, after the backend (``KERAS_BACKEND``) and the
GPU Spark assigned (``CUDA_VISIBLE_DEVICES``) are set.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import Iterable, Iterator

from pyspark import BarrierTaskContext, SparkFiles

from pipeline.finetune.plan import MODEL_FILE, TrainPlan
from pipeline.fs.task_files import FileTarget, upload

log = logging.getLogger(__name__)


def _prepare_process(backend: str) -> None:
    """Logging to the executor's stderr, the assigned GPU, and the Keras backend."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gpus = BarrierTaskContext.get().resources().get("gpu")
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus.addresses)
        log.info("Spark assigned GPU %s to the training task", ",".join(gpus.addresses))
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise ValueError(f"this Python worker already runs Keras on {keras.backend.backend()}, "
                             f"not {backend}: set spark.python.worker.reuse=false")
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def training_task(plan: TrainPlan, weights_name: str | None, out: FileTarget,
                  rows: Iterable) -> Iterator[dict]:
    """The barrier stage's single task. A ValueError (the inputs are wrong: a weights file that
    does not fit, no ImageNet download, one class only) comes back as ``{"error": reason}`` for
    the driver to report in one line, its traceback in the executor's log; anything else fails
    the task."""
    try:
        _prepare_process(plan.backend)
        from pipeline.finetune.data import spool  # Keras: only after the backend is set
        from pipeline.finetune.fit import fit_and_score

        local_weights = SparkFiles.get(weights_name) if weights_name else None
        with tempfile.TemporaryDirectory(prefix="finetune-") as work:
            films = os.path.join(work, "films.parquet")
            log.info("spooled %d films to %s", spool(rows, films), films)
            model_path = os.path.join(work, MODEL_FILE) if plan.save_model else None
            result = fit_and_score(plan, films, local_weights, model_path)
            if model_path:
                upload(out, model_path, MODEL_FILE)
            yield result
    except ValueError as exc:
        log.exception("training task stopped")
        yield {"error": str(exc)}
