"""Keras training of one fine-tuning run: phases, callbacks, best-epoch restore, scoring.

Selection uses the validation stream only: ModelCheckpoint keeps the weights of the epoch
with the lowest ``val_loss``, EarlyStopping (and, on the ``plateau`` schedule,
ReduceLROnPlateau) watch the same quantity (mode ``min``), and after training those best
weights are what is scored and saved. The ``cosine`` schedule sets the rate itself, so
ReduceLROnPlateau stays out of it.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time

import keras
import numpy as np

from pipeline import config
from pipeline.finetune.devices import accelerator, describe_device
from pipeline.finetune.augment import IntensityJitter
from pipeline.finetune.data import PixelBatches, index_films
from pipeline.finetune.models import build_model, compile_model, unfreeze_base
from pipeline.finetune.plan import TrainPlan
from pipeline.featurizer.models import NO_WEIGHTS
from pipeline.runtime import precision

log = logging.getLogger(__name__)


class EpochStats(keras.callbacks.Callback):
    """One record and one log line per epoch: metrics, learning rate, wall time, and the
    training throughput (images per second of the training part, validation excluded)."""

    def __init__(self, train_images: int, total_epochs: int) -> None:
        super().__init__()
        self.train_images = train_images
        self.total_epochs = total_epochs
        self.phase = "train"
        self.epochs: list[dict] = []
        self._started = self._train_done = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started, self._train_done = time.monotonic(), 0.0

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._train_done = self._train_done or time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        train_s = (self._train_done or now) - self._started
        record = {"epoch": epoch + 1, "phase": self.phase,
                  **{k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"},
                  "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                  "seconds": round(now - self._started, 3), "train_seconds": round(train_s, 3),
                  "images_per_s": round(self.train_images / max(train_s, 1e-9), 2)}
        self.epochs.append(record)
        log.info("epoch %d/%d (%s): loss %.4f acc %.4f | val_loss %.4f val_acc %.4f val_auc %.4f | "
                 "lr %.2g | %.1fs, %.1f images/s", epoch + 1, self.total_epochs, self.phase,
                 record["loss"], record["accuracy"], record["val_loss"], record["val_accuracy"],
                 record["val_auc"], record["lr"], record["seconds"], record["images_per_s"])


def class_weights(counts: dict[int, int]) -> dict[int, float]:
    """Balanced weights ``n / (2 * n_class)``, so normal and pneumonia films carry half the
    loss each despite the 1:3 imbalance."""
    if min(counts.values()) == 0:
        raise ValueError(f"training needs both classes, found counts {counts}")
    total = sum(counts.values())
    return {label: total / (2.0 * n) for label, n in counts.items()}


def _callbacks(stats: EpochStats, checkpoint: keras.callbacks.ModelCheckpoint,
               schedule: str) -> list:
    plateau = [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", mode="min",
                                                 factor=config.LR_PLATEAU_FACTOR,
                                                 patience=config.LR_PLATEAU_PATIENCE)]
    return [stats, checkpoint, *(plateau if schedule == "plateau" else []),
            keras.callbacks.EarlyStopping(monitor="val_loss", mode="min",
                                          patience=config.EARLY_STOP_PATIENCE,
                                          start_from_epoch=config.EARLY_STOP_START_EPOCH)]


def lean_copy(model: keras.Model) -> keras.Model:
    """The same network and weights, uncompiled, so saving it leaves out Adam's two moments per
    weight: a third of the bytes (InceptionV3 89 MB instead of 266 MB), all that inference or
    the featurizer needs. (``clone_model`` would carry the optimizer along.)"""
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def _fit(model: keras.Model, plan: TrainPlan, train: PixelBatches, val: PixelBatches,
         weights: dict[int, float], stats: EpochStats) -> int:
    """The training phases; leaves ``model`` with the weights of the lowest-``val_loss`` epoch
    and returns that epoch's number."""
    with tempfile.TemporaryDirectory() as work:
        best = os.path.join(work, "best.weights.h5")
        checkpoint = keras.callbacks.ModelCheckpoint(best, monitor="val_loss", mode="min",
                                                     save_best_only=True, save_weights_only=True)
        fit = dict(validation_data=val, class_weight=weights, shuffle=False, verbose=0)
        pretrained = plan.arch == "inceptionv3" and plan.weights != NO_WEIGHTS
        stats.phase = "frozen base" if pretrained else "train"
        model.fit(train, epochs=plan.epochs, callbacks=_callbacks(stats, checkpoint, plan.schedule),
                  **fit)
        if plan.unfreeze_epochs:
            model.load_weights(best)  # fine-tune from the best frozen epoch, not the last
            unfreeze_base(model)
            compile_model(model, plan.unfreeze_learning_rate, plan.schedule, plan.label_smoothing,
                          len(train), plan.unfreeze_epochs)
            stats.phase = "unfrozen base"
            done = len(stats.epochs)
            model.fit(train, initial_epoch=done, epochs=done + plan.unfreeze_epochs,
                      callbacks=_callbacks(stats, checkpoint, plan.schedule), **fit)
        model.load_weights(best)
    best_epoch = 1 + int(np.argmin([e["val_loss"] for e in stats.epochs]))
    log.info("restored epoch %d (lowest val_loss %.4f)", best_epoch, checkpoint.best)
    return best_epoch


def fit_and_score(plan: TrainPlan, films: str, local_weights: str | None,
                  model_path: str | None) -> dict:
    """Train on the spooled file's ``train`` films, select on ``validation``, score
    ``plan.score_subsets``, save the kept model to ``model_path`` (if any); returns history,
    scores and the device."""
    keras.backend.clear_session()  # a reused worker may hold an earlier fold's model
    keras.utils.set_random_seed(plan.seed)
    jitter = IntensityJitter(plan.seed + 1) if plan.augment == "scanner" else None
    train = PixelBatches(index_films(films, "train"), plan.image_size, plan.batch_size, plan.seed,
                         jitter)
    val = PixelBatches(index_films(films, "validation"), plan.image_size, plan.batch_size)
    weights = class_weights(train.class_counts())
    gpu = accelerator()
    device = describe_device(gpu)
    chosen = precision.resolve(plan.precision, gpu=gpu is not None, training=True)
    log.info("training %s on %s in %s: %d films (%s), validating on %d, class weights %s; "
             "augmentation %s, schedule %s, label smoothing %g", plan.arch, device, chosen,
             train.size, train.class_counts(), val.size,
             {k: round(v, 3) for k, v in weights.items()}, plan.augment, plan.schedule,
             plan.label_smoothing)
    with precision.dtype_policy(chosen):  # float16: compile adds loss scaling
        model = build_model(plan.arch, plan.image_size, plan.weights, plan.seed, local_weights,
                            plan.augment)
    compile_model(model, plan.learning_rate, plan.schedule, plan.label_smoothing, len(train),
                  plan.epochs)
    stats = EpochStats(train.size, plan.epochs + plan.unfreeze_epochs)
    best_epoch = _fit(model, plan, train, val, weights, stats)
    scores = {}
    for subset in plan.score_subsets:
        stream = val if subset == "validation" else PixelBatches(
            index_films(films, subset), plan.image_size, plan.batch_size)
        scores[subset] = {"path": stream.paths, "label": stream.labels.tolist(),
                          "score": model.predict(stream, verbose=0).reshape(-1).tolist()}
    if model_path:
        lean_copy(model).save(model_path)
    return {"history": stats.epochs, "best_epoch": best_epoch, "scores": scores,
            "device": device, "backend": keras.backend.backend(), "precision": chosen,
            "class_weight": weights,
            "train_images": train.size}
