"""DeepImageFeaturizer: sparkdl's transfer-learning featurizer on Spark 4 and Keras 3.

A Spark ML Transformer that runs a headless CNN over an image column and emits a feature
vector per row. It takes either Spark's image-source struct or raw file bytes (``binaryFile``),
batches rows through one model per Python worker, and persists with the rest of a
PipelineModel.
"""
from __future__ import annotations

import gc
import logging
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Hashable, Iterator, TypeVar

import numpy as np
import pandas as pd
from pyspark import SparkFiles, TaskContext, keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol, HasSeed
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import ArrayType, BinaryType, FloatType, StringType, StructField, StructType

from pipeline import config
from pipeline.data.images import decode_bytes, struct_to_rgb
from pipeline.data.preprocess import model_input
from pipeline.data.rules import ImageError
from pipeline.featurizer.folding import fold_batch_norms
from pipeline.featurizer.models import (IMAGENET, NO_WEIGHTS, build_backbone, get_model,
                                       load_feature_extractor)
from pipeline.runtime import precision as precision_
from pipeline.fs.storage import HadoopFS

log = logging.getLogger(__name__)
T = TypeVar("T")

POOLINGS = ("avg", "max", "none")

_RESULT = StructType([
    StructField("features", ArrayType(FloatType())),
    StructField("error", StringType()),
])


def _to_weights(value: object) -> str:
    """``None`` (Keras' spelling of random init) is stored as ``"none"`` so it persists."""
    return NO_WEIGHTS if value is None else TypeConverters.toString(value)


def _to_precision(value: object) -> str:
    """Every way a value reaches the param (constructor, ``set``, ``copy``, loading) comes
    through here, so ``auto`` is decided here, once, on the driver, and stored."""
    return precision_.resolve(precision_.check(TypeConverters.toString(value),
                                               precision_.INFERENCE_CHOICES))


def _to_pooling(value: object) -> str:
    pooling = "none" if value is None else TypeConverters.toString(value)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    return pooling


class DeepImageFeaturizer(Transformer, HasInputCol, HasOutputCol, HasSeed,
                          DefaultParamsReadable, DefaultParamsWritable):
    """Features from a named ImageNet CNN with its classifier removed.

    Output rows whose image cannot be decoded get a null vector, and the reason in
    ``errorCol`` when that is set, so one bad file never fails a job over thousands.
    """

    #: Saved PipelineModels name the stage by its class's module: keep the public path that
    #: models saved before the package layout named (and that users import) stable.
    __module__ = "pipeline.featurizer"

    modelName = Param(Params._dummy(), "modelName", "named CNN from the registry",
                      typeConverter=TypeConverters.toString)
    weights = Param(Params._dummy(), "weights",
                    "'imagenet', 'none' (random init from seed) or a weights/.keras file URI",
                    typeConverter=_to_weights)
    pooling = Param(Params._dummy(), "pooling",
                    "'avg' or 'max' global pooling, or 'none' for sparkdl's flattened maps",
                    typeConverter=_to_pooling)
    batchSize = Param(Params._dummy(), "batchSize", "images per model call",
                      typeConverter=TypeConverters.toInt)
    errorCol = Param(Params._dummy(), "errorCol",
                     "column for the reason a row has no features ('' for none)",
                     typeConverter=TypeConverters.toString)
    modelFile = Param(Params._dummy(), "modelFile",
                      "a .keras classifier (local or Hadoop URI) whose penultimate layer gives the "
                      "features, fed raw 0-255 RGB at its own input size; replaces modelName "
                      "('' for none)", typeConverter=TypeConverters.toString)
    precision = Param(Params._dummy(), "precision",
                      "'float32', 'bfloat16' (float32 weights, bfloat16 compute: faster where the "
                      "hardware has it) or 'auto' (chosen on this machine when set, and stored)",
                      typeConverter=_to_precision)
    draftDecode = Param(Params._dummy(), "draftDecode",
                        "decode a JPEG at least twice the input size straight to near that size "
                        "(libjpeg DCT scaling) instead of in full", typeConverter=TypeConverters.toBoolean)
    clahe = Param(Params._dummy(), "clahe",
                  "equalise each film's contrast (pipeline.data.preprocess) before the network",
                  typeConverter=TypeConverters.toBoolean)
    inputSize = Param(Params._dummy(), "inputSize",
                      "side in px the named model is built for and films are resized to (0: the "
                      "model's own)", typeConverter=TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, inputCol: str = "image", outputCol: str = "features",
                 modelName: str = config.DEFAULT_MODEL, weights: str | None = IMAGENET,
                 pooling: str = config.DEFAULT_POOLING, batchSize: int = config.DEFAULT_BATCH_SIZE,
                 errorCol: str = "", seed: int = config.SEED, modelFile: str = "",
                 precision: str = "float32", draftDecode: bool = config.DRAFT_DECODE,
                 clahe: bool = False, inputSize: int = 0) -> None:
        super().__init__()
        self._setDefault(inputCol="image", outputCol="features", modelName=config.DEFAULT_MODEL,
                         weights=IMAGENET, pooling=config.DEFAULT_POOLING,
                         batchSize=config.DEFAULT_BATCH_SIZE, errorCol="", seed=config.SEED,
                         modelFile="", precision="float32", draftDecode=config.DRAFT_DECODE,
                         clahe=False, inputSize=0)
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str = "image", outputCol: str = "features",
                  modelName: str = config.DEFAULT_MODEL, weights: str | None = IMAGENET,
                  pooling: str = config.DEFAULT_POOLING, batchSize: int = config.DEFAULT_BATCH_SIZE,
                  errorCol: str = "", seed: int = config.SEED, modelFile: str = "",
                  precision: str = "float32", draftDecode: bool = config.DRAFT_DECODE,
                  clahe: bool = False, inputSize: int = 0) -> "DeepImageFeaturizer":
        kwargs = dict(self._input_kwargs)
        if "weights" in kwargs:  # Params._set skips the converter for None
            kwargs["weights"] = _to_weights(kwargs["weights"])
        if "modelName" in kwargs:
            get_model(kwargs["modelName"])  # fail at construction, listing the valid names
        return self._set(**kwargs)

    def getModelName(self) -> str:
        return self.getOrDefault(self.modelName)

    def getWeights(self) -> str:
        return self.getOrDefault(self.weights)

    def getPooling(self) -> str:
        return self.getOrDefault(self.pooling)

    def getBatchSize(self) -> int:
        return self.getOrDefault(self.batchSize)

    def getErrorCol(self) -> str:
        return self.getOrDefault(self.errorCol)

    def getModelFile(self) -> str:
        return self.getOrDefault(self.modelFile)

    def getPrecision(self) -> str:
        return self.getOrDefault(self.precision)

    def getDraftDecode(self) -> bool:
        return self.getOrDefault(self.draftDecode)

    def worker_config(self) -> "WorkerConfig":
        """Everything a Python worker needs to rebuild this featurizer's model."""
        return WorkerConfig(self.getModelName(), self.getWeights(), self.getPooling(),
                            self.getBatchSize(), self.getOrDefault(self.seed),
                            self.getModelFile(), self.getPrecision(), self.getDraftDecode(),
                            self.getOrDefault(self.clahe), self.getOrDefault(self.inputSize))

    def check_weights(self, spark: SparkSession) -> None:
        """Load a weights file into the backbone once, here on the driver: a file for another
        architecture, or no weights file at all, then fails the job in seconds with one line
        instead of in every task attempt on the executors. Nothing to do for "imagenet" and
        "none"."""
        cfg = self.worker_config()
        if cfg.weights in (IMAGENET, NO_WEIGHTS):
            return
        with tempfile.TemporaryDirectory() as local:
            path = Path(local) / os.path.basename(cfg.weights)
            HadoopFS(spark, cfg.weights).copy_to_local(cfg.weights, path)
            build_backbone(cfg.model_name, cfg.weights, cfg.pooling, cfg.seed, str(path))

    def shipped_worker_config(self, spark: SparkSession) -> "WorkerConfig":
        """``worker_config`` with its files shipped to the executors (``addFile``): what a
        task needs to build this featurizer's network, here or in another job's UDF."""
        cfg = self.worker_config()
        get_model(cfg.model_name)
        if cfg.weights not in (IMAGENET, NO_WEIGHTS):
            spark.sparkContext.addFile(cfg.weights)
        if cfg.model_file:
            cfg = replace(cfg, model_file=stage_model_file(spark, cfg.model_file))
        return cfg

    def _transform(self, dataset: DataFrame) -> DataFrame:
        cfg = self.shipped_worker_config(dataset.sparkSession)
        in_type = dataset.schema[self.getInputCol()].dataType
        if isinstance(in_type, BinaryType):
            udf = _bytes_udf(cfg)
        elif isinstance(in_type, StructType) and "data" in in_type.fieldNames():
            udf = _struct_udf(cfg)
        else:
            raise ValueError(f"inputCol {self.getInputCol()!r} must be an image struct or binary, "
                             f"not {in_type.simpleString()}")
        tmp = f"__{self.uid}_result"
        # Non-deterministic keeps Spark from inlining the UDF into both field extractions below,
        # which would run the CNN twice.
        out = dataset.withColumn(tmp, udf.asNondeterministic()(F.col(self.getInputCol())))
        feats = F.col(tmp)["features"]
        out = out.withColumn(self.getOutputCol(), F.when(feats.isNotNull(), array_to_vector(feats)))
        if self.getErrorCol():
            out = out.withColumn(self.getErrorCol(), F.col(tmp)["error"])
        return out.drop(tmp)


@dataclass(frozen=True)
class WorkerConfig:
    model_name: str
    weights: str
    pooling: str
    batch_size: int
    seed: int
    model_file: str = ""
    precision: str = "float32"
    draft_decode: bool = False
    clahe: bool = False
    input_size: int = 0


class _Runner:
    """One model per Python worker: built on first use, reused by every later task.

    Keras traces its predict function once per input shape until a second shape makes
    TensorFlow relax the batch dimension; a task's last batch is usually short, so an untraced
    network traced twice mid-job (seconds each on a loaded 2-core machine, in the first
    small job's wall time). ``_trace`` does both traces at build, on 1 and 2 blank films, so
    every later batch size reuses one graph. The network runs with its batch normalizations
    folded into the convolutions before them (``folding``): the same features in 0.4 of the
    time in bfloat16, 0.86 in float32.
    """

    def __init__(self, cfg: WorkerConfig) -> None:
        started = time.monotonic()
        self.cfg = cfg
        if cfg.model_file:
            model, self.size = load_feature_extractor(_local(cfg.model_file))
            self.preprocess = np.asarray  # the model rescales raw RGB itself
            what = f"loaded {cfg.model_file} ({self.size} px)"
        else:
            spec = get_model(cfg.model_name)
            local = None if cfg.weights in (IMAGENET, NO_WEIGHTS) else _local(cfg.weights)
            self.size = cfg.input_size or spec.input_size
            self.preprocess = spec.preprocess()
            # The backbone ends at its last convolutional maps and pooling happens below, in
            # float32 whatever the compute precision: a bfloat16 network's pooled features
            # then carry no bfloat16 rounding, and predict's class activation maps come from
            # the very maps the features are the mean of (one model per worker serves both).
            model = build_backbone(cfg.model_name, cfg.weights, "none", cfg.seed, local,
                                   input_size=self.size, precision=cfg.precision)
            what = f"built {cfg.model_name} (weights={cfg.weights}, {cfg.precision})"
        self.model, folds = fold_batch_norms(model)
        self._trace()
        log.info("%s, folded %d batch normalizations and traced it in %.1fs", what, folds,
                 time.monotonic() - started)

    def _trace(self) -> None:
        for n in (1, 2):
            self.model.predict_on_batch(np.zeros((n, self.size, self.size, 3), np.float32))

    def outputs(self, images: list[np.ndarray]) -> np.ndarray:
        """The network's float32 outputs for RGB films, in batches of ``batch_size``."""
        outs = []
        for start in range(0, len(images), self.cfg.batch_size):
            x = np.stack(images[start:start + self.cfg.batch_size]).astype(np.float32)
            # bfloat16 outputs become float32 before any pooling here: classifiers take float32
            outs.append(np.asarray(self.model.predict_on_batch(self.preprocess(x))).astype(np.float32))
        return np.concatenate(outs)

    def features(self, images: list[np.ndarray]) -> np.ndarray:
        """Batched forward pass; spatial outputs are pooled or flattened per ``pooling``."""
        out = self.outputs(images)
        if out.ndim == 4:
            out = {"avg": lambda a: a.mean(axis=(1, 2)), "max": lambda a: a.max(axis=(1, 2)),
                   "none": lambda a: a.reshape(len(a), -1)}[self.cfg.pooling](out)
        return out.astype(np.float32, copy=False)

    def run(self, decode_jobs: list) -> pd.DataFrame:
        """Decode each row (a callable giving RGB), featurize the good ones, report the rest."""
        n = len(decode_jobs)
        feats: list = [None] * n
        errors: list = [None] * n
        images, kept = [], []
        for i, job in enumerate(decode_jobs):
            try:
                images.append(model_input(job(self.size), self.cfg.clahe))
                kept.append(i)
            except ImageError as exc:
                errors[i] = str(exc)
        if images:
            for i, row in zip(kept, self.features(images)):
                feats[i] = row
        return pd.DataFrame({"features": feats, "error": errors})


def _local(uri: str) -> str:
    """A file shipped with ``addFile``: its copy on this worker (the URI itself on the driver)."""
    return SparkFiles.get(os.path.basename(uri)) if TaskContext.get() else uri


_STAGED: dict[tuple[str, str], str] = {}


def stage_model_file(spark: SparkSession, uri: str) -> str:
    """A uniquely named local copy of ``uri``, added with ``addFile`` once per application.
    SparkFiles keys files by name alone, and every fine-tuned model is called model.keras."""
    key = (spark.sparkContext.applicationId, uri)
    if key not in _STAGED:
        local = os.path.join(tempfile.mkdtemp(prefix="xray-model-file-"),
                             f"{uuid.uuid4().hex[:12]}-{os.path.basename(uri.rstrip('/'))}")
        with open(local, "wb") as f:
            f.write(HadoopFS(spark, uri).read_bytes(uri))
        spark.sparkContext.addFile(local)
        _STAGED[key] = local
    return _STAGED[key]


_WORKER_OBJECTS: dict[Hashable, object] = {}
_WORKER_LOCK = threading.RLock()  # a scorer's build asks for its runner


def worker_object(key: Hashable, build: Callable[[], T]) -> T:
    """What this Python worker keeps for ``key`` (a model and what serves it), built once:
    ``task_threads`` before the build, ``freeze_worker_objects`` after it."""
    with _WORKER_LOCK:
        if key not in _WORKER_OBJECTS:
            task_threads()
            _WORKER_OBJECTS[key] = build()
            freeze_worker_objects()
        return _WORKER_OBJECTS[key]  # type: ignore[return-value]


def runner_for(cfg: WorkerConfig) -> _Runner:
    """This worker's model for ``cfg``."""
    return worker_object(cfg, lambda: _Runner(cfg))


def freeze_worker_objects() -> None:
    """Keep what a worker just built for its lifetime out of every later garbage collection.

    A reused Python worker runs a full ``gc.collect()`` after every task (pyspark's daemon).
    TensorFlow, Keras and a network are objects that live as long as the worker (about half a
    million with InceptionV3), and scanning them cost about 0.27 CPU-s a task: 9 ms a film in
    tasks of 32 films, 15% of a bfloat16 InceptionV3 worker's CPU (measured). What survives
    one collection now is frozen out of the cyclic collector (``gc.freeze``), so each task's
    collection scans only what that task made.
    """
    started = time.monotonic()
    gc.collect()
    gc.freeze()
    log.info("froze %d long-lived objects out of the per-task garbage collection in %.2fs",
             gc.get_freeze_count(), time.monotonic() - started)


def task_threads() -> None:
    """In a Spark task, before TensorFlow starts: as many threads as the task has CPUs.

    An executor of C cores runs C / ``spark.task.cpus`` tasks at once, each in its own Python
    worker. TensorFlow's default, a thread per core in every process, would put C threads per
    worker and C * C on C cores: spinning, preempted threads stall each convolution's barrier.
    ``spark.task.cpus`` threads per worker fill the executor's cores exactly; a job that wants
    fewer, fatter workers says so with ``spark.task.cpus``. Values already set in the
    executor's environment win.
    """
    ctx = TaskContext.get()
    if ctx is not None:
        threads = str(max(int(ctx.cpus()), 1))
        for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
            os.environ.setdefault(var, threads)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _bytes_udf(cfg: WorkerConfig):
    @pandas_udf(_RESULT)
    def featurize_bytes(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        runner = runner_for(cfg)
        for batch in batches:
            yield runner.run([lambda size, b=b: decode_bytes(b, size, cfg.draft_decode)
                              for b in batch])
    return featurize_bytes


def _struct_udf(cfg: WorkerConfig):
    @pandas_udf(_RESULT)
    def featurize_structs(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        runner = runner_for(cfg)
        for batch in batches:
            rows = zip(batch["height"], batch["width"], batch["nChannels"], batch["data"])
            yield runner.run([lambda size, r=r: struct_to_rgb(*r, size) for r in rows])
    return featurize_structs
